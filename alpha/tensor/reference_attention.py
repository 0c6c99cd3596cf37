"""The reference backend's attention and rope math: plain float64 loops over flat lists.

`alpha.tensor.reference` reads its tensors into row-major lists, calls these, and writes the
results back; here is only the definition of what the ops compute (see that module):

- causal self-attention over packed qkv (B, T, 3C), scale 1/sqrt(hs), optionally with Gemma 2's
  softcap: every scaled score s becomes c * tanh(s / c) before the softmax;
- attention over a KV cache (queries at positions start.., keys 0..position);
- rope: GPT-NeoX / LLaMA half-split rotary pairs on q and k of every head, by cos/sin tables.
"""

from __future__ import annotations

import math


def _cap(s: float, softcap: float) -> float:
    return softcap * math.tanh(s / softcap) if softcap else s


def _scores(X, b, h, t, T, C, hs, softcap) -> list[float]:
    """Scaled (and capped) scores of query t against keys 0..t (batch b, head h), packed X."""
    scale = 1.0 / math.sqrt(hs)
    qo = (b * T + t) * 3 * C + h * hs
    result = []
    for s in range(t + 1):
        ko = (b * T + s) * 3 * C + C + h * hs
        result.append(_cap(scale * sum(X[qo + d] * X[ko + d] for d in range(hs)), softcap))
    return result


def attention_forward(X, B, T, C, n_head, softcap) -> tuple[list, list]:
    """(out (B*T*C), lse (B*n_head*T)) of packed qkv X."""
    hs = C // n_head
    y = [0.0] * (B * T * C)
    lses = [0.0] * (B * n_head * T)
    for b in range(B):
        for h in range(n_head):
            for t in range(T):
                sc = _scores(X, b, h, t, T, C, hs, softcap)
                m = max(sc)
                lse_t = m + math.log(sum(math.exp(v - m) for v in sc))
                lses[(b * n_head + h) * T + t] = lse_t
                for s, v in enumerate(sc):
                    p = math.exp(v - lse_t)
                    vo = (b * T + s) * 3 * C + 2 * C + h * hs
                    for d in range(hs):
                        y[(b * T + t) * C + h * hs + d] += p * X[vo + d]
    return y, lses


def attention_backward(X, G, L, B, T, C, n_head, softcap) -> list:
    """d(qkv) given dout G and the forward's lse L."""
    hs = C // n_head
    C3 = 3 * C
    scale = 1.0 / math.sqrt(hs)
    dX = [0.0] * len(X)
    for b in range(B):
        for h in range(n_head):
            for t in range(T):
                sc = _scores(X, b, h, t, T, C, hs, softcap)
                P = [math.exp(v - L[(b * n_head + h) * T + t]) for v in sc]
                go = (b * T + t) * C + h * hs
                qo = (b * T + t) * C3 + h * hs
                dP = []
                for s in range(t + 1):
                    vo = (b * T + s) * C3 + 2 * C + h * hs
                    dP.append(sum(G[go + d] * X[vo + d] for d in range(hs)))
                    for d in range(hs):
                        dX[vo + d] += P[s] * G[go + d]  # dv
                D = sum(p * dp for p, dp in zip(P, dP))
                for s in range(t + 1):
                    dS = P[s] * (dP[s] - D) * scale
                    if softcap:  # d(c tanh(s/c))/ds = 1 - tanh(s/c)^2 = 1 - (capped/c)^2
                        dS *= 1.0 - (sc[s] / softcap) ** 2
                    ko = (b * T + s) * C3 + C + h * hs
                    for d in range(hs):
                        dX[qo + d] += dS * X[ko + d]  # dq
                        dX[ko + d] += dS * X[qo + d]  # dk
    return dX


def kv_attention(Q, K, V, B, Tq, Tk, C, n_head, start, softcap) -> list:
    """out (B*Tq*C): q (B, Tq, C) at positions start.. against k, v (B, Tk, C)."""
    hs = C // n_head
    scale = 1.0 / math.sqrt(hs)
    y = [0.0] * (B * Tq * C)
    for b in range(B):
        for h in range(n_head):
            for i in range(Tq):
                qo = (b * Tq + i) * C + h * hs
                sc = []
                for s in range(start + i + 1):
                    ko = (b * Tk + s) * C + h * hs
                    sc.append(_cap(scale * sum(Q[qo + d] * K[ko + d] for d in range(hs)),
                                   softcap))
                m = max(sc)
                e = [math.exp(x - m) for x in sc]
                tot = sum(e)
                for s, es in enumerate(e):
                    vo = (b * Tk + s) * C + h * hs
                    for d in range(hs):
                        y[qo + d] += es / tot * V[vo + d]
    return y


def rope(X, positions, cos, sin, N, C, n_head, backward) -> list:
    """Rows of packed qkv X (N, 3C) with q and k rotated (or, `backward`, rotated back: the
    transpose); v unchanged. Row n's position is positions[n % len(positions)]."""
    hs = C // n_head
    half = hs // 2
    Y = list(X)
    sign = -1.0 if backward else 1.0
    for n in range(N):
        p = positions[n % len(positions)]
        row = n * 3 * C
        for h0 in range(0, 2 * C, hs):
            for i in range(half):
                c, s = cos[p * half + i], sign * sin[p * half + i]
                a, b = X[row + h0 + i], X[row + h0 + half + i]
                Y[row + h0 + i] = a * c - b * s
                Y[row + h0 + half + i] = b * c + a * s
    return Y
