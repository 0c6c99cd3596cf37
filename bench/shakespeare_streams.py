"""What the Shakespeare runs draw, Alpha beside PyTorch: cheap statistical checks (seconds).

    python bench/shakespeare_streams.py              # seeds 1337..1344
    python bench/shakespeare_streams.py --seeds 4

The Shakespeare gap (bench/shakespeare_gap.md): Alpha and the PyTorch twin compute the same steps
from the same weights and batches (bench/parity_torch.py), so a difference of the mean val loss
over seeds has to come from what each draws or measures. This script checks each stream against
its distribution and against PyTorch's, without training:

- init: Alpha's "init" stream through the real GPT init (all N(0, std) weights, in units of their
  std) and torch.nn.init.normal_ on the twin: mean, variance, skewness, excess kurtosis, the
  Kolmogorov-Smirnov distance to N(0, 1), the tails beyond 3 and 4 sigma, and how much each
  matrix's own std scatters;
- batch starts: the 2000 x 12 window starts of a run (Alpha's BatchSampler, torch.randint):
  range, chi-square over 100 bins, lag-1 correlation between consecutive starts (within a batch
  and from batch to batch), the share of training positions seen;
- eval windows: the 200 x 12 validation windows of each seed: how much two seeds share, and the
  share of validation positions covered.

It prints a table per check; the interpretation is in bench/shakespeare_gap.md.
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

from shakespeare_char import DATA, MODEL, TRAIN  # noqa: E402


def moments(xs) -> dict:
    """Mean, variance, skewness, excess kurtosis, KS distance to N(0, 1), tail shares (float64)."""
    import torch

    x = torch.as_tensor(xs, dtype=torch.float64).flatten()
    n = x.numel()
    mean = float(x.mean())
    c = x - mean
    var = float((c * c).mean())
    skew = float((c ** 3).mean()) / var ** 1.5
    kurt = float((c ** 4).mean()) / var ** 2 - 3.0
    s, _ = torch.sort(x)
    cdf = 0.5 * (1.0 + torch.erf(s / math.sqrt(2.0)))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    ks = float(torch.maximum(i / n - cdf, cdf - (i - 1) / n).max())
    return {"n": n, "mean": mean, "var": var, "skew": skew, "kurt": kurt, "ks": ks,
            "ks_p": ks_pvalue(ks, n), "gt3": float((x.abs() > 3).double().mean()),
            "gt4": float((x.abs() > 4).double().mean())}


def ks_pvalue(d: float, n: int) -> float:
    """Asymptotic Kolmogorov distribution: P(D_n > d)."""
    t = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    return max(0.0, min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t)
                                     for k in range(1, 101))))


def alpha_init(seed: int, vocab: int):
    """{name: (std, values)} of Alpha's N(0, std) parameters for `seed`."""
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model import params as P
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend

    cfg = ModelConfig(vocab_size=vocab, **{k: v for k, v in MODEL.items()})
    be = get_backend("cpu")
    gpt = GPT(cfg, be, Rng(seed))
    out = {}
    for name, values in gpt.state_dict().items():
        std = P.init_std(cfg, name)
        if std is not None:
            out[name] = (std, list(values))
    return out


def torch_init(seed: int, vocab: int):
    import torch

    from train_speed import torch_gpt

    torch.manual_seed(seed)
    model = torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"],
                      MODEL["block_size"], bias=MODEL["bias"], dropout=MODEL["dropout"])
    out = {}
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * MODEL["n_layer"]) if name.endswith("proj.weight") else 0.02
            out[name] = (std, p.detach().flatten().tolist())
    return out


def init_report(seeds, vocab: int) -> None:
    print(f"init: all N(0, std) weights in units of their std, seeds {seeds[0]}..{seeds[-1]}")
    print(f"  {'side':<8}{'n':>10}{'mean':>10}{'var':>9}{'skew':>9}{'ex.kurt':>9}{'KS':>9}"
          f"{'KS p':>7}{'>3sd':>9}{'>4sd':>10}{'mat sd cv':>11}")
    for side, fn in (("alpha", alpha_init), ("torch", torch_init)):
        zs, cvs = [], []
        for seed in seeds:
            for std, values in fn(seed, vocab).values():
                z = [v / std for v in values]
                zs.extend(z)
                m = sum(z) / len(z)
                cvs.append(math.sqrt(sum((v - m) ** 2 for v in z) / len(z)))
        r = moments(zs)
        cv = math.sqrt(sum((c - 1) ** 2 for c in cvs) / len(cvs))
        print(f"  {side:<8}{r['n']:>10,}{r['mean']:>10.5f}{r['var']:>9.5f}{r['skew']:>9.5f}"
              f"{r['kurt']:>9.5f}{r['ks']:>9.5f}{r['ks_p']:>7.2f}{r['gt3']:>9.5f}"
              f"{r['gt4']:>10.6f}{cv:>11.5f}")
    print(f"  N(0,1)  {'':>10}{0:>10.5f}{1:>9.5f}{0:>9.5f}{0:>9.5f}{'':>9}{'':>7}"
          f"{math.erfc(3 / math.sqrt(2)):>9.5f}{math.erfc(4 / math.sqrt(2)):>10.6f}")


def split(data: str):
    """(train, val, vocab) exactly as Alpha's Trainer tokenizes and splits the file."""
    from alpha.core.config import resolve
    from alpha.train.data import run_data, run_tokenizer

    cfg = resolve("text", "", {"model": MODEL, "train": {**TRAIN, "data": data,
                                                         "tokenizer": "char"}})
    tok = run_tokenizer(cfg)
    d = run_data(cfg, tok)
    return list(d.train), list(d.val), tok.vocab_size


def alpha_starts(tokens, seed: int, batches: int, stream: str):
    from alpha.core.rng import Rng
    from alpha.train.data import BatchSampler

    s = BatchSampler(tokens, TRAIN["batch_size"], MODEL["block_size"], Rng(seed), stream=stream)
    return [s.starts() for _ in range(batches)]


def torch_starts(n: int, seed: int, batches: int, skip: int = 0):
    """torch.randint draws like the bench's batch(): `skip` batches first (training before eval)."""
    import torch

    torch.manual_seed(seed)
    B, T = TRAIN["batch_size"], MODEL["block_size"]
    for _ in range(skip):
        torch.randint(n - T, (B,))  # the training batches (train split size does not matter
        # for the generator's state: randint's draws per call are fixed by the count)
    return [torch.randint(n - T, (B,)).tolist() for _ in range(batches)]


def corr(a, b) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb)


def starts_report(train, seeds, iters: int) -> None:
    T = MODEL["block_size"]
    high = len(train) - T
    print(f"\nbatch starts: {iters} x {TRAIN['batch_size']} per seed in [0, {high}), "
          f"seeds {seeds[0]}..{seeds[-1]}")
    print(f"  {'side':<8}{'min':>8}{'max':>10}{'mean/high':>11}{'chi2(99)':>10}{'lag1 row':>10}"
          f"{'lag1 step':>11}{'seen':>8}")
    for side in ("alpha", "torch"):
        chis, r_row, r_step, seen, lo, hi, means = [], [], [], [], high, 0, []
        for seed in seeds:
            b = (alpha_starts(train, seed, iters, "data") if side == "alpha"
                 else torch_starts(len(train), seed, iters))
            flat = [s for row in b for s in row]
            lo, hi = min(lo, min(flat)), max(hi, max(flat))
            means.append(sum(flat) / len(flat) / high)
            bins = [0] * 100
            for s in flat:
                bins[s * 100 // high] += 1
            e = len(flat) / 100
            chis.append(sum((c - e) ** 2 / e for c in bins))
            r_row.append(corr(flat[:-1], flat[1:]))
            firsts = [row[0] for row in b]
            r_step.append(corr(firsts[:-1], firsts[1:]))
            cover = bytearray(len(train))
            for s in flat:
                cover[s:s + T + 1] = b"\x01" * (T + 1)
            seen.append(sum(cover) / len(train))
        k = len(seeds)
        print(f"  {side:<8}{lo:>8}{hi:>10}{sum(means) / k:>11.4f}{sum(chis) / k:>10.1f}"
              f"{sum(r_row) / k:>10.4f}{sum(r_step) / k:>11.4f}{sum(seen) / k:>8.3f}")
    print(f"  expected{'':>18}{0.5:>11.4f}{99:>10.1f}{0:>10.4f}{0:>11.4f}"
          f"{1 - math.exp(-iters * TRAIN['batch_size'] * (T + 1) / high):>8.3f}")


def eval_report(val, seeds, iters: int) -> None:
    T = MODEL["block_size"]
    n_eval = TRAIN["eval_iters"]
    print(f"\neval windows: {n_eval} x {TRAIN['batch_size']} per seed over {len(val):,} val "
          f"tokens, seeds {seeds[0]}..{seeds[-1]}")
    print(f"  {'side':<8}{'covered':>9}{'shared with next seed':>24}{'distinct windows':>18}")
    for side in ("alpha", "torch"):
        sets, covered = [], []
        for seed in seeds:
            b = (alpha_starts(val, seed, n_eval, "eval") if side == "alpha"
                 else torch_starts(len(val), seed, n_eval, skip=iters))
            flat = [s for row in b for s in row]
            sets.append(set(flat))
            cover = bytearray(len(val))
            for s in flat:
                cover[s:s + T + 1] = b"\x01" * (T + 1)
            covered.append(sum(cover) / len(val))
        shared = [len(a & b) / len(a) for a, b in zip(sets, sets[1:])]
        k = len(seeds)
        print(f"  {side:<8}{sum(covered) / k:>9.3f}{sum(shared) / max(1, len(shared)):>24.4f}"
              f"{sum(len(s) for s in sets) / k:>18.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DATA)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--seeds", type=int, default=8)
    args = p.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("needs torch (the PyTorch side of every check)", file=sys.stderr)
        return 2
    if not os.path.isfile(args.data):
        print(f"error: {args.data} not found (pass --data FILE)", file=sys.stderr)
        return 2
    seeds = [args.seed + k for k in range(args.seeds)]
    train, val, vocab = split(args.data)
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    print(f"config: Alpha vocab {vocab} (the file's {len(chars)} characters + <unk>), twin "
          f"{len(chars)}; Alpha train/val {len(train):,}/{len(val):,} tokens, bench "
          f"{int(len(text) * 0.9):,}/{len(text) - int(len(text) * 0.9):,}\n")
    init_report(seeds, vocab)
    starts_report(train, seeds, TRAIN["iters"])
    eval_report(val, seeds, TRAIN["iters"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
