"""Many Shakespeare runs at once on one GPU: the PyTorch twin, K models stacked, for the gap study.

    python bench/shakespeare_batched.py --seeds 40 --variants own,all,init,data,eval,vocab

bench/shakespeare_char.py trains one twin per process (about 25 s a run on a GPU, launch-bound);
a difference of 0.005 in a mean over seeds whose runs scatter by 0.009 needs tens of seeds per
variant. Here K twins train in one process as stacked tensors: every weight has a leading model
axis, matmuls are batched, the loss is the sum of the K models' mean losses (so each model's
gradient is its own), clipping is per model, and AdamW, elementwise, is the same update per model.
A run here computes what `shakespeare_char.py --one torch --twin VARIANT` computes for that seed,
the same draws in the same order (initial weights from the twin's own constructor or from Alpha's
init stream; batch starts from the twin's generator or from Alpha's BatchSampler), up to float
rounding of the batched kernels: the first seeds of a call double as a check against per-process
runs.

Vocabulary: every model has Alpha's 66 rows (65 characters + <unk>); a model of the twin's 65
masks row 65 out of its logits with -inf, which is the same model (that row then gets no gradient
and no weight decay: embeddings are not decayed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from shakespeare_char import (DATA, MODEL, TRAIN, alpha_init_params, char_split,  # noqa: E402
                              full_val_starts, lr_at, parse_twin)

NAMES = ("ln_1", "c_attn", "c_proj", "ln_2", "c_fc", "mlp_proj")  # per layer, twin names


def model_init(seed: int, draws: frozenset, n_chars: int):
    """({stacked name: tensor}, generator state after the constructor) for one model: the twin's
    own initial weights, or Alpha's. Matmul weights come out (in, out)."""
    import torch

    from train_speed import torch_gpt

    vocab = n_chars + 1 if "vocab" in draws else n_chars
    torch.manual_seed(seed)
    twin = torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"],
                     MODEL["block_size"], bias=MODEL["bias"], dropout=MODEL["dropout"])
    state = torch.get_rng_state()
    out = {}
    if "init" in draws:
        a = alpha_init_params(n_chars + 1, seed)

        def get(name):
            shape, values = a[name]
            return torch.tensor(values, dtype=torch.float32).view(shape)

        out["wte"], out["wpe"], out["ln_f"] = get("wte"), get("wpe"), get("ln_f.weight")
        for i in range(MODEL["n_layer"]):
            p = f"h.{i}."
            out[p + "ln_1"] = get(p + "ln_1.weight")
            out[p + "ln_2"] = get(p + "ln_2.weight")
            out[p + "c_attn"] = get(p + "attn.c_attn.weight")
            out[p + "c_proj"] = get(p + "attn.c_proj.weight")
            out[p + "c_fc"] = get(p + "mlp.c_fc.weight")
            out[p + "mlp_proj"] = get(p + "mlp.c_proj.weight")
        return out, state
    own = {n: p.detach().clone() for n, p in twin.named_parameters()}
    wte = own["wte.weight"]
    if wte.shape[0] == n_chars:  # pad to 66 rows; the row is masked out of this model's logits
        wte = torch.cat([wte, torch.zeros(1, wte.shape[1])])
    out["wte"], out["wpe"], out["ln_f"] = wte, own["wpe.weight"], own["ln_f.weight"]
    for i in range(MODEL["n_layer"]):
        p = f"h.{i}."
        for n in NAMES:
            t = own[p + n + ".weight"]
            out[p + n] = t if n.startswith("ln") else t.T.contiguous()
    return out, state


def draws_for(seed: int, draws: frozenset, gen_state, n_train: int, n_val: int, iters: int):
    """(train starts (iters, B), eval starts (eval_iters, B)) in the order the twin draws them."""
    import torch

    from alpha.core.rng import Rng

    B, T, E = TRAIN["batch_size"], MODEL["block_size"], TRAIN["eval_iters"]
    g = torch.Generator()
    g.set_state(gen_state)
    if "data" in draws:
        rng = Rng(seed).stream("data")
        train = [rng.randint(B, n_train - T) for _ in range(iters)]
    else:
        train = [torch.randint(n_train - T, (B,), generator=g).tolist() for _ in range(iters)]
    if "eval" in draws:
        rng = Rng(seed).stream("eval")
        val = [rng.randint(B, n_val - T) for _ in range(E)]
    else:
        val = [torch.randint(n_val - T, (B,), generator=g).tolist() for _ in range(E)]
    return torch.tensor(train), torch.tensor(val)


class Stacked:
    """K GPTs (the twin's architecture) as stacked parameters."""

    def __init__(self, inits: list[dict], masks, device):
        import torch

        self.params = {n: torch.stack([d[n] for d in inits]).to(device).requires_grad_()
                       for n in inits[0]}
        self.mask = masks.to(device)  # (K, 1, V): 0, or -inf on <unk> for 65-character models
        self.K = len(inits)

    def decay_groups(self):
        decay = [p for n, p in self.params.items() if n.split(".")[-1] in
                 ("c_attn", "c_proj", "c_fc", "mlp_proj")]
        no_decay = [p for n, p in self.params.items() if n.split(".")[-1] not in
                    ("c_attn", "c_proj", "c_fc", "mlp_proj")]
        return decay, no_decay

    def losses(self, x, y):
        """Mean cross-entropy per model, (K,), for x, y (K, B, T)."""
        import torch
        from torch.nn import functional as F

        P, K = self.params, self.K
        _, B, T = x.shape
        C, nh = MODEL["n_embd"], MODEL["n_head"]
        ks = torch.arange(K, device=x.device)[:, None, None]
        h = P["wte"][ks, x] + P["wpe"][:, None, :T, :]  # (K, B, T, C)

        def ln(t, w):
            return F.layer_norm(t, (C,), eps=1e-5) * w[:, None, None, :]

        def mm(t, w):  # (K, B, T, I) @ (K, I, O)
            return torch.bmm(t.reshape(K, B * T, -1), w).view(K, B, T, -1)

        for i in range(MODEL["n_layer"]):
            p = f"h.{i}."
            q, k, v = mm(ln(h, P[p + "ln_1"]), P[p + "c_attn"]).split(C, dim=3)
            q, k, v = (t.reshape(K * B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            a = a.transpose(1, 2).reshape(K, B, T, C)
            h = h + mm(a, P[p + "c_proj"])
            f = F.gelu(mm(ln(h, P[p + "ln_2"]), P[p + "c_fc"]), approximate="tanh")
            h = h + mm(f, P[p + "mlp_proj"])
        h = ln(h, P["ln_f"])
        logits = torch.bmm(h.reshape(K, B * T, C), P["wte"].transpose(1, 2)) + self.mask
        ce = F.cross_entropy(logits.reshape(K * B * T, -1), y.reshape(-1), reduction="none")
        return ce.view(K, B * T).mean(1)


def train(variants: list[str], seeds: list[int], data: str, iters: int, device: str) -> list:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    train_ids, val_ids, chars = char_split(data)
    n_chars = len(chars)
    B, T = TRAIN["batch_size"], MODEL["block_size"]
    runs = [(s, v) for s in seeds for v in variants]
    inits, trains, evals, masks = [], [], [], []
    t0 = time.perf_counter()
    for seed, v in runs:
        draws = parse_twin(v)
        init, state = model_init(seed, draws, n_chars)
        tr, ev = draws_for(seed, draws, state, len(train_ids), len(val_ids), iters)
        inits.append(init)
        trains.append(tr)
        evals.append(ev)
        m = torch.zeros(1, n_chars + 1)
        if "vocab" not in draws:
            m[0, n_chars] = float("-inf")
        masks.append(m)
    print(f"{len(runs)} models' draws in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    model = Stacked(inits, torch.stack(masks), device)
    decay, no_decay = model.decay_groups()
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=TRAIN["lr"],
                            betas=(TRAIN["beta1"], TRAIN["beta2"]), eps=1e-8)
    tr_tok = torch.tensor(train_ids, device=device)
    va_tok = torch.tensor(val_ids, device=device)
    starts = torch.stack(trains).to(device)  # (K, iters, B)
    offs = torch.arange(T + 1, device=device)
    params = list(model.params.values())
    t1 = time.perf_counter()
    for step in range(1, iters + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], iters)
        win = tr_tok[starts[:, step - 1, :, None] + offs]  # (K, B, T + 1)
        losses = model.losses(win[..., :-1], win[..., 1:])
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        with torch.no_grad():  # clip_grad_norm_ per model
            sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in params)
            coef = (TRAIN["grad_clip"] / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            for p in params:
                p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))))
        opt.step()
        if step % 200 == 0:
            el = time.perf_counter() - t1
            print(f"step {step}/{iters} | mean loss {losses.mean().item():.4f} | {el:.0f}s, "
                  f"ETA {el / step * (iters - step):.0f}s", file=sys.stderr)
    last = losses.detach().cpu().tolist()
    with torch.no_grad():
        ev = torch.stack(evals).to(device)  # (K, E, B)
        val = torch.zeros(model.K, device=device)
        for e in range(ev.shape[1]):
            win = va_tok[ev[:, e, :, None] + offs]
            val += model.losses(win[..., :-1], win[..., 1:])
        val /= ev.shape[1]
        fs = full_val_starts(len(val_ids))
        full = torch.zeros(model.K, device=device)
        for b in range(0, len(fs), B):
            st = torch.tensor(fs[b:b + B], device=device)
            win = va_tok[st[None, :, None].expand(model.K, -1, -1) + offs]
            full += model.losses(win[..., :-1], win[..., 1:])
        full /= len(fs) // B
    val, full = val.cpu().tolist(), full.cpu().tolist()
    return [{"seed": s, "twin": v, "val_loss": val[i], "val_full": full[i], "train_loss": last[i]}
            for i, (s, v) in enumerate(runs)]


def stats(vals):
    k = len(vals)
    m = sum(vals) / k
    sd = math.sqrt(sum((x - m) ** 2 for x in vals) / (k - 1)) if k > 1 else 0.0
    return m, sd / math.sqrt(k), sd


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DATA)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--iters", type=int, default=TRAIN["iters"])
    p.add_argument("--variants", default="own,all", help="twin variants (see shakespeare_char)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="", help="write the runs as JSON lines here")
    args = p.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here (--device cpu works, slowly)", file=sys.stderr)
        return 2
    variants = args.variants.split(",")
    for v in variants:
        parse_twin(v)
    seeds = [args.seed + k for k in range(args.seeds)]
    t0 = time.perf_counter()
    runs = train(variants, seeds, args.data, args.iters, args.device)
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in runs)
    print(f"{len(runs)} models, {args.iters} steps, in {time.perf_counter() - t0:.0f}s on "
          f"{args.device}; seeds {seeds[0]}..{seeds[-1]}")
    base = {}
    for v in variants:
        rs = [r for r in runs if r["twin"] == v]
        line = f"  {v:<24}"
        for key in ("val_loss", "val_full"):
            m, se, sd = stats([r[key] for r in rs])
            base.setdefault(key, (m, se))
            d = m - base[key][0]
            z = d / math.hypot(se, base[key][1]) if v != variants[0] else 0.0
            line += f"  {key} {m:.4f} +- {se:.4f} (sd {sd:.4f}, {d:+.4f} = {z:+.1f} se)"
        print(line)
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
