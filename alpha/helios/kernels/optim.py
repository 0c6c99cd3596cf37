"""The optimizers' elementwise bodies for `elementwise.map_kernel` (AdamW's is `adamw_body` in
elementwise.py): Lion, SGD with momentum, Muon's momentum and Adafactor's three maps. Each takes
(kernel, loaded operands, scalars) and returns the stored values in operand order; the math is
`alpha/tensor/csrc/{lion,sgd,adafactor}.c`'s, in f32. Below them, the two kernels of a replayed
training step: the updates reading their changing scalars from a buffer, and the clip factor's
finish."""

from __future__ import annotations

from alpha.helios.kernels import elementwise as kel
from alpha.spirv.dsl import Kernel


def lion_body(k, ins, s):
    """ins: param, grad, m; scalars: lr, b1, b2, wd, grad_scale."""
    p, g, m = ins
    lr, b1, b2, wd, gs = s
    g = g * gs
    sign = k.ext("FSign", "f32", b1 * m + (1.0 - b1) * g)  # FSign(0) = 0
    p = p - lr * (sign + wd * p)
    return [p, b2 * m + (1.0 - b2) * g]


def sgd_body(nesterov: bool):
    """ins: param, grad, buf; scalars: lr, momentum, wd, grad_scale."""
    def body(k, ins, s):
        p, g, b = ins
        lr, mu, wd, gs = s
        g = g * gs + wd * p
        b = mu * b + g
        d = g + mu * b if nesterov else b
        return [p - lr * d, b]
    return body


def muon_momentum_body(nesterov: bool):
    """ins: out (not loaded), grad, buf; scalars: momentum, grad_scale."""
    def body(k, ins, s):
        _, g, b = ins
        mu, gs = s
        g = g * gs
        b = mu * b + g
        return [g + mu * b if nesterov else b, b]
    return body


def adafactor_sq_body(k, ins, s):
    """g2 = (grad * gs)^2 + eps. ins: g2 (out), grad; scalars: grad_scale, eps."""
    g = ins[1] * s[0]
    return [g * g + s[1]]


def adafactor_moment_body(k, ins, s):
    """v = b2 v + (1 - b2) * sum / count. ins: v, sum; scalars: b2, 1 / count."""
    v, total = ins
    b2, inv = s
    return [b2 * v + (1.0 - b2) * (total * inv)]


def adafactor_u_body(factored: bool):
    """u = g / sqrt(vhat). Factored: ins u (out), grad, row (R, 1), col (1, C), row sum (1, 1);
    scalars grad_scale, R: vhat = row / (rowsum / R) * col. Unfactored: ins u, grad, v."""
    def body(k, ins, s):
        g = ins[1] * s[0]
        if not factored:
            return [g / k.sqrt(ins[2])]
        row, col, rsum = ins[2], ins[3], ins[4]
        rf = k.rsqrt(row / (rsum / s[1]))
        return [g * rf / k.sqrt(col)]
    return body


def adafactor_apply_body(k, ins, s):
    """param -= lr wd param + lr u / max(1, sqrt(sumsq / n) / clip). ins: param, u, sumsq (1,);
    scalars: lr, wd, clip, n."""
    p, u, ss = ins
    lr, wd, clip, n = s
    scale = 1.0 / k.fmax(k.sqrt(ss / n) / clip, k.const(1.0, "f32"))
    return [p - lr * wd * p - lr * (u * scale)]


# ---- a training step replayed (alpha/helios/train_step.py): its changing values on the GPU ----
ARGS = ("lr", "bc1", "bc2", "grad_scale", "skip")  # the step's argument buffer, in this order
STATS = ("loss", "grad_norm", "skip")  # what the host reads back after the step


RULES = ("adamw", "lion", "sgd", "sgd_nesterov")  # the update rules a replayed step runs
CONSTS = {"adamw": ("b1", "b2", "eps", "wd"), "lion": ("b1", "b2", "wd"), "sgd": ("mu", "wd"),
          "sgd_nesterov": ("mu", "wd")}  # each rule's push constants, after the pointers


def update_args(rule: str) -> Kernel:
    """An elementwise update (AdamW: `elementwise.adamw_body`; Lion, SGD: the bodies above)
    with the values that change every step read from the argument buffer `args` (ARGS)
    instead of push constants: lr and AdamW's bias corrections written by the host before the
    step, grad_scale and skip by `clip_finish`. skip != 0 leaves the parameter and the
    optimizer's state as they were (a NaN/Inf or spike step). Pointers: param, grad, the
    state (m, v for AdamW; m or buf), args; then CONSTS[rule], n."""
    states = 2 if rule == "adamw" else 1
    names = ["p", "g"] + [f"state{i}" for i in range(states)]
    k = Kernel(f"{rule}_args", (kel.LOCAL, 1, 1),
               [(name, "f32*") for name in names] + [("args", "f32*")]
               + [(c, "f32") for c in CONSTS[rule]] + [("n", "u32")])
    ps = k.params()
    ptrs, args, consts, n = ps[:len(names)], ps[len(names)], ps[len(names) + 1:-1], ps[-1]
    lr, bc1, bc2, gs, skip = (args[i] for i in range(len(ARGS)))
    keep = skip.ne(0.0)

    def body(k, ins, s):
        if rule == "adamw":
            b1, b2, eps, wd = consts
            new = kel.adamw_body(k, ins, [lr, b1, b2, eps, wd, bc1, bc2, gs])
        elif rule == "lion":
            b1, b2, wd = consts
            new = lion_body(k, ins, [lr, b1, b2, wd, gs])
        else:
            mu, wd = consts
            new = sgd_body(rule == "sgd_nesterov")(k, ins, [lr, mu, wd, gs])
        return [k.select(keep, old, x) for old, x in zip([ins[0]] + list(ins[2:]), new)]
    ops = [("f32", (1,), "inout"), ("f32", (1,), "in")] + [("f32", (1,), "inout")] * states
    kel._flat_body(k, ptrs, None, n, ops, body)
    return k


def clip_finish(acc_t: str) -> Kernel:
    """One invocation: the global gradient norm from the sum-of-squares partials (`acc_t`, summed
    in order), the clip factor (alpha.train.optim.clip_coef) and the skip verdict
    (alpha.train.stability: a non-finite loss or norm, or a norm above spike > 0), written
    where the update reads them (args) and where the host reads them (stats, STATS). The
    gradients hold the sum of `summed` micro-batches' (accumulation), whose losses are in
    `losses`: loss = their mean, norm = sqrt(sum) / summed, grad_scale = coef / summed (the
    trainer's arithmetic, in acc_t)."""
    k = Kernel("clip_finish", (1, 1, 1),
               [("stats", "f32*"), ("args", "f32*"), ("part", f"{acc_t}*"),
                ("losses", "f32*"), ("ng", "u32"), ("summed", "u32"), ("max_norm", "f32"),
                ("spike", "f32")])
    stats, args, part, losses, ng, summed, max_norm, spike = k.params()
    acc = k.var(acc_t, 0.0)
    with k.loop(0, ng) as i:
        acc.set(acc.get() + part[i])
    count = summed.to(acc_t)
    norm = k.sqrt(acc.get()) / count
    total = k.var(acc_t, 0.0)
    with k.loop(0, summed) as i:
        total.set(total.get() + losses[i].to(acc_t))
    lv = (total.get() / count).to("f32")
    cap = max_norm.to(acc_t)
    finite = ~(k.isnan(norm) | k.isinf(norm))
    clip = (max_norm > 0.0) & finite & (norm > cap)
    coef = k.select(clip, cap / (norm + 1e-6), k.const(1.0, acc_t))
    bad = k.isnan(lv) | k.isinf(lv) | ~finite | ((spike > 0.0) & (norm > spike.to(acc_t)))
    skip = k.select(bad, k.const(1.0, "f32"), k.const(0.0, "f32"))
    args[3] = (coef / count).to("f32")
    args[4] = skip
    stats[0] = lv
    stats[1] = norm.to("f32")
    stats[2] = skip
    return k
