"""Training and decoding speed: Alpha (CPU backend) beside PyTorch eager (2 threads).

    python bench/train_speed.py            # both configs, both frameworks, a table
    python bench/train_speed.py --steps 5  # fewer timed steps

Config A: vocab 256, 4 layers, 4 heads, 128 dim, block 128, batch 16.
Config B: vocab 4096, 6 layers, 6 heads, 384 dim, block 256, batch 8.
Each (framework, config) runs in its own process, so the peak RSS (resource.getrusage ru_maxrss)
is that run's alone. A training step is forward + backward + AdamW on random tokens; the first
`--warmup` steps are not timed. Decode: config B, batch 1, with a KV cache (Alpha's inference
engine; for PyTorch a simple per-layer K/V cache loop), 32 prompt tokens then `--decode` tokens.

PyTorch is found by importing it, else by running this file under .venv-bench/bin/python
(`python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0`; git-ignored). It is
never a dependency of Alpha. This file also holds the PyTorch GPT that
bench/shakespeare_char.py trains (`torch_gpt`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")

CONFIGS = {
    "A": dict(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=128, batch=16),
    "B": dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ---- where PyTorch lives ----------------------------------------------------------------------


def torch_env() -> dict:
    """The environment for a PyTorch subprocess. On a busy machine (1-minute load average at or
    above the core count) OpenMP's spinning barrier makes 2-thread PyTorch several times slower
    (measured: 334 vs 93 ms/step), so there it waits passively; `busy_note` says when."""
    env = dict(os.environ)
    if machine_busy():
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def machine_busy() -> bool:
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return False


def busy_note() -> str:
    load = os.getloadavg()[0]
    return (f"note: this machine is busy (load average {load:.1f} on {os.cpu_count()} cores): "
            "timings are noisy; PyTorch runs with OMP_WAIT_POLICY=PASSIVE")


def torch_python() -> str | None:
    """A python that can import torch: this one, or the bench venv's; None when neither."""
    try:
        import torch  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    if os.path.isfile(VENV_PY):
        r = subprocess.run([VENV_PY, "-c", "import torch"], capture_output=True)
        if r.returncode == 0:
            return VENV_PY
    return None


# ---- the PyTorch GPT (nanoGPT's model, trimmed) -------------------------------------------------


def torch_gpt(vocab_size, n_layer, n_head, n_embd, block_size, bias=True, dropout=0.0):
    import torch
    import torch.nn as nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
            self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
            self.drop = nn.Dropout(dropout)

        def attn(self, x, cache=None):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            if cache is not None:
                if cache.get("k") is not None:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
                causal = T > 1
            else:
                causal = True
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                               dropout_p=dropout if self.training else 0.0)
            return self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

        def forward(self, x, cache=None):
            x = x + self.attn(self.ln_1(x), cache)
            return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)),
                                                      approximate="tanh")))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(block_size, n_embd)
            self.drop = nn.Dropout(dropout)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd, bias=bias)
            self.apply(self._init)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

        def _init(self, m):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None, caches=None, start=0):
            T = idx.shape[1]
            pos = torch.arange(start, start + T, device=idx.device)
            x = self.drop(self.wte(idx) + self.wpe(pos))
            for i, block in enumerate(self.h):
                x = block(x, None if caches is None else caches[i])
            x = self.ln_f(x)
            if targets is None:
                return x[:, -1, :] @ self.wte.weight.T, None
            logits = x @ self.wte.weight.T  # tied head, like Alpha's default
            return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return GPT()


def torch_optimizer(model, lr, weight_decay, beta1, beta2, eps=1e-8):
    """AdamW with decay on the 2-D matmul weights only (not embeddings, norms, biases): Alpha's
    grouping."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith(("wte", "wpe")) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps)


# ---- one measurement per process --------------------------------------------------------------


def measure_torch(name: str, steps: int, warmup: int, decode: int) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    c = CONFIGS[name]
    B, T, V = c["batch"], c["block_size"], c["vocab_size"]
    model = torch_gpt(V, c["n_layer"], c["n_head"], c["n_embd"], T)
    opt = torch_optimizer(model, 1e-3, 0.1, 0.9, 0.99)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    out = {"framework": "pytorch " + torch.__version__, "config": name,
           "tok_s": B * T * len(times) / sum(times), "ms_per_iter": 1000 * sum(times) / len(times)}
    if decode:
        model.eval()
        prompt = torch.randint(0, V, (1, 32))
        with torch.no_grad():
            caches = [{} for _ in range(c["n_layer"])]
            t0 = time.perf_counter()
            logits, _ = model(prompt, caches=caches, start=0)
            t1 = time.perf_counter()
            pos = 32
            for _ in range(decode):
                tok = torch.argmax(logits, dim=-1, keepdim=True)
                logits, _ = model(tok, caches=caches, start=pos)
                pos += 1
            t2 = time.perf_counter()
        out["prefill_tok_s"] = 32 / (t1 - t0)
        out["decode_tok_s"] = decode / (t2 - t1)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def measure_alpha(name: str, steps: int, warmup: int, decode: int) -> dict:
    sys.path.insert(0, ROOT)
    from alpha.core.config import ModelConfig, TrainConfig
    from alpha.core.rng import Rng
    from alpha.model.inference import InferenceEngine
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.train.optim import clip_coef, grad_norm
    from alpha.train.optimizers import build_optimizer

    c = CONFIGS[name]
    B, T, V = c["batch"], c["block_size"], c["vocab_size"]
    cfg = ModelConfig(vocab_size=V, n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
                      block_size=T)
    be = get_backend("cpu")
    rng = Rng(0)
    model = GPT(cfg, be, rng)
    opt = build_optimizer(be, model, TrainConfig(optimizer="adamw", beta1=0.9, beta2=0.99,
                                                 eps=1e-8, weight_decay=0.1))
    data = rng.stream("data")
    xs = data.randint(B * T, V)
    ys = data.randint(B * T, V)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        ids, targets = be.from_array(xs, (B, T), "i32"), be.from_array(ys, (B, T), "i32")
        model.zero_grad()
        _, loss = model.forward(ids, targets)
        loss.to_array()
        model.backward()
        be.all_finite(model.grads)
        coef = clip_coef(grad_norm(be, model.grads), 1.0)
        opt.update(1e-3, grad_scale=coef)
        be.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    out = {"framework": "alpha cpu", "config": name,
           "tok_s": B * T * len(times) / sum(times), "ms_per_iter": 1000 * sum(times) / len(times)}
    if decode:
        engine = InferenceEngine(model)
        prompt = data.randint(32, V)
        t0 = time.perf_counter()
        logits = engine.prefill([prompt])
        row = be.to_array(logits)
        t1 = time.perf_counter()
        for _ in range(decode):
            tok = row.index(max(row))  # argmax, first of ties (torch.argmax on the other side)
            row = be.to_array(engine.decode(tok))
        t2 = time.perf_counter()
        out["prefill_tok_s"] = 32 / (t1 - t0)
        out["decode_tok_s"] = decode / (t2 - t1)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---- the driver -----------------------------------------------------------------------------


def run_one(python: str, framework: str, name: str, args) -> dict | None:
    cmd = [python, os.path.abspath(__file__), "--one", framework, name, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--decode", str(args.decode if name == "B" else 0)]
    env = torch_env() if framework == "torch" else dict(os.environ)
    env.setdefault("ALPHA_NUM_THREADS", "2")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        print(f"{framework} {name} failed:\n{r.stderr.strip()[-2000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed training steps per config")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--decode", type=int, default=128, help="decoded tokens (config B)")
    p.add_argument("--configs", default="AB", help="which configs (A, B or AB)")
    p.add_argument("--one", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        fw, name = args.one
        fn = measure_torch if fw == "torch" else measure_alpha
        print(json.dumps(fn(name, args.steps, args.warmup, args.decode)))
        return 0

    tpy = torch_python()
    if machine_busy():
        print(busy_note())
    if tpy is None:
        print("PyTorch is not importable here and .venv-bench has none: Alpha numbers only "
              "(python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0)")
    results = []
    for name in args.configs:
        a = run_one(sys.executable, "alpha", name, args)
        t = run_one(tpy, "torch", name, args) if tpy else None
        results.append((name, a, t))

    print(f"\ntraining step (fwd + bwd + clip + AdamW), {args.steps} timed steps, 2 threads")
    print(f"{'config':<8}{'alpha tok/s':>13}{'torch tok/s':>13}{'alpha/torch':>13}"
          f"{'alpha RSS MB':>14}{'torch RSS MB':>14}")
    for name, a, t in results:
        ratio = f"{a['tok_s'] / t['tok_s']:.2f}x" if a and t else "-"
        print(f"{name:<8}{_n(a, 'tok_s'):>13}{_n(t, 'tok_s'):>13}{ratio:>13}"
              f"{_n(a, 'peak_rss_mb'):>14}{_n(t, 'peak_rss_mb'):>14}")
    for name, a, t in results:
        if a and "decode_tok_s" in a:
            ratio = f"{a['decode_tok_s'] / t['decode_tok_s']:.2f}x" if t else "-"
            print(f"\ndecode, config {name}, batch 1, KV cache: alpha {a['decode_tok_s']:.1f} tok/s"
                  f" (prefill {a['prefill_tok_s']:.0f} tok/s), torch "
                  f"{_n(t, 'decode_tok_s')} tok/s (prefill {_n(t, 'prefill_tok_s')} tok/s), "
                  f"alpha/torch {ratio}")
    print("\n" + json.dumps({"results": [{"config": n, "alpha": a, "torch": t}
                                         for n, a, t in results]}))
    return 0


def _n(row, key) -> str:
    if not row or key not in row:
        return "-"
    return f"{row[key]:,.0f}" if row[key] >= 100 else f"{row[key]:.1f}"


if __name__ == "__main__":
    sys.exit(main())
