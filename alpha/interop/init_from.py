"""`train --init-from SRC`: a new run that starts from existing weights (nanoGPT's init_from).

SRC is an Alpha checkpoint, a Hugging Face GPT-2 folder or a GPT-2 .safetensors file (converted in
memory, see alpha.interop.hf_import). The run takes SRC's model config and tokenizer; it starts at
step 0 with a fresh optimizer, its own seed, data and schedule. Of the model settings only two may
be given: `dropout` (fine-tuning often wants some), and a smaller `block_size`, which keeps the
first block_size rows of the position embeddings (nanoGPT's crop_block_size): GPT-2's 1024-token
context is more than a CPU fine-tune needs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from array import array

from alpha.core.config import ModelConfig, RunConfig
from alpha.core.errors import CheckpointError, ConfigError
from alpha.model.params import param_table

CHANGEABLE = ("dropout", "block_size")


def load_init(source: str):
    """The weights to start from, as an alpha.train.checkpoint.Checkpoint: an Alpha checkpoint as
    it is, a GPT-2 folder or .safetensors file converted in memory."""
    from alpha.interop.hf_import import checkpoint_header, read_model
    from alpha.train import checkpoint as ckpt_format

    if os.path.isfile(source) and not source.endswith(".safetensors"):
        return ckpt_format.load(source)
    from alpha.core.errors import InteropError
    from alpha.tokenizers import gpt2

    folder = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    if os.path.exists(source) and not gpt2.has_files(folder):
        # train's --tokenizer picks a kind (char|bpe|word), not a file: import it first (qa)
        raise InteropError(
            f"--init-from {source}: no GPT-2 tokenizer beside the weights; import it with one: "
            f"python -m alpha import --from {source} --tokenizer PATH --out model.ckpt, then "
            "--init-from model.ckpt")
    imported = read_model(source)
    header = checkpoint_header(imported.config, imported.tokenizer, imported.source)
    return ckpt_format.Checkpoint(path=source, header=header,
                                  tensors={"params": imported.params}, size=0, checksum="")


def start_from(source: str, config: RunConfig, given: dict):
    """(the run's config with SRC's model, the Checkpoint whose "params" the trainer loads).
    `given` holds the model settings the user asked for (flags and --config file); any but
    CHANGEABLE that differs from SRC's is a ConfigError naming it."""
    ck = load_init(source)
    try:
        saved = RunConfig.from_dict(ck.header["config"]).model
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"--init-from {source}: unreadable model config ({e})") from None
    for name, value in given.items():
        if name not in CHANGEABLE and value != getattr(saved, name, value):
            raise ConfigError(
                f"--init-from {source}: its model has {name}={getattr(saved, name)!r}, which "
                f"cannot change to {value!r} (only {' and '.join(CHANGEABLE)} can)")
    block = given.get("block_size", saved.block_size)
    if block > saved.block_size:
        raise ConfigError(f"--init-from {source}: block_size {block} is longer than the model's "
                          f"context ({saved.block_size}); use --block {saved.block_size} or less")
    model = dataclasses.replace(saved, dropout=given.get("dropout", saved.dropout))
    if block < saved.block_size:
        flat = crop_block(saved, ck.tensors["params"], block)
        model = dataclasses.replace(model, block_size=block)
        ck = dataclasses.replace(ck, tensors={"params": flat})
    return dataclasses.replace(config, model=model), ck


def crop_block(cfg: ModelConfig, flat, block_size: int) -> array:
    """The flat parameters of `cfg` re-laid out for a shorter context: wpe keeps its first
    block_size rows; every other tensor is unchanged."""
    small = dataclasses.replace(cfg, block_size=block_size)
    src = {}
    off = 0
    for name, shape in param_table(cfg):
        k = math.prod(shape)
        src[name] = (off, k)
        off += k
    parts = []
    for name, shape in param_table(small):
        start, k = src[name]
        parts.append(flat[start: start + math.prod(shape)])  # wpe: its first rows
    out = array("f")
    for part in parts:
        out.extend(part)
    return out
