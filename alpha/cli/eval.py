"""`python -m alpha eval`: loss and perplexity of a checkpoint on a text file.

The file is tokenized with the checkpoint's tokenizer and cut into consecutive, non-overlapping
windows of block_size tokens (each predicting its next tokens), evaluated in batches; the mean
cross-entropy over every predicted token is the loss, exp(loss) the perplexity. `--max-tokens`
bounds the work on big files (the first N tokens).
"""

from __future__ import annotations

import math
import sys

from alpha.core.config import BACKENDS


def register(sub):
    p = sub.add_parser("eval", help="loss and perplexity of a checkpoint on a text file",
                       description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run folder or run id (uses its latest checkpoint)")
    src.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint file")
    p.add_argument("--data", required=True, help="text file to evaluate on")
    p.add_argument("--batch", type=int, default=8, help="windows per batch (default 8)")
    p.add_argument("--max-tokens", type=int, default=200_000,
                   help="evaluate at most the first N tokens (0 = all; default 200000)")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.core.errors import ConfigError, DataError
    from alpha.core.files import read_text
    from alpha.train.checkpoint import find
    from alpha.train.data import tokens_of
    from alpha.train.progress import Progress
    from alpha.train.restore import load_for_inference

    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be >= 1")
    if args.max_tokens < 0:
        raise ConfigError(f"--max-tokens {args.max_tokens} must be >= 0")
    path = find(args.checkpoint or args.run)
    config, tokenizer, model, ck = load_for_inference(path, args.backend or "")
    tokens = tokens_of(tokenizer, read_text(args.data, "data file"))
    if args.max_tokens:
        tokens = tokens[: args.max_tokens + 1]
    T = config.model.block_size
    n_windows = (len(tokens) - 1) // T
    if n_windows < 1:
        raise DataError(
            f"{args.data} gives {len(tokens)} tokens, fewer than block_size + 1 = {T + 1}"
        )
    starts = [i * T for i in range(n_windows)]
    total, count = 0.0, 0
    n_batches = math.ceil(n_windows / args.batch)
    bar = Progress(n_batches, stream=sys.stderr, label="batch", every=max(1, n_batches // 10))
    for b, i in enumerate(range(0, n_windows, args.batch), 1):
        chunk = starts[i: i + args.batch]
        xs, ys = [], []
        for s in chunk:
            xs.extend(tokens[s: s + T])
            ys.extend(tokens[s + 1: s + T + 1])
        ids = model.backend.from_array(xs, (len(chunk), T), "i32")
        tg = model.backend.from_array(ys, (len(chunk), T), "i32")
        _, loss_t = model.forward(ids, tg)
        loss = float(loss_t.to_array()[0])
        total += loss * len(chunk) * T
        count += len(chunk) * T
        bar.update(b, loss=total / count)
    bar.close()
    mean = total / count
    ppl = math.exp(mean) if mean < 700 else float("inf")
    print(f"{args.data}: {count:,} tokens, loss {mean:.4f}, perplexity {ppl:.3f} "
          f"(checkpoint {path}, step {ck.step})")
    return 0
