"""The reference backend's optimizer math (besides AdamW's, in reference.py): plain float64 loops
over flat lists, the definition of what `alpha.core.backend_optim`'s ops compute.
`alpha.tensor.reference` reads the tensors into row-major lists, calls these (they update the
lists in place) and writes the results back."""

from __future__ import annotations

import math


def lion(P, G, M, lr, b1, b2, wd, gs) -> None:
    for i in range(len(P)):
        g = G[i] * gs
        c = b1 * M[i] + (1.0 - b1) * g
        P[i] -= lr * (((c > 0) - (c < 0)) + wd * P[i])
        M[i] = b2 * M[i] + (1.0 - b2) * g


def sgd(P, G, B, lr, mu, nesterov, wd, gs) -> None:
    for i in range(len(P)):
        g = G[i] * gs + wd * P[i]
        B[i] = mu * B[i] + g
        P[i] -= lr * (g + mu * B[i] if nesterov else B[i])


def muon_momentum(O, G, B, mu, nesterov, gs) -> None:
    for i in range(len(O)):
        g = G[i] * gs
        B[i] = mu * B[i] + g
        O[i] = g + mu * B[i] if nesterov else B[i]


def adafactor(P, G, row, col, R, C, lr, b2, eps, clip, wd, gs) -> None:
    """col None: unfactored, row holding v over all R * C values."""
    g = [x * gs for x in G]
    g2 = [x * x + eps for x in g]
    if col is None:
        for i in range(len(P)):
            row[i] = b2 * row[i] + (1.0 - b2) * g2[i]
        u = [x / math.sqrt(v) for x, v in zip(g, row)]
    else:
        for i in range(R):
            row[i] = b2 * row[i] + (1.0 - b2) * math.fsum(g2[i * C:(i + 1) * C]) / C
        for j in range(C):
            col[j] = b2 * col[j] + (1.0 - b2) * math.fsum(g2[j::C]) / R
        rmean = math.fsum(row) / R
        u = [g[i * C + j] / math.sqrt(row[i] / rmean * col[j]) for i in range(R)
             for j in range(C)]
    rms = math.sqrt(math.fsum(x * x for x in u) / len(u))
    scale = 1.0 / max(1.0, rms / clip)
    for i in range(len(P)):
        P[i] = P[i] - lr * wd * P[i] - lr * u[i] * scale
