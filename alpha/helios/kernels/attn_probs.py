"""Row kernels of the mixed-precision attention (`ops_attention.py`) that hand the tensor-core
matmuls their 16-bit inputs directly: causal softmax probabilities and their gradient, written as
bf16/fp16 bits (pairs packed into u32 words) or as fp32 where the matmuls read fp32 (lavapipe,
the SIMT kernel rounding as it loads).

Rows of (R, T) scores S (already scaled), row r being query r % T, which sees keys j <= r % T:
- `causal_softmax_probs`: P = softmax(S) over the keys seen (0 beyond), lse[r] its log-sum-exp
  (the forward);
- `causal_probs`: P = exp(S - lse[r]) from a saved lse (the backward recomputes S, not the sum);
- `causal_softmax_grad`: dS = P * (dP - sum_j P_j dP_j) with P = exp(S - lse[r]).

Writing the 16-bit P and dS straight from the row kernels replaces a separate packing pass over
each (B*H, T, T) matrix and the fp32 copies of P and dS (GPT-2 small at batch 16: 805 MB each,
three a layer); dS is written, not added, so it needs no zero fill first. The 16-bit variants
need an even T (the pairs of a row share a word).
"""

from __future__ import annotations

from alpha.helios.kernels.coopmat import _bf16_bits, _f16_bits
from alpha.helios.kernels.rows import ROW_LOCAL, _row_max, _row_sum, rows
from alpha.spirv.dsl import Kernel

OUT_TYPES = ("f32", "bf16", "f16")


def _params(out: str, names: list[str]) -> list:
    """The push constants: the output (u32 pairs for 16-bit), f32 inputs, then R and T."""
    first = [(names[0], "f32*" if out == "f32" else "u32*")]
    return first + [(n, "f32*") for n in names[1:]] + [("R", "u32"), ("T", "u32")]


def _store_row(k: Kernel, out_t: str, dst, base, T, value) -> None:
    """dst's row at `base` (element index) = value(j) for j < T, as fp32 or packed 16-bit."""
    lid = k.local_id(0)
    if out_t == "f32":
        with k.loop(lid, T, ROW_LOCAL) as j:
            dst[base + j] = value(j)
        return
    bits = _bf16_bits if out_t == "bf16" else _f16_bits
    with k.loop(lid, T >> 1, ROW_LOCAL) as p:
        j = p * 2
        dst[(base >> 1) + p] = bits(k, value(j)) | (bits(k, value(j + 1)) << 16)


def causal_softmax_probs(out_t: str) -> Kernel:
    """P (R, T) = causal softmax of S; lse (R,) = each row's log-sum-exp."""
    k = Kernel(f"causal_softmax_probs_{out_t}", (ROW_LOCAL, 1, 1),
               _params(out_t, ["p", "s", "lse"]))
    p, s, lse, R, T = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    with rows(k, R) as r:
        base = r * T
        n = r % T + 1  # keys this query sees
        mx = _row_max(k, s, base, n, sh)
        total = _row_sum(k, lambda j: k.exp(s[base + j] - mx), n, sh)
        inv = 1.0 / total
        _store_row(k, out_t, p, base, T,
                   lambda j: k.select(j < n, k.exp(s[base + j] - mx) * inv, 0.0))
        with k.if_(k.local_id(0).eq(0)):
            lse[r] = mx + k.log(total)
    return k


def causal_probs(out_t: str) -> Kernel:
    """P (R, T) = exp(S - lse[r]) for the keys seen, 0 beyond."""
    k = Kernel(f"causal_probs_{out_t}", (ROW_LOCAL, 1, 1), _params(out_t, ["p", "s", "lse"]))
    p, s, lse, R, T = k.params()
    with rows(k, R) as r:
        base = r * T
        n = r % T + 1
        m = lse[r]
        _store_row(k, out_t, p, base, T,
                   lambda j: k.select(j < n, k.exp(s[base + j] - m), 0.0))
    return k


def causal_softmax_grad(out_t: str, capped: bool = False) -> Kernel:
    """dS (R, T) = P * (dP - rowsum(P * dP)), P = exp(S - lse[r]) for the keys seen, 0 beyond;
    `capped`: times dcap (R, T), the softcap's derivative at each score."""
    names = ["ds", "s", "dp", "lse"] + (["dcap"] if capped else [])
    k = Kernel(f"causal_softmax_grad_{out_t}{'_capped' if capped else ''}", (ROW_LOCAL, 1, 1),
               _params(out_t, names))
    ps = k.params()
    ds, s, dp, lse = ps[:4]
    dcap = ps[4] if capped else None
    R, T = ps[-2:]
    sh = k.shared("f32", ROW_LOCAL)
    with rows(k, R) as r:
        base = r * T
        n = r % T + 1
        m = lse[r]
        d = _row_sum(k, lambda j: k.exp(s[base + j] - m) * dp[base + j], n, sh)

        def grad(j):
            pj = k.exp(s[base + j] - m)
            g = pj * (dp[base + j] - d)
            return k.select(j < n, g * dcap[base + j] if capped else g, 0.0)
        _store_row(k, out_t, ds, base, T, grad)
    return k


def pack_heads(dtype: str) -> Kernel:
    """out (B*H, T, hs) 16-bit (pairs in u32 words) = one column block of x (B, T, W) f32, head
    h at columns h*hs..: the head-major, rounded copy of q, k, v or dO the matmuls read, in one
    pass (a strided copy and then a packing pass moved the bytes twice). hs must be even."""
    k = Kernel(f"pack_heads_{dtype}", (256, 1, 1),
               [("out", "u32*"), ("x", "f32*"), ("n", "u32"), ("T", "u32"), ("H", "u32"),
                ("hs", "u32"), ("W", "u32")])
    out, x, n, T, H, hs, W = k.params()
    bits = _bf16_bits if dtype == "bf16" else _f16_bits
    with k.loop(k.gid, n, k.nthreads) as i:
        e = i * 2
        d = e % hs
        r = e / hs  # (b*H + h) * T + t
        t = r % T
        bh = r / T
        src = ((bh / H) * T + t) * W + (bh % H) * hs + d
        out[i] = bits(k, x[src]) | (bits(k, x[src + 1]) << 16)
    return k
