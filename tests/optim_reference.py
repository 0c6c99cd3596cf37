"""The published update rules in float64 pure Python, written from the papers (not from Alpha's
kernels): what tests/test_optimizers.py holds every backend's optimizers to. Parameters are
dicts name -> flat list of floats; matrices are (rows, cols) row-major."""

from __future__ import annotations

import math


def adamw(p, g, st, lr, b1, b2, eps, wd, step):
    """Loshchilov & Hutter's AdamW, bias-corrected; st holds lists m, v."""
    m, v = st["m"], st["v"]
    for i in range(len(p)):
        m[i] = b1 * m[i] + (1 - b1) * g[i]
        v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
        mhat, vhat = m[i] / (1 - b1 ** step), v[i] / (1 - b2 ** step)
        p[i] -= lr * (mhat / (math.sqrt(vhat) + eps) + wd * p[i])


def lion(p, g, st, lr, b1, b2, wd):
    """Chen et al. 2023, Algorithm 2 (decoupled weight decay)."""
    m = st["m"]
    for i in range(len(p)):
        c = b1 * m[i] + (1 - b1) * g[i]
        sign = (c > 0) - (c < 0)
        p[i] -= lr * (sign + wd * p[i])
        m[i] = b2 * m[i] + (1 - b2) * g[i]


def sgd(p, g, st, lr, mu, nesterov, wd):
    """torch.optim.SGD's documented algorithm (dampening 0): a first step sets buf = g."""
    buf = st.get("buf")
    gs = [g[i] + wd * p[i] for i in range(len(p))]
    buf = list(gs) if buf is None else [mu * b + x for b, x in zip(buf, gs)]
    st["buf"] = buf
    for i in range(len(p)):
        d = gs[i] + mu * buf[i] if nesterov else buf[i]
        p[i] -= lr * d


def adafactor(p, g, st, shape, lr, eps1, d, decay, wd, step):
    """Shazeer & Stern 2018, Algorithms 4 (matrices) and 5 (vectors) without the relative step
    or parameter scale (the lr is given), with update clipping and beta2_t = 1 - t^-decay."""
    b2 = 1 - step ** (-decay)
    g2 = [x * x + eps1 for x in g]
    if len(shape) == 2:
        R, C = shape
        row, col = st.setdefault("row", [0.0] * R), st.setdefault("col", [0.0] * C)
        for i in range(R):
            row[i] = b2 * row[i] + (1 - b2) * sum(g2[i * C:(i + 1) * C]) / C
        for j in range(C):
            col[j] = b2 * col[j] + (1 - b2) * sum(g2[i * C + j] for i in range(R)) / R
        rmean = sum(row) / R
        vhat = [row[i] * col[j] / rmean for i in range(R) for j in range(C)]
    else:
        v = st.setdefault("v", [0.0] * len(p))
        for i in range(len(p)):
            v[i] = b2 * v[i] + (1 - b2) * g2[i]
        vhat = list(v)
    u = [x / math.sqrt(h) for x, h in zip(g, vhat)]
    rms = math.sqrt(sum(x * x for x in u) / len(u))
    scale = 1 / max(1.0, rms / d)
    for i in range(len(p)):
        p[i] = p[i] - lr * wd * p[i] - lr * u[i] * scale


def _matmul(a, b):
    bt = list(zip(*b))
    return [[math.fsum(x * y for x, y in zip(r, c)) for c in bt] for r in a]


def newton_schulz(G, steps=5):
    """Keller Jordan's zeropower_via_newtonschulz5, in float64 on lists of rows."""
    a, b, c = 3.4445, -4.7750, 2.0315
    norm = math.sqrt(math.fsum(x * x for r in G for x in r))
    X = [[x / (norm + 1e-7) for x in r] for r in G]
    tall = len(X) > len(X[0])
    if tall:
        X = [list(r) for r in zip(*X)]
    for _ in range(steps):
        A = _matmul(X, [list(r) for r in zip(*X)])
        AA = _matmul(A, A)
        B = [[b * x + c * y for x, y in zip(ra, rb)] for ra, rb in zip(A, AA)]
        BX = _matmul(B, X)
        X = [[a * x + y for x, y in zip(rx, rb)] for rx, rb in zip(X, BX)]
    if tall:
        X = [list(r) for r in zip(*X)]
    return X


def muon(p, g, st, shape, lr, mu, blocks=1):
    """The speedrun's Muon for one matrix stored (fan_in, fan_out): Nesterov momentum,
    orthogonalised, scaled by max(1, fan_out / fan_in)^0.5 (PyTorch's rows / cols). blocks=3:
    a packed [q | k | v] weight, whose three column blocks are three matrices."""
    R, C = shape
    buf = st.setdefault("buf", [0.0] * len(p))
    for i in range(len(p)):
        buf[i] = mu * buf[i] + g[i]
    upd = [g[i] + mu * buf[i] for i in range(len(p))]
    w = C // blocks
    for k in range(blocks):
        O = newton_schulz([upd[i * C + k * w:i * C + (k + 1) * w] for i in range(R)])
        scale = max(1.0, w / R) ** 0.5
        for i in range(R):
            for j in range(w):
                p[i * C + k * w + j] -= lr * scale * O[i][j]
