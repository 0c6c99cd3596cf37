"""The optimizers' elementwise bodies for `elementwise.map_kernel` (AdamW's is `adamw_body` in
elementwise.py): Lion, SGD with momentum, Muon's momentum and Adafactor's three maps. Each takes
(kernel, loaded operands, scalars) and returns the stored values in operand order; the math is
`alpha/tensor/csrc/{lion,sgd,adafactor}.c`'s, in f32."""

from __future__ import annotations


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
