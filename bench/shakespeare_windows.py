"""Eval windows against one fixed model: is a sampled val loss's offset the windows' or the model's?

    python bench/shakespeare_windows.py                 # trains the twin 2000 steps first (CPU)
    python bench/shakespeare_windows.py --iters 500     # a weaker model, quicker

Trains one PyTorch twin (seed 1337, the bench's config), computes the loss of EVERY validation
window (each start position once), then for many seeds the mean over the 200 x 12 windows each
eval sampler would draw, minus the full-split loss (stride-64 windows, `full val` of
bench/shakespeare_char.py). Samplers: PyTorch's global generator after the twin's constructor and
2000 training batches (what the bench's PyTorch run evaluates on), the same right after the
constructor, and Alpha's "eval" stream. With one model for all seeds, what is left is the
windows' own luck. bench/shakespeare_gap.md has the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from shakespeare_char import DATA, MODEL, TRAIN, char_split, full_val_starts, lr_at  # noqa: E402


def train_twin(train_ids, vocab: int, iters: int):
    import torch

    from train_speed import torch_gpt, torch_optimizer

    B, T = TRAIN["batch_size"], MODEL["block_size"]
    src = torch.tensor(train_ids)
    torch.manual_seed(1337)
    model = torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"], T,
                      bias=MODEL["bias"], dropout=MODEL["dropout"])
    opt = torch_optimizer(model, TRAIN["lr"], TRAIN["weight_decay"], TRAIN["beta1"],
                          TRAIN["beta2"])
    for step in range(1, iters + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], iters)
        ix = torch.randint(len(src) - T, (B,))
        x = torch.stack([src[i:i + T] for i in ix])
        y = torch.stack([src[i + 1:i + T + 1] for i in ix])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        if step % 250 == 0:
            print(f"step {step}/{iters} | loss {loss.item():.4f}", file=sys.stderr)
    return model.eval()


def window_losses(model, val_ids, vocab: int):
    """(n_val - T,) float64: the mean loss of the window starting at each position."""
    import torch
    from torch.nn import functional as F

    T = MODEL["block_size"]
    src = torch.tensor(val_ids)
    offs = torch.arange(T + 1)
    n = len(val_ids) - T
    out = torch.empty(n, dtype=torch.float64)
    with torch.no_grad():
        for b in range(0, n, 1024):
            s = torch.arange(b, min(n, b + 1024))
            w = src[s[:, None] + offs]
            x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
            logits, _ = model(x, y)
            ce = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1), reduction="none")
            out[b:b + len(s)] = ce.view(len(s), T).mean(1).double()
    return out


def sampled_starts(seed: int, n_train: int, n_val: int, vocab: int):
    """{sampler: (eval_iters * B,) starts} for `seed`."""
    import torch

    from alpha.core.rng import Rng
    from train_speed import torch_gpt

    B, T, E = TRAIN["batch_size"], MODEL["block_size"], TRAIN["eval_iters"]
    torch.manual_seed(seed)
    torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"], T,
              bias=MODEL["bias"], dropout=MODEL["dropout"])  # the constructor's draws
    g = torch.Generator()
    g.set_state(torch.get_rng_state())
    fresh = torch.cat([torch.randint(n_val - T, (B,), generator=g) for _ in range(E)])
    g.set_state(torch.get_rng_state())
    for _ in range(TRAIN["iters"]):
        torch.randint(n_train - T, (B,), generator=g)
    after = torch.cat([torch.randint(n_val - T, (B,), generator=g) for _ in range(E)])
    alpha = torch.tensor(Rng(seed).stream("eval").randint(E * B, n_val - T))
    return {"pytorch after training": after, "pytorch after init": fresh,
            "alpha eval stream": alpha}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DATA)
    p.add_argument("--iters", type=int, default=TRAIN["iters"], help="training steps")
    p.add_argument("--seeds", default="24,400", help="seed counts from 1337 to report")
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("needs torch", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    train_ids, val_ids, chars = char_split(args.data)
    vocab = len(chars)
    model = train_twin(train_ids, vocab, args.iters)
    wl = window_losses(model, val_ids, vocab)
    full = wl[torch.tensor(full_val_starts(len(val_ids)))].mean().item()
    print(f"model after {args.iters} steps: mean over every window {wl.mean().item():.5f}, full "
          f"split (stride {MODEL['block_size']}) {full:.5f}, window sd {wl.std().item():.4f}")
    for count in map(int, args.seeds.split(",")):
        diffs: dict[str, list[float]] = {}
        for seed in range(1337, 1337 + count):
            for name, ix in sampled_starts(seed, len(train_ids), len(val_ids), vocab).items():
                diffs.setdefault(name, []).append(wl[ix].mean().item() - full)
        for name, d in diffs.items():
            m = sum(d) / len(d)
            sd = math.sqrt(sum((v - m) ** 2 for v in d) / (len(d) - 1))
            print(f"  seeds 1337..{1336 + count}: {name:<24} sampled - full {m:+.5f} +- "
                  f"{sd / math.sqrt(len(d)):.5f} (sd {sd:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
