"""The models a server offers: every run under the outputs folder that has a checkpoint, plus those
named with `--model`; loaded on first use, each with its own engine (alpha/model/engine.py), and the
least recently used unloaded when more than `max_models` are loaded.

Ids: a run id (its latest checkpoint) or `run@step` (that checkpoint). A `--model` given as a path
outside the outputs folder is known by its run folder's name (and `@step` for a checkpoint file).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from alpha.core.domains import ASSISTANT, END_OF_TEXT, USER
from alpha.core.errors import AlphaError

_STEP = re.compile(r"^step-(\d+)\.ckpt$")


class UnknownModel(AlphaError, LookupError):
    """No run or checkpoint has this id."""


@dataclass
class Served:
    """A loaded model: its engine, tokenizer and run config."""

    id: str
    path: str
    step: int
    engine: object
    tokenizer: object
    config: object
    created: int

    @property
    def chat(self) -> bool:
        sp = getattr(self.tokenizer, "special_tokens", {})
        return USER in sp and ASSISTANT in sp

    @property
    def context(self) -> int:
        return self.config.model.block_size

    def stop_ids(self) -> tuple[int, ...]:
        """Special tokens that end a generation: <|end_of_text|>, and for chat <|user|>."""
        sp = getattr(self.tokenizer, "special_tokens", {})
        names = [END_OF_TEXT] + ([USER] if self.chat else [])
        return tuple(sp[n] for n in names if n in sp)


def _steps(run_dir: str) -> list[int]:
    try:
        names = os.listdir(os.path.join(run_dir, "checkpoints"))
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_STEP.match, names) if m)


def _ckpt(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "checkpoints", f"step-{step}.ckpt")


class ModelRegistry:
    def __init__(self, outputs: str, *, backend: str = "cpu", max_models: int = 2,
                 max_batch: int = 32, max_queue: int = 128, prefill_chunk: int = 64,
                 kv_dtype: str = "auto", observer=None, log=print):
        self.outputs = outputs
        self.backend = backend
        self.max_models = max_models
        self.engine_options = dict(max_batch=max_batch, max_queue=max_queue,
                                   prefill_chunk=prefill_chunk, kv_dtype=kv_dtype)
        self.observer = observer
        self.log = log
        self.extra: dict[str, str] = {}  # id -> run folder or checkpoint named by --model
        self._loaded: OrderedDict[str, Served] = OrderedDict()  # ckpt path -> model, LRU first
        self._loading: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ---- names ---------------------------------------------------------------------------------
    def add(self, spec: str) -> str:
        """Make a run id, run folder or checkpoint file (a `--model` flag) known; returns its id.
        Raises UnknownModel when there is nothing to serve there."""
        if os.path.isfile(spec):
            m = _STEP.match(os.path.basename(spec))
            parent = os.path.dirname(os.path.abspath(spec))
            run = os.path.basename(os.path.dirname(parent)) if os.path.basename(parent) == \
                "checkpoints" else os.path.splitext(os.path.basename(spec))[0]
            mid = f"{run}@{m.group(1)}" if m else run
            self.extra[mid] = os.path.abspath(spec)
            return mid
        folder = spec if os.path.isdir(spec) else os.path.join(self.outputs, spec)
        if not os.path.isdir(folder) or not _steps(folder):
            raise UnknownModel(f"--model {spec}: no run folder with a checkpoint there "
                               f"(looked in {folder})")
        mid = os.path.basename(os.path.normpath(folder))
        if os.path.abspath(folder) != os.path.abspath(os.path.join(self.outputs, mid)):
            self.extra[mid] = os.path.abspath(folder)
        return mid

    def list(self) -> list[dict]:
        """[{id, created, path, step}] of every servable model (run ids, latest checkpoints)."""
        out, seen = [], set()
        try:
            names = sorted(os.listdir(self.outputs))
        except OSError:
            names = []
        for name in names:
            folder = os.path.join(self.outputs, name)
            steps = _steps(folder)
            if steps:
                out.append(self._info(name, _ckpt(folder, steps[-1]), steps[-1]))
                seen.add(name)
        for mid in sorted(self.extra):
            if mid not in seen:
                try:
                    path, step = self.resolve(mid)
                except UnknownModel:
                    continue
                out.append(self._info(mid, path, step))
        return out

    @staticmethod
    def _info(mid: str, path: str, step: int) -> dict:
        try:
            created = int(os.path.getmtime(path))
        except OSError:
            created = 0
        return {"id": mid, "created": created, "path": path, "step": step}

    def resolve(self, model_id: str) -> tuple[str, int]:
        """(checkpoint path, step) of `run`, `run@step` or a `--model` id."""
        if not isinstance(model_id, str) or not model_id or "/" in model_id or \
                model_id.startswith("."):
            raise UnknownModel(f"the model {model_id!r} does not exist")
        run, _, step = model_id.partition("@")
        if model_id in self.extra and os.path.isfile(self.extra[model_id]):
            path = self.extra[model_id]
            m = _STEP.match(os.path.basename(path))
            return path, int(m.group(1)) if m else 0
        folder = self.extra.get(run) or os.path.join(self.outputs, run)
        if os.path.isfile(folder):  # `--model ckpt`: run@step named the file itself
            folder = os.path.dirname(os.path.dirname(folder))
        steps = _steps(folder)
        if not steps:
            raise UnknownModel(f"the model {model_id!r} does not exist")
        if not step:
            return _ckpt(folder, steps[-1]), steps[-1]
        if not step.isdigit() or int(step) not in steps:
            raise UnknownModel(f"the model {run!r} has no checkpoint at step {step} "
                               f"(it has {', '.join(map(str, steps[-5:]))})")
        return _ckpt(folder, int(step)), int(step)

    # ---- loading -------------------------------------------------------------------------------
    def get(self, model_id: str) -> Served:
        """The loaded model, loading it (and unloading the least recently used) when needed."""
        path, step = self.resolve(model_id)
        while True:
            with self._lock:
                if self._closed:
                    raise UnknownModel("the server is shutting down")
                hit = self._loaded.get(path)
                if hit is not None:
                    self._loaded.move_to_end(path)
                    return hit
                wait = self._loading.get(path)
                if wait is None:
                    self._loading[path] = threading.Event()
                    break
            wait.wait()  # another request is loading it
            if path not in self._loaded:
                with self._lock:
                    if path not in self._loaded and path not in self._loading:
                        raise UnknownModel(f"the model {model_id!r} could not be loaded")
        try:
            served = self._load(model_id, path, step)
            with self._lock:
                self._loaded[path] = served
                victims = self._evict(path)
        finally:
            with self._lock:
                self._loading.pop(path).set()
        for v in victims:
            self.log(f"unloading model {v.id} (more than --max-models {self.max_models} loaded)")
            v.engine.close()
        return served

    def _load(self, model_id: str, path: str, step: int) -> Served:
        from alpha.model.engine import Engine
        from alpha.train.restore import load_for_inference

        t0 = time.monotonic()
        config, tokenizer, gpt, _ = load_for_inference(path, self.backend)
        engine = Engine(gpt, name=model_id, observer=self.observer, **self.engine_options)
        self.log(f"loaded model {model_id} ({path}, {gpt.n_params:,} parameters, "
                 f"backend {self.backend}, KV cache {engine.cache.kv_dtype}) in "
                 f"{time.monotonic() - t0:.1f} s")
        return Served(model_id, path, step, engine, tokenizer, config,
                      int(os.path.getmtime(path)))

    def _evict(self, keep: str) -> list[Served]:
        """(lock held) Idle models past max_models, least recently used first."""
        victims = []
        for p in list(self._loaded):
            if len(self._loaded) <= self.max_models:
                break
            s = self._loaded[p]
            if p != keep and not s.engine.busy():
                victims.append(self._loaded.pop(p))
        return victims

    def loaded(self) -> list[Served]:
        with self._lock:
            return list(self._loaded.values())

    def health(self) -> dict:
        return {"models_loaded": [s.id for s in self.loaded()]}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loaded = list(self._loaded.values())
            self._loaded.clear()
        for s in loaded:
            s.engine.close()
