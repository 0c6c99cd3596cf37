"""Checks of the fused flash attention (`alpha/helios/kernels/flash.py`) shared by the lavapipe
test (emulated kernels) and `bench/gpu_attention.py` (tensor cores): a float64 reference of
causal attention on the bf16-rounded inputs, and the relative L2 error of out, lse and dqkv of
a backend's attention against it or against another backend's."""

from __future__ import annotations

import math
import random
import struct
from array import array


def bf16(v: float) -> float:
    """v rounded to bf16 (nearest even), as a float."""
    b = struct.unpack("<I", struct.pack("<f", v))[0]
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return struct.unpack("<f", struct.pack("<I", b << 16))[0]


def inputs(B: int, T: int, C: int, seed: int = 1, span: float = 2.0) -> tuple[list, list]:
    """qkv (B, T, 3C) in [-span, span) and dout (B, T, C) in [-1, 1) as flat lists (span 6:
    scores spread over tens, so the running max of a row moves by more than `flash.LAZY`)."""
    rng = random.Random(seed)
    return ([rng.uniform(-span, span) for _ in range(B * T * 3 * C)],
            [rng.uniform(-1, 1) for _ in range(B * T * C)])


def run(bk, be, x, dy, B, T, C, H) -> list[list[float]]:
    """out, lse and the gradient of qkv from backend `bk` (tensors made on `be`)."""
    qkv = be.from_array(array("f", x), (B, T, 3 * C))
    dout = be.from_array(array("f", dy), (B, T, C))
    out, lse = bk.empty((B, T, C)), bk.empty((B, H, T))
    bk.attention_forward(out, lse, qkv, H)
    g = bk.zeros((B, T, 3 * C))
    bk.attention_backward(g, dout, qkv, out, lse, H)
    return [list(be.to_array(t)) for t in (out, lse, g)]


def reference(x, dy, B, T, C, H) -> list[list[float]]:
    """out, lse, dqkv in float64 from bf16-rounded q, k, v and dout."""
    D = C // H
    ref_out, ref_lse, ref_g = [0.0] * (B * T * C), [0.0] * (B * H * T), [0.0] * (B * T * 3 * C)
    sc = 1 / math.sqrt(D)
    for b in range(B):
        for h in range(H):
            def rows(src, width, part):
                return [[bf16(src[(b * T + t) * width + part * C + h * D + d])
                         for d in range(D)] for t in range(T)]
            q, k, v, do = rows(x, 3 * C, 0), rows(x, 3 * C, 1), rows(x, 3 * C, 2), rows(dy, C, 0)
            for i in range(T):
                s = [sc * sum(a * c for a, c in zip(q[i], k[j])) for j in range(i + 1)]
                m = max(s)
                z = sum(math.exp(e - m) for e in s)
                p = [math.exp(e - m) / z for e in s]
                ref_lse[(b * H + h) * T + i] = m + math.log(z)
                for d in range(D):
                    ref_out[(b * T + i) * C + h * D + d] = sum(p[j] * v[j][d]
                                                               for j in range(i + 1))
                dp = [sum(a * c for a, c in zip(do[i], v[j])) for j in range(i + 1)]
                dsum = sum(pj * e for pj, e in zip(p, dp))
                for j in range(i + 1):
                    ds = sc * p[j] * (dp[j] - dsum)
                    for d in range(D):
                        ref_g[(b * T + i) * 3 * C + h * D + d] += ds * k[j][d]
                        ref_g[(b * T + j) * 3 * C + C + h * D + d] += ds * q[i][d]
                        ref_g[(b * T + j) * 3 * C + 2 * C + h * D + d] += p[j] * do[i][d]
    return [ref_out, ref_lse, ref_g]


def rel_errors(got, want) -> list[float]:
    """Relative L2 error of each of got's arrays against want's."""
    out = []
    for a, r in zip(got, want):
        err = math.sqrt(sum((u - w) ** 2 for u, w in zip(a, r)))
        out.append(err / (math.sqrt(sum(w * w for w in r)) or 1.0))
    return out
