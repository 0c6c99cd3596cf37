"""A Hugging Face GPT-2 folder, or a bare GPT-2 `.safetensors` file, -> an Alpha model.

    imported = read_model("gpt2-folder/")          # config, flat float32 params, tokenizer
    import_model("gpt2-folder/", "gpt2.ckpt")       # the same, written as an Alpha checkpoint

Accepted sources:
- a folder with `config.json` (model_type "gpt2") and `model.safetensors`, or shards listed in
  `model.safetensors.index.json` (what `save_pretrained` writes);
- a `.safetensors` file: with a `config.json` beside it, or alone, the sizes then read from the
  shapes (heads: --heads, or n_embd / 64 as in every OpenAI GPT-2 size).
Names may carry HF's `transformer.` prefix or not (OpenAI's files); OpenAI's `h.N.attn.bias`
mask buffers are skipped; F32, F16, BF16 and F64 tensors load as float32.

The tokenizer comes from the source's folder (vocab.json + merges.txt, encoder.json + vocab.bpe,
or a byte-level tokenizer.json) or from `tokenizer=`: such a folder or file, or an Alpha
tokenizer artifact. A checkpoint written here holds parameters only (step 0, no optimizer
state): sample, eval and serve it, or fine-tune it with `train --init-from`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from array import array
from dataclasses import dataclass

from alpha.core.config import ModelConfig, RunConfig, SampleConfig, TrainConfig
from alpha.core.errors import AlphaError, InteropError
from alpha.interop import hf_gpt2
from alpha.interop.safetensors import FLOAT_DTYPES, SafetensorsFile, to_f32
from alpha.model.params import param_table
from alpha.tokenizers import gpt2

INDEX = "model.safetensors.index.json"
WEIGHTS = "model.safetensors"


@dataclass
class Imported:
    config: ModelConfig
    params: array  # flat float32, in Alpha's parameter-table order
    tokenizer: object  # an alpha.tokenizers Tokenizer
    source: dict  # where it came from: {"path", "format", "files", "skipped"}


class GPT2Source:
    """A GPT-2 model opened for reading: its config and tokenizer, every tensor checked (names,
    shapes, dtypes) and memory-mapped, no weight read yet.

        with GPT2Source("gpt2/") as src:
            src.config, src.tokenizer
            flat = src.params()         # array('f') in Alpha's table order
            pieces = src.pieces()       # the same bytes as buffers, views of the map when F32
    """

    def __init__(self, source: str, tokenizer: str = "", n_head: int = 0):
        self.path = source
        files, config_path = _locate(source)
        self._files: list[SafetensorsFile] = []
        self._views: list[memoryview] = []
        try:
            for path in files:
                self._files.append(SafetensorsFile(path))
            where = {}  # Alpha name -> (open file, its tensor name)
            skipped = []
            for st in self._files:
                for name in st.names():
                    alpha = hf_gpt2.alpha_name(name)
                    if alpha is None:
                        skipped.append(name)
                    elif alpha in where:
                        raise InteropError(f"{source}: tensor {name!r} appears twice")
                    else:
                        where[alpha] = (st, name)
            if config_path:
                cfg = hf_gpt2.model_config(_read_json(config_path), config_path)
                if n_head and n_head != cfg.n_head:
                    raise InteropError(f"{config_path} says n_head={cfg.n_head}; --heads "
                                       f"{n_head} disagrees")
            else:
                shapes = {a: st.info(n).shape for a, (st, n) in where.items()}
                cfg = hf_gpt2.infer_config(shapes, n_head, source)
            self.config = cfg
            self._order = _check_tensors(cfg, where, skipped, source)
            self.tokenizer = _tokenizer(tokenizer, source, cfg)
            self.n_params = sum(math.prod(s) for _, s in param_table(cfg))
            self.info = {"path": os.path.abspath(source), "format": "huggingface-gpt2",
                         "files": [os.path.basename(f) for f in files], "skipped": skipped}
        except BaseException:
            self.close()
            raise

    def pieces(self) -> list:
        """Every parameter's float32 bytes in Alpha's table order: views of the memory map for
        F32 tensors on little-endian machines (no copy), converted arrays otherwise. The views
        live until `close`."""
        out = []
        for st, hf in self._order:
            info = st.info(hf)
            raw = st.raw(hf)
            if info.dtype == "F32" and sys.byteorder == "little":
                self._views.append(raw)
                out.append(raw)
            else:
                with raw:
                    out.append(to_f32(raw, info.dtype, f"{st.path}: tensor {hf!r}"))
        return out

    def params(self) -> array:
        """The flat parameter buffer (float32, Alpha's table order), a copy."""
        flat = array("f", [0.0]) * self.n_params
        out = memoryview(flat).cast("B")
        at = 0
        for st, hf in self._order:
            info = st.info(hf)
            with st.raw(hf) as raw:
                if info.dtype == "F32" and sys.byteorder == "little":
                    out[at: at + len(raw)] = raw
                    at += len(raw)
                else:
                    part = memoryview(to_f32(raw, info.dtype, f"{st.path}: tensor {hf!r}"))
                    out[at: at + part.nbytes] = part.cast("B")
                    at += part.nbytes
        out.release()
        return flat

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views = []
        for st in self._files:
            st.close()
        self._files = []

    def __enter__(self) -> "GPT2Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_model(source: str, tokenizer: str = "", n_head: int = 0) -> Imported:
    """Read a GPT-2 model (see the module doc) into memory; InteropError naming the file,
    tensor or setting when it cannot be read or converted."""
    with GPT2Source(source, tokenizer, n_head) as src:
        return Imported(config=src.config, params=src.params(), tokenizer=src.tokenizer,
                        source=src.info)


def _locate(source: str) -> tuple[list[str], str]:
    """([safetensors files], config.json path or "")."""
    if not os.path.exists(source):
        raise InteropError(f"no such file or folder: {source}")
    if os.path.isdir(source):
        config = os.path.join(source, "config.json")
        index = os.path.join(source, INDEX)
        if os.path.isfile(index):
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map or not all(
                    isinstance(f, str) and f and os.path.basename(f) == f
                    for f in weight_map.values()):
                raise InteropError(f"{index} has no weight_map of tensor name -> file name")
            files = [os.path.join(source, f) for f in sorted(set(weight_map.values()))]
        elif os.path.isfile(os.path.join(source, WEIGHTS)):
            files = [os.path.join(source, WEIGHTS)]
        else:
            others = [f for f in sorted(os.listdir(source)) if f.endswith((".bin", ".pt", ".pth"))]
            hint = (f" ({others[0]} is a pickle: save the model with safe_serialization, the "
                    "default of save_pretrained)" if others else "")
            raise InteropError(f"{source} has no {WEIGHTS}{hint}")
        return files, config if os.path.isfile(config) else ""
    if not source.endswith(".safetensors"):
        raise InteropError(f"{source} is neither a folder nor a .safetensors file")
    config = os.path.join(os.path.dirname(os.path.abspath(source)), "config.json")
    return [source], config if os.path.isfile(config) else ""


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InteropError(f"cannot read {path}: {e}") from None
    if not isinstance(d, dict):
        raise InteropError(f"{path} is not a JSON object")
    return d


def _check_tensors(cfg: ModelConfig, where: dict, skipped: list, source: str) -> list:
    """[(open file, tensor name)] in Alpha's table order, after checking that the tensors are
    exactly the config's parameters, with its shapes."""
    table = param_table(cfg)
    wanted = {name for name, _ in table}
    if cfg.tie_embeddings and "lm_head.weight" in where:
        # a tied head saved anyway (some exporters do): it must be the embedding, so skip it
        skipped.append(where.pop("lm_head.weight")[1])
    unknown = sorted(n for a, (_, n) in where.items() if a not in wanted)
    if unknown:
        raise InteropError(f"{source}: tensor {unknown[0]!r} is not part of a GPT-2 model"
                           + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    missing = [hf_gpt2.hf_name(n) for n, _ in table if n not in where]
    if missing:
        raise InteropError(f"{source}: tensor {missing[0]!r} is missing"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    order = []
    for name, shape in table:
        st, hf = where[name]
        info = st.info(hf)
        if tuple(info.shape) != tuple(shape):
            layout = " (GPT-2's Conv1D weights are (in, out))" if len(shape) == 2 else ""
            raise InteropError(f"{st.path}: tensor {hf!r} has shape {list(info.shape)}, the "
                               f"config needs {list(shape)}{layout}")
        if info.dtype not in FLOAT_DTYPES:
            raise InteropError(f"{st.path}: tensor {hf!r} has dtype {info.dtype}; Alpha loads "
                               f"{', '.join(FLOAT_DTYPES)}")
        order.append((st, hf))
    return order


def _tokenizer(spec: str, source: str, cfg: ModelConfig):
    """The tokenizer named by `spec`, else the one beside the weights."""
    if not spec:
        folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
        if not gpt2.has_files(folder):
            raise InteropError(
                f"{source} has no tokenizer (vocab.json + merges.txt, encoder.json + vocab.bpe or "
                "tokenizer.json); give one with --tokenizer PATH")
        tok = _load_gpt2(lambda: gpt2.load_folder(folder, cfg.vocab_size), folder)
    elif os.path.isdir(spec):
        tok = _load_gpt2(lambda: gpt2.load_folder(spec, cfg.vocab_size), spec)
    elif os.path.isfile(spec):
        tok = _tokenizer_file(spec, cfg)
    else:
        raise InteropError(f"tokenizer not found: {spec}")
    if tok.kind != "gpt2" and tok.vocab_size != cfg.vocab_size:
        raise InteropError(f"the tokenizer has {tok.vocab_size} tokens, the model "
                           f"{cfg.vocab_size}")
    return tok


def _load_gpt2(load, where: str):
    try:
        return load()
    except InteropError:
        raise
    except AlphaError as e:  # DataError from the tokenizer files
        raise InteropError(f"tokenizer in {where}: {e}") from None


def _tokenizer_file(path: str, cfg: ModelConfig):
    from alpha.tokenizers import from_json

    d = _read_json(path)
    if d.get("format") == "alpha.tokenizer":
        return _load_gpt2(lambda: from_json(d), path)
    if "model" in d:
        return _load_gpt2(lambda: gpt2.from_tokenizer_json(path, cfg.vocab_size), path)
    folder = os.path.dirname(os.path.abspath(path))
    for merges in ("merges.txt", "vocab.bpe"):
        if os.path.isfile(os.path.join(folder, merges)):
            return _load_gpt2(lambda: gpt2.GPT2Tokenizer.from_files(
                path, os.path.join(folder, merges), cfg.vocab_size), path)
    raise InteropError(f"{path}: a GPT-2 vocabulary needs merges.txt (or vocab.bpe) beside it")


# ---- as an Alpha checkpoint -----------------------------------------------------------------


def checkpoint_header(model: ModelConfig, tokenizer, source: dict) -> dict:
    """The header of an Alpha checkpoint holding an imported model (step 0, parameters only)."""
    config = RunConfig(domain="text", model=model, train=TrainConfig(), sample=SampleConfig())
    table, off = [], 0
    for name, shape in param_table(model):
        k = math.prod(shape)
        table.append({"name": name, "shape": list(shape), "offset": off, "numel": k})
        off += k
    return {
        "format": "alpha-checkpoint",
        "run_id": "",
        "step": 0,
        "config": config.to_dict(),
        "config_hash": config.hash,
        "tokenizer_name": tokenizer.kind,
        "tokenizer": tokenizer.to_json(),
        "val_loss": None,
        "best_val_loss": None,
        "elapsed_s": 0.0,
        "param_table": table,
        "imported_from": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def import_model(source: str, out_path: str, tokenizer: str = "", n_head: int = 0
                 ) -> tuple[GPT2Source, int]:
    """Read `source` and write it as an Alpha checkpoint at `out_path` (atomically), the weights
    streamed from the source's memory map; returns (the closed source, for its config,
    tokenizer and n_params; the checkpoint's size in bytes)."""
    from alpha.train import checkpoint as ckpt_format

    if os.path.isdir(out_path):
        raise InteropError(f"--out {out_path} is a folder; give a checkpoint file name")
    with GPT2Source(source, tokenizer, n_head) as src:
        header = checkpoint_header(src.config, src.tokenizer, src.info)
        size, _ = ckpt_format.save(out_path, header,
                                   {"params": (src.pieces(), (src.n_params,), "f32")})
    return src, size
