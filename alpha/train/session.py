"""What a run is built from, shared by `train`, `sample` and `eval`: the backend, the text, the
tokenizer, the token arrays, and the model (new, or restored from a checkpoint).

This module adapts the pieces to each other (tokenizers, alpha.train.data, alpha.model) so the
trainer and the CLI commands read as plain steps. It raises DataError/ConfigError/CheckpointError
for everything a user can get wrong: a missing or empty file, a block longer than the data.
"""

from __future__ import annotations

import dataclasses
import json
import os
from array import array
from dataclasses import dataclass

from alpha.core.config import RunConfig
from alpha.core.errors import BackendUnavailable, CheckpointError, ConfigError, DataError
from alpha.core.rng import Rng

VAL_FRACTION = 0.1  # without --val-data, the last 10% of the tokens validate


@dataclass
class Session:
    config: RunConfig  # with model.vocab_size set from the tokenizer
    backend: object
    tokenizer: object
    tokenizer_name: str
    tokenizer_json: str
    train_tokens: memoryview  # token ids ('H' or 'I'), over the token cache for files
    val_tokens: memoryview
    data_description: str


# ---- backends -------------------------------------------------------------------------------


def get_backend(name: str):
    from alpha.tensor import get_backend as _get

    try:
        return _get(name)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} is not available here ({e})") from None


# ---- text -----------------------------------------------------------------------------------


def read_text(path: str, what: str = "data") -> str:
    if not os.path.exists(path):
        raise DataError(f"{what} file not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"{what} path {path} is a folder; give a text file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{what} file {path} is not UTF-8 text ({e.reason} at byte {e.start})") \
            from None
    except OSError as e:
        raise DataError(f"cannot read {what} file {path}: {e.strerror}") from None
    if not text.strip():
        raise DataError(f"{what} file {path} is empty")
    return text


# ---- tokenizers -----------------------------------------------------------------------------


def tokenizer_kind(config: RunConfig) -> str:
    from alpha.core.domains import get_domain

    return config.train.tokenizer or get_domain(config.domain).tokenizer


def train_tokenizer(kind: str, text: str, vocab_size: int, special_tokens=()):
    from alpha.tokenizers import train_tokenizer as _train

    return _train(kind, text, 0 if kind == "char" else vocab_size, special_tokens)


def tokenizer_from_json(blob) -> object:
    from alpha.tokenizers import from_json

    try:
        return from_json(json.loads(blob) if isinstance(blob, str) else blob)
    except (DataError, ConfigError, json.JSONDecodeError) as e:
        raise CheckpointError(f"the checkpoint's tokenizer cannot be read: {e}") from None


def tokens_of(tokenizer, text: str) -> memoryview:
    ids = tokenizer.encode(text)
    return memoryview(array("H" if tokenizer.vocab_size <= 65536 else "I", ids))


# ---- the whole set-up -----------------------------------------------------------------------


def token_cache_dir() -> str:
    """Token caches live in Alpha's cache folder, not next to the user's text (which may be
    read-only, and should stay clean)."""
    from alpha.tensor.build import cache_dir

    return str(cache_dir() / "tokens")


def build(config: RunConfig, tokenizer_json: str | None = None, log=None) -> Session:
    """Read the data, train (or restore) the tokenizer, tokenize (through the token cache for
    files), split, and check the sizes. `log` gets one-line progress notes."""
    from alpha.core.domains import get_domain
    from alpha.tokenizers import train_from_file
    from alpha.train import data as D

    backend = get_backend(config.train.backend)
    tc = config.train
    if tc.dtype != "f32":  # mixed precision: the same backend with bf16 matmuls
        backend = backend.with_matmul_dtype(tc.dtype)
    kind = tokenizer_kind(config)
    specials = get_domain(config.domain).special_tokens
    block = config.model.block_size
    if tc.data:
        D.check_text_file(tc.data)
        if tc.val_data:
            D.check_text_file(tc.val_data, "validation file")
        if tokenizer_json is not None:
            tokenizer = tokenizer_from_json(tokenizer_json)
        else:
            tokenizer = train_from_file(kind, tc.data, 0 if kind == "char" else
                                        config.model.vocab_size, specials, log=log)
        splits = D.load_data(tc.data, tokenizer, block, tc.val_data, token_cache_dir(),
                             progress=log is not None)
        train_tokens, val_tokens = splits.train, splits.val
        description = tc.data
    else:
        from alpha.train import default_data

        text = default_data.default_corpus()
        description = default_data.describe()
        if tokenizer_json is not None:
            tokenizer = tokenizer_from_json(tokenizer_json)
        else:
            tokenizer = train_tokenizer(kind, text, config.model.vocab_size, specials)
        tokens = tokens_of(tokenizer, text)
        if tc.val_data:
            D.check_text_file(tc.val_data, "validation file")
            train_tokens = tokens
            val_tokens = tokens_of(tokenizer, read_text(tc.val_data, "validation data"))
        else:
            cut = int(len(tokens) * (1.0 - VAL_FRACTION))
            train_tokens, val_tokens = tokens[:cut], tokens[cut:]
        for what, toks in (("training", train_tokens), ("validation", val_tokens)):
            if len(toks) < block + 1:
                raise DataError(
                    f"the default corpus gives {len(toks)} {what} tokens, fewer than "
                    f"block_size + 1 = {block + 1}; use a smaller --block"
                )
    model_cfg = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size)
    config = dataclasses.replace(config, model=model_cfg)
    return Session(
        config=config, backend=backend, tokenizer=tokenizer, tokenizer_name=tokenizer.kind,
        tokenizer_json=tokenizer.to_json_str(), train_tokens=train_tokens,
        val_tokens=val_tokens, data_description=description,
    )


# ---- batches --------------------------------------------------------------------------------


def sampler(tokens, batch_size: int, block_size: int, rng: Rng, stream: str = "data"):
    """Random windows from `rng`'s `stream` (alpha.train.data.BatchSampler)."""
    from alpha.train.data import BatchSampler

    return BatchSampler(tokens, batch_size, block_size, rng, mode="random", stream=stream)


# ---- the model ------------------------------------------------------------------------------


class ModelRunner:
    """The GPT plus the few things the trainer asks of it, in one place."""

    def __init__(self, cfg, backend, rng: Rng):
        from alpha.model.gpt import GPT

        self.cfg = cfg
        self.backend = backend
        self.gpt = GPT(cfg, backend, rng)
        self.params = self.gpt.params
        self.grads = self.gpt.grads
        self.param_count = self.gpt.n_params
        self.decay_ranges = [self.gpt.decay_range]
        self._engine = None

    def param_table(self) -> list:
        out, off = [], 0
        for name, shape in self.gpt.table:
            n = 1
            for d in shape:
                n *= d
            out.append({"name": name, "shape": list(shape), "offset": off, "numel": n})
            off += n
        return out

    def load_flat(self, values) -> None:
        n = self.params.numel
        if len(values) != n:
            raise CheckpointError(f"the checkpoint holds {len(values)} parameters, the model {n}")
        self.backend.copy(self.params, self.backend.from_array(values, (n,), "f32"))

    def upload_batch(self, x, y):
        B = len(x) // self.cfg.block_size if x else 0
        T = len(x) // B if B else 0
        be = self.backend
        return be.from_array(x, (B, T), "i32"), be.from_array(y, (B, T), "i32")

    def zero_grad(self) -> None:
        self.gpt.zero_grad()

    def forward(self, ids, targets):
        self.gpt.train()
        _, loss = self.gpt.forward(ids, targets)
        return loss

    @staticmethod
    def loss_value(loss) -> float:
        return float(loss.to_array()[0])

    def backward(self, loss) -> None:
        self.gpt.backward()

    def engine(self):
        """The KV-cache inference engine over this model's parameters (made once)."""
        if self._engine is None:
            from alpha.model.inference import InferenceEngine

            self._engine = InferenceEngine(self.gpt)
        return self._engine

    def eval_loss(self, ids, targets) -> float:
        self.gpt.eval()
        try:
            _, loss = self.gpt.forward(ids, targets)
            return float(loss.to_array()[0])
        finally:
            self.gpt.train()


def new_model(cfg, backend, rng: Rng) -> ModelRunner:
    return ModelRunner(cfg, backend, rng)


# ---- generation -----------------------------------------------------------------------------


def generate(model: ModelRunner, tokenizer, prompt: str, sample_config, stream,
             stats: dict | None = None) -> str:
    """Continue `prompt` with the inference engine (KV cache); returns the new text only, cut at
    the first stop string. `stats`, when given, receives prefill/decode token counts and seconds
    (prefill: the prompt through the model and the first token; decode: every token after it)."""
    import time

    sc = sample_config
    engine = model.engine()
    ids = tokenizer.encode(prompt) or [0]
    stop_ids = [tokenizer.special_tokens[s] for s in sc.stop
                if s in getattr(tokenizer, "special_tokens", {})]
    text_stops = [s for s in sc.stop if s not in getattr(tokenizer, "special_tokens", {})]
    out: list[int] = []
    t0 = time.perf_counter()
    t_first = None
    gen = engine.generate(ids, max_tokens=sc.max_tokens, temperature=sc.temperature,
                          top_k=sc.top_k, top_p=sc.top_p, stop_tokens=stop_ids, stream=stream)
    for tok in gen:
        if t_first is None:
            t_first = time.perf_counter()
        out.append(tok)
        if text_stops and tok >= 0:
            tail = tokenizer.decode(out[-32:])
            if any(s in tail for s in text_stops):
                break
    t_end = time.perf_counter()
    if stats is not None:
        t_first = t_first or t_end
        stats.update(prefill_tokens=len(ids), prefill_s=t_first - t0,
                     decode_tokens=max(0, len(out) - 1), decode_s=t_end - t_first)
    text = tokenizer.decode(out)
    for s in text_stops:
        if s in text:
            text = text[: text.index(s)]
    return text


# ---- checkpoints for inference --------------------------------------------------------------


def find_checkpoint(run_or_path: str) -> str:
    """A checkpoint path from a run folder (its latest checkpoint), a run id under outputs/, or a
    checkpoint file."""
    if os.path.isfile(run_or_path):
        return run_or_path
    folder = run_or_path
    if not os.path.isdir(folder) and os.path.isdir(os.path.join("outputs", run_or_path)):
        folder = os.path.join("outputs", run_or_path)
    if not os.path.isdir(folder):
        raise CheckpointError(f"no run folder or checkpoint at {run_or_path}")
    ckdir = os.path.join(folder, "checkpoints")
    steps = []
    if os.path.isdir(ckdir):
        for name in os.listdir(ckdir):
            if name.startswith("step-") and name.endswith(".ckpt"):
                try:
                    steps.append((int(name[5:-5]), name))
                except ValueError:
                    continue
    if not steps:
        raise CheckpointError(f"run {folder} has no checkpoints yet")
    return os.path.join(ckdir, max(steps)[1])


def load_for_inference(path: str, backend_name: str = ""):
    """(RunConfig, tokenizer, ModelRunner, Checkpoint) from a checkpoint file."""
    from alpha.train import checkpoint as ckpt_format

    ck = ckpt_format.load(path)
    try:
        config = RunConfig.from_dict(ck.header["config"])
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {e}") from None
    backend = get_backend(backend_name or config.train.backend)
    tokenizer = tokenizer_from_json(ck.header["tokenizer"])
    if "params" not in ck.tensors:
        raise CheckpointError(f"checkpoint {path} holds no 'params' tensor")
    model = new_model(config.model, backend, Rng(config.train.seed))
    model.load_flat(ck.tensors["params"])
    return config, tokenizer, model, ck
