"""`python -m alpha train`: train a GPT. With no arguments it trains a small char-level model on the
Python standard library of this interpreter (about three minutes on two cores) and ends with a
sample.

Every ModelConfig/TrainConfig field has a flag (`FLAGS` maps flag -> field; the help text is the
field's comment in alpha/core/config.py). A flag's default is None, so only flags the user gave
override the lower layers: CLI > --config FILE > --domain defaults > dataclass defaults.
`--resume CKPT` continues a checkpoint: its saved config is the base, the flags given here override
it, and a model field that would change is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys

from alpha.core.config import (
    ACTIVATIONS, BACKENDS, MATMUL_DTYPES, NORMS, OPTIMIZERS, POSITIONS, TOKENIZERS,
    ModelConfig, RunConfig, SampleConfig, TrainConfig,
    load_config_file,
)
from alpha.core.errors import CheckpointError

EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT): stopped with a checkpoint
EXIT_SIGTERM = 143  # SIGTERM (128 + SIGTERM): stopped with a checkpoint

# flag -> (section, field). Booleans get --flag / --no-flag.
FLAGS = {
    # model
    "--vocab-size": ("model", "vocab_size"),
    "--layers": ("model", "n_layer"),
    "--heads": ("model", "n_head"),
    "--dim": ("model", "n_embd"),
    "--block": ("model", "block_size"),
    "--ffn-dim": ("model", "ffn_dim"),
    "--activation": ("model", "activation"),
    "--bias": ("model", "bias"),
    "--tie": ("model", "tie_embeddings"),
    "--dropout": ("model", "dropout"),
    "--norm": ("model", "norm"),
    "--qk-norm": ("model", "qk_norm"),
    "--logit-softcap": ("model", "logit_softcap"),
    "--layernorm-eps": ("model", "layernorm_eps"),
    "--pos": ("model", "pos"),
    "--rope-theta": ("model", "rope_theta"),
    "--attn-softcap": ("model", "attn_softcap"),
    # data and layout
    "--data": ("train", "data"),
    "--val-data": ("train", "val_data"),
    "--tokenizer": ("train", "tokenizer"),
    "--backend": ("train", "backend"),
    "--dtype": ("train", "dtype"),
    "--run-dir": ("train", "run_dir"),
    # optimisation
    "--batch": ("train", "batch_size"),
    "--iters": ("train", "iters"),
    "--lr": ("train", "lr"),
    "--min-lr": ("train", "min_lr"),
    "--warmup": ("train", "warmup_iters"),
    "--beta1": ("train", "beta1"),
    "--beta2": ("train", "beta2"),
    "--eps": ("train", "eps"),
    "--weight-decay": ("train", "weight_decay"),
    "--grad-clip": ("train", "grad_clip"),
    "--accum": ("train", "accum_steps"),
    # the optimizer (alpha/train/optimizers)
    "--optimizer": ("train", "optimizer"),
    "--sgd-momentum": ("train", "sgd_momentum"),
    "--sgd-nesterov": ("train", "sgd_nesterov"),
    "--adafactor-eps": ("train", "adafactor_eps"),
    "--adafactor-clip": ("train", "adafactor_clip"),
    "--adafactor-decay": ("train", "adafactor_decay"),
    "--muon-lr": ("train", "muon_lr"),
    "--muon-momentum": ("train", "muon_momentum"),
    # cadence
    "--eval-interval": ("train", "eval_interval"),
    "--eval-iters": ("train", "eval_iters"),
    "--sample-interval": ("train", "sample_interval"),
    "--checkpoint-interval": ("train", "checkpoint_interval"),
    "--log-interval": ("train", "log_interval"),
    "--keep-checkpoints": ("train", "keep_checkpoints"),
    "--max-bad-steps": ("train", "max_bad_steps"),
    "--seed": ("train", "seed"),
    "--activation-checkpointing": ("train", "activation_checkpointing"),
    # stability, data order, observability (trainer)
    "--spike-threshold": ("train", "spike_threshold"),
    "--emb-grad-scale": ("train", "emb_grad_scale"),
    "--packed": ("train", "packed"),
    "--layer-stats-interval": ("train", "layer_stats_interval"),
    "--strict-planning": ("train", "strict_planning"),
    # the samples shown while training
    "--sample-tokens": ("sample", "max_tokens"),
    "--temperature": ("sample", "temperature"),
    "--top-k": ("sample", "top_k"),
    "--top-p": ("sample", "top_p"),
    "--prompt": ("sample", "prompt"),
}
CHOICES = {"activation": ACTIVATIONS, "tokenizer": TOKENIZERS, "backend": BACKENDS,
           "dtype": MATMUL_DTYPES, "pos": POSITIONS, "optimizer": OPTIMIZERS, "norm": NORMS}
METAVARS = {"data": "FILE", "val_data": "FILE", "run_dir": "DIR"}
_CLASSES = {"model": ModelConfig, "train": TrainConfig, "sample": SampleConfig}


def field_docs(cls) -> dict[str, str]:
    """{field: its trailing comment} read from the dataclass source: the one place they live."""
    docs = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return docs
    for m in re.finditer(r"^\s+(\w+): [^=\n]+=[^#\n]*#\s*(.+)$", source, re.MULTILINE):
        docs[m.group(1)] = m.group(2).strip()
    return docs


def add_config_flags(p: argparse.ArgumentParser, flags: dict = FLAGS) -> None:
    """One flag per config field in `flags`, typed from the dataclass, default None."""
    groups = {
        "model": p.add_argument_group("model (ModelConfig)"),
        "train": p.add_argument_group("training (TrainConfig)"),
        "sample": p.add_argument_group("samples while training (SampleConfig)"),
    }
    docs = {s: field_docs(cls) for s, cls in _CLASSES.items()}
    for flag, (section, name) in flags.items():
        cls = _CLASSES[section]
        f = next(x for x in dataclasses.fields(cls) if x.name == name)
        typ = {"int": int, "float": float, "str": str, "bool": bool}.get(
            f.type if isinstance(f.type, str) else f.type.__name__, str)
        default = f.default
        helptext = f"{docs[section].get(name, name)} [{section}.{name}, default {default!r}]"
        helptext = helptext.replace("%", "%%")
        g = groups[section]
        dest = f"{section}__{name}"
        if typ is bool:
            g.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                           help=helptext)
        else:
            metavar = None if name in CHOICES else METAVARS.get(name) or (
                "N" if typ is int else "X" if typ is float else "TEXT")
            g.add_argument(flag, dest=dest, type=typ, default=None, choices=CHOICES.get(name),
                           metavar=metavar, help=helptext)


def cli_overrides(args) -> dict:
    """{"model": {...}, "train": {...}, "sample": {...}} of the flags the user gave."""
    out: dict = {"model": {}, "train": {}, "sample": {}}
    for key, value in vars(args).items():
        if "__" in key and value is not None:
            section, name = key.split("__", 1)
            if section in out:
                out[section][name] = value
    return out


def register(sub):
    p = sub.add_parser(
        "train", help="train a GPT (no arguments: a small model on Python's own sources)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--domain", default=None,
                   help="text | code | chat: picks the tokenizer and defaults")
    p.add_argument("--config", metavar="FILE.json", default=None,
                   help='JSON file {"domain":..,"model":{..},"train":{..},"sample":{..}}')
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="CKPT", default=None,
                       help="continue a checkpoint (its run folder, unless --run-dir says "
                            "otherwise)")
    start.add_argument("--init-from", metavar="CKPT|HF-DIR", default=None,
                       help="a new run from these weights and their tokenizer, with a fresh "
                            "optimizer: an Alpha checkpoint, a Hugging Face GPT-2 folder or a "
                            ".safetensors file (model flags may only lower --block, set --dropout)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (launch with mpirun -np N or srun); "
                        "--batch is the global batch, shared out among the ranks")
    p.add_argument("--upload-checkpoints", action="store_true",
                   help="with ALPHA_REMOTE_URL: upload every checkpoint (default: the final one)")
    add_config_flags(p)
    p.set_defaults(func=run)


def resolve_run_config(args) -> tuple[RunConfig, object | None]:
    """The RunConfig for `args`, and the loaded checkpoint when resuming."""
    from alpha.core.config import resolve
    from alpha.train import checkpoint as ckpt_format
    from alpha.train import default_data

    cli = cli_overrides(args)
    if args.resume:
        ck = ckpt_format.load(args.resume)
        base = ck.header.get("config")
        if not isinstance(base, dict):
            raise CheckpointError(f"checkpoint {args.resume} has no config in its header")
        if "optimizer" not in ck.header:  # e.g. written by `alpha import`: weights only
            raise CheckpointError(f"checkpoint {args.resume} holds weights only (no optimizer "
                                  "state) and cannot be resumed; start a run from it with "
                                  "--init-from")
        file_data = load_config_file(args.config) if args.config else {}
        merged = {"domain": args.domain or base.get("domain", "text")}
        for section in ("model", "train", "sample"):
            merged[section] = {**base.get(section, {}), **file_data.get(section, {}),
                               **cli[section]}
        merged["train"].pop("run_dir", None)
        if cli["train"].get("run_dir"):
            merged["train"]["run_dir"] = cli["train"]["run_dir"]
        ignored = _ignored_on_resume(base, file_data, cli, ck.header.get("tokenizer_name"))
        for section, name in RESUME_KEEPS:  # the saved values, so config.json tells the truth
            merged[section].pop(name, None)
            if name in base.get(section, {}):
                merged[section][name] = base[section][name]
        if ignored:
            print(f"note: --resume keeps the checkpoint's tokenizer; ignoring {ignored}",
                  file=sys.stderr)
        config = RunConfig.from_dict(merged)
        if args.domain and args.domain != base.get("domain"):
            raise CheckpointError(
                f"cannot resume {args.resume} as domain {args.domain!r}: it was trained as "
                f"{base.get('domain')!r}"
            )
        return config, ck

    file_data = load_config_file(args.config) if args.config else {}
    domain = args.domain or file_data.get("domain") or "text"
    data_given = cli["train"].get("data") or file_data.get("train", {}).get("data")
    if not data_given and domain == "text":
        # the embedded default run: its layer sits below the file and the flags
        for section, values in default_data.DEFAULT_RUN.items():
            below = {k: v for k, v in values.items() if k not in file_data.get(section, {})}
            cli[section] = {**below, **cli[section]}
    return resolve(args.domain or "", args.config or "", cli), None


# (section, field): what a resume takes from the checkpoint whatever is asked (the tokenizer is
# the checkpoint's, and the vocabulary size is the tokenizer's)
RESUME_KEEPS = (("train", "tokenizer"), ("model", "vocab_size"))


def _ignored_on_resume(base: dict, file_data: dict, cli: dict, kind=None) -> str:
    """`--tokenizer bpe, --vocab-size 512`: the settings given that a resume does not apply
    (`kind`: the checkpoint's tokenizer, when its config left it to the domain)."""
    flag_of = {v: k for k, v in FLAGS.items()}
    out = []
    for section, name in RESUME_KEEPS:
        saved = (base.get(section) or {}).get(name)
        if name == "tokenizer":
            saved = saved or kind
        for source, values in (("", cli), (" (in --config)", file_data)):
            given = (values.get(section) or {}).get(name)
            if given is not None and given != saved:
                out.append(f"{flag_of[(section, name)]} {given}{source}")
                break
    return ", ".join(out)


def run(args) -> int:
    from alpha.train.trainer import Trainer

    config, ck = resolve_run_config(args)
    init = None
    if args.init_from:
        from alpha.interop.init_from import start_from

        given = load_config_file(args.config).get("model", {}) if args.config else {}
        config, init = start_from(args.init_from, config,
                                  {**given, **cli_overrides(args)["model"]})
    dist = None
    if getattr(args, "distributed", False):
        from alpha.dist import start

        dist = start(config.train.backend)  # joins the MPI job; this rank's threads and GPU
    out = None if args.quiet or (dist is not None and not dist.is_main) else sys.stderr
    trainer = Trainer(config, resume=ck, init_from=init, run_dir=config.train.run_dir, out=out,
                      upload_checkpoints=getattr(args, "upload_checkpoints", False), dist=dist)
    result = trainer.train()
    if dist is not None:
        dist.finish(completed=result.status == "completed")  # MPI_Finalize after a full run
        if not dist.is_main:  # rank 0 reports
            return EXIT_SIGTERM if result.signal == "SIGTERM" else \
                EXIT_INTERRUPTED if result.status == "interrupted" else 0
    loss = f"{result.loss:.4f}" if result.loss is not None else "n/a"
    val = f", val loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    if result.status == "interrupted":
        print(f"stopped at step {result.step}; resume with: python -m alpha train --resume "
              f"{result.checkpoint}", file=sys.stderr)
        return EXIT_SIGTERM if result.signal == "SIGTERM" else EXIT_INTERRUPTED
    print(f"done: {result.step} steps in {result.elapsed_s:.1f}s, loss {loss}{val}")
    print(f"run folder: {result.run_dir}")
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
        print(f"sample it:  python -m alpha sample --checkpoint {result.checkpoint} --prompt ...")
    return 0
