"""`python -m alpha import`: read a Hugging Face GPT-2 model into an Alpha checkpoint.

    python -m alpha import --from gpt2-folder/ --out gpt2.ckpt
    python -m alpha import --from model.safetensors --tokenizer gpt2-folder/ --out gpt2.ckpt
    python -m alpha sample --checkpoint gpt2.ckpt --prompt "Hello"

`--from` is a folder saved by `save_pretrained` (config.json + model.safetensors, or shards) or a
GPT-2 .safetensors file (OpenAI's names, `transformer.` prefix or not; a config.json beside it is
used when present). The tokenizer comes from the same folder unless `--tokenizer` names one.
(The module is `import_` because `import` is a Python keyword.)
"""

from __future__ import annotations

import time


def register(sub):
    p = sub.add_parser("import", help="read a Hugging Face GPT-2 model into an Alpha checkpoint",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", metavar="DIR|FILE.safetensors", required=True,
                   help="an HF GPT-2 folder or a .safetensors file")
    p.add_argument("--out", metavar="CKPT", required=True, help="the checkpoint file to write")
    p.add_argument("--tokenizer", metavar="PATH", default="",
                   help="a GPT-2 tokenizer folder, vocab.json, tokenizer.json or Alpha tokenizer "
                        "JSON (default: the one beside the weights)")
    p.add_argument("--heads", type=int, default=0,
                   help="attention heads, for a .safetensors file without config.json "
                        "(default: n_embd / 64, as every OpenAI GPT-2 size)")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.core.errors import ConfigError
    from alpha.interop.hf_import import import_model

    if args.heads < 0:
        raise ConfigError(f"--heads {args.heads} must be >= 0")
    t0 = time.perf_counter()
    imported, size = import_model(args.source, args.out, args.tokenizer, args.heads)
    c = imported.config
    print(f"imported {args.source}: {imported.n_params:,} parameters ({c.n_layer} layers, "
          f"{c.n_head} heads, {c.n_embd} wide, context {c.block_size}, vocabulary "
          f"{c.vocab_size}, tokenizer {imported.tokenizer.kind}) -> {args.out} "
          f"({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s")
    return 0
