"""A trained model back from a checkpoint: the config, the tokenizer and the GPT holding its
parameters, for `sample`, `eval` and the dashboards (the trainer restores its own state, and
uses `load_params` and `tokenizer_of` from here).

Everything a checkpoint can hold wrongly (a config that no longer validates, a tokenizer that
cannot be rebuilt, parameters of another size) is a CheckpointError naming the file.
"""

from __future__ import annotations

from alpha.core.config import RunConfig
from alpha.core.errors import AlphaError, CheckpointError
from alpha.core.rng import Rng
from alpha.train import checkpoint as ckpt_format


def tokenizer_of(ck: "ckpt_format.Checkpoint"):
    """The tokenizer saved in a checkpoint's header."""
    from alpha.tokenizers import from_json

    try:
        return from_json(ck.header.get("tokenizer"))
    except AlphaError as e:
        raise CheckpointError(f"checkpoint {ck.path}: its tokenizer cannot be read: {e}") \
            from None


def config_of(ck: "ckpt_format.Checkpoint") -> RunConfig:
    try:
        return RunConfig.from_dict(ck.header["config"])
    except (KeyError, AlphaError) as e:
        raise CheckpointError(f"checkpoint {ck.path} has an unreadable config: {e}") from None


def load_params(gpt, ck: "ckpt_format.Checkpoint") -> None:
    """Copy the checkpoint's flat parameters into `gpt` (its sizes must match)."""
    values = ck.tensors.get("params")
    n = gpt.params.numel
    if values is None:
        raise CheckpointError(f"checkpoint {ck.path} holds no 'params' tensor")
    if len(values) != n:
        raise CheckpointError(f"checkpoint {ck.path} holds {len(values)} parameters, the model "
                              f"{n}")
    be = gpt.backend
    be.copy(gpt.params, be.from_array(values, (n,), "f32"))


def load_for_inference(path: str, backend_name: str = ""):
    """(RunConfig, tokenizer, GPT in eval mode, Checkpoint) from a checkpoint file."""
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend

    ck = ckpt_format.load(path)
    config = config_of(ck)
    tokenizer = tokenizer_of(ck)
    backend = get_backend(backend_name or config.train.backend)
    gpt = GPT(config.model, backend, Rng(config.train.seed), init=False)
    load_params(gpt, ck)
    gpt.eval()
    return config, tokenizer, gpt, ck
