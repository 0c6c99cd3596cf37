"""Rotary position embedding (rope) on packed qkv rows, forward and backward (the helios twin of
`csrc/rope.c`).

One invocation per (row, j < C): j names pair j % (hs/2) of head j / (hs/2) among the 2 * nh
heads of q and k (GPT-NeoX / LLaMA half-split pairs: dims i and i + hs/2), and v's element j.
The pair turns by the angle of the row's position, read from the host-built cos/sin tables
(L, hs/2); the backward adds the transposed rotation (and v's gradient) into dx.
"""

from __future__ import annotations

from alpha.spirv.dsl import Kernel

PARAMS = [("out", "f32*"), ("x", "f32*"), ("pos", "i32*"), ("cos", "f32*"), ("sin", "f32*"),
          ("n", "u32"), ("C", "u32"), ("half", "u32"), ("npos", "u32")]


def rope(backward: bool) -> Kernel:
    k = Kernel("rope_backward" if backward else "rope_forward", (256, 1, 1), PARAMS)
    out, x, pos, cos, sin, n, C, half, npos = k.params()
    with k.loop(k.gid, n, k.nthreads) as i:
        row = i / C
        j = i - row * C
        head = j / half
        pair = j - head * half
        base = row * (3 * C)
        lo = base + head * (2 * half) + pair  # x_i of the pair; x_{i + hs/2} is `half` further
        p = pos[row % npos].bits("u32")
        c, s = cos[p * half + pair], sin[p * half + pair]
        a, b = x[lo], x[lo + half]
        vj = base + 2 * C + j
        if backward:  # dx += R^T dy
            out[lo] = out[lo] + (a * c + b * s)
            out[lo + half] = out[lo + half] + (b * c - a * s)
            out[vj] = out[vj] + x[vj]
        else:
            out[lo] = a * c - b * s
            out[lo + half] = b * c + a * s
            out[vj] = x[vj]
    return k
