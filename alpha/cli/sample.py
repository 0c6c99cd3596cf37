"""`python -m alpha sample`: continue a prompt with a trained model (KV-cache inference engine).

    python -m alpha sample --run outputs/<run_id> --prompt "def main(" --max-tokens 200
    python -m alpha sample --checkpoint outputs/<run_id>/checkpoints/step-600.ckpt

Sampling settings default to the run's SampleConfig; flags override them. Prints the text, then
one line with prefill and decode speed (tokens per second).
"""

from __future__ import annotations

import dataclasses
import sys

from alpha.core.config import BACKENDS


def register(sub):
    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run folder or run id (uses its latest checkpoint)")
    src.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint file")
    p.add_argument("--prompt", default=None, help="text to continue (default: a newline)")
    p.add_argument("--max-tokens", type=int, default=None, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=None, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely (0 = off)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus mass (1.0 = off)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="run on this backend (default: the run's)")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.core.config import build, SampleConfig
    from alpha.core.rng import Rng
    from alpha.train.checkpoint import find
    from alpha.train.generate import generate
    from alpha.train.restore import load_for_inference

    path = find(args.checkpoint or args.run)
    config, tokenizer, model, ck = load_for_inference(path, args.backend or "")
    given = {
        "prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": args.temperature,
        "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
    }
    sc = build(SampleConfig, {**dataclasses.asdict(config.sample),
                              **{k: v for k, v in given.items() if v is not None}}, "sample")
    prompt = sc.prompt if sc.prompt else "\n"
    stats: dict = {}
    text = generate(model, tokenizer, prompt, sc, Rng(sc.seed).stream("sampling"), stats)
    sys.stdout.write((sc.prompt or "") + text + "\n")
    sys.stdout.flush()
    pre = stats["prefill_tokens"] / stats["prefill_s"] if stats.get("prefill_s") else 0.0
    dec = stats["decode_tokens"] / stats["decode_s"] if stats.get("decode_s") else 0.0
    print(f"[{path} step {ck.step}] prefill {stats['prefill_tokens']} tokens at {pre:,.0f} tok/s, "
          f"decode {stats['decode_tokens']} tokens at {dec:,.0f} tok/s", file=sys.stderr)
    return 0
