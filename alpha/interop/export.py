"""Alpha checkpoint -> a Hugging Face GPT-2 folder that `GPT2LMHeadModel.from_pretrained` loads.

    out/config.json              GPT2LMHeadModel's config (alpha.interop.hf_gpt2.hf_config)
    out/model.safetensors        the weights under HF's names, float32, Conv1D (in, out) layout
    out/generation_config.json   special token ids and the run's sampling defaults
    out/vocab.json, merges.txt,  only when the checkpoint's tokenizer is GPT-2's (kind "gpt2"):
    tokenizer_config.json        Alpha's own BPE pre-splits differently, so no HF tokenizer
                                 reproduces it and none is written (the result says so)

Every file is written atomically. The weights are sliced straight out of the checkpoint's flat
parameter buffer (no copy on little-endian machines).
"""

from __future__ import annotations

import json
import math
import os
import sys
from array import array
from dataclasses import dataclass, field

from alpha.core.atomic import atomic_write, write_error
from alpha.core.config import RunConfig
from alpha.core.errors import ConfigError, InteropError
from alpha.interop import hf_gpt2, safetensors
from alpha.model.params import param_table

WEIGHTS = "model.safetensors"
# HF GPT-2 biases that an Alpha model with bias=False lacks: exported as zeros (same function).
_BIASES = ("ln_1.bias", "attn.c_attn.bias", "attn.c_proj.bias", "ln_2.bias", "mlp.c_fc.bias",
           "mlp.c_proj.bias")


@dataclass
class ExportResult:
    folder: str
    files: list[str] = field(default_factory=list)
    n_params: int = 0
    notes: list[str] = field(default_factory=list)  # what the user should know (one line each)


def export_checkpoint(ckpt_path: str, out_dir: str) -> ExportResult:
    """Write the HF GPT-2 folder for an Alpha checkpoint; InteropError when the model cannot be
    expressed as HF's GPT-2 (the message names the setting), CheckpointError when it is corrupt."""
    from alpha.train import checkpoint as ckpt_format
    from alpha.train.restore import tokenizer_of

    header = ckpt_format.read_header(ckpt_path)
    try:
        config = RunConfig.from_dict(header["config"])
    except (KeyError, ConfigError) as e:
        raise InteropError(f"checkpoint {ckpt_path} has an unreadable config: {e}") from None
    cfg = config.model
    hf_gpt2.check_exportable(cfg)  # before reading hundreds of MB
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InteropError(f"--out {out_dir} exists and is not a folder")
    ck = ckpt_format.load(ckpt_path, mapped=True)  # the weights go straight from the map
    tokenizer = tokenizer_of(ck) if "tokenizer" in ck.header else None
    flat = ck.tensors.get("params")
    n = sum(math.prod(s) for _, s in param_table(cfg))
    if flat is None or len(flat) != n:
        raise InteropError(f"checkpoint {ckpt_path} holds {0 if flat is None else len(flat)} "
                           f"parameters; its config needs {n}")

    result = ExportResult(folder=out_dir, n_params=n)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # a parent that is a file, read-only, ...: one line, exit 2 (qa)
        raise write_error(out_dir, e) from None
    path = os.path.join(out_dir, WEIGHTS)
    safetensors.write(path, hf_tensors(cfg, flat), metadata={"format": "pt"})
    result.files.append(path)

    eos = _end_of_text_id(tokenizer)
    _write_json(result, "config.json", hf_gpt2.hf_config(cfg, eos, eos))
    _write_json(result, "generation_config.json",
                hf_gpt2.generation_config(eos, eos, config.sample))
    if tokenizer is not None and tokenizer.kind == "gpt2":
        result.files += tokenizer.save_files(out_dir)
        _write_json(result, "tokenizer_config.json", {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": cfg.block_size,
            "add_prefix_space": False,
            **{k: hf_gpt2.EOT_TOKEN for k in ("bos_token", "eos_token", "unk_token")
               if hf_gpt2.EOT_TOKEN in tokenizer.special_tokens},
        })
    else:
        kind = tokenizer.kind if tokenizer is not None else "none"
        result.notes.append(
            f"no tokenizer files written: the checkpoint's tokenizer ({kind}) is not GPT-2's, and "
            "Hugging Face has no tokenizer that encodes as it does; pass token ids to the model")
    if not cfg.bias:
        result.notes.append("the model has no biases: they are exported as zeros (same outputs)")
    return result


def hf_tensors(cfg, flat: array) -> dict:
    """{HF name: (data, shape, "F32")} for the flat parameter buffer, in HF's order."""
    views = {}
    mv = memoryview(flat)
    off = 0
    for name, shape in param_table(cfg):
        k = math.prod(shape)
        views[name] = (mv[off: off + k] if sys.byteorder == "little" else flat[off: off + k],
                       shape)
        off += k
    C = cfg.n_embd
    order = ["wte", "wpe"]
    for i in range(cfg.n_layer):
        order += [f"h.{i}.{part}" for part in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    order += ["ln_f.weight", "ln_f.bias"]
    if not cfg.tie_embeddings:
        order.append("lm_head.weight")
    out = {}
    for name in order:
        if name in views:
            data, shape = views[name]
        else:  # a bias the model does not have (bias=False): zeros of HF's shape
            shape = (_bias_width(cfg, name, C),)
            data = array("f", [0.0]) * shape[0]
        out[hf_gpt2.hf_name(name)] = (data, shape, "F32")
    return out


def _bias_width(cfg, name: str, C: int) -> int:
    if name.endswith("attn.c_attn.bias"):
        return 3 * C
    if name.endswith("mlp.c_fc.bias"):
        return cfg.hidden_dim
    return C


def _end_of_text_id(tokenizer) -> int | None:
    if tokenizer is None:
        return None
    for token in (hf_gpt2.EOT_TOKEN, "<|end_of_text|>"):
        if token in tokenizer.special_tokens:
            return tokenizer.special_tokens[token]
    return None


def _write_json(result: ExportResult, name: str, obj: dict) -> None:
    path = os.path.join(result.folder, name)
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    result.files.append(path)
