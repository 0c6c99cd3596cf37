"""Rotary position embedding (rope)'s tables: cos and sin of every (position, pair) angle.

Convention (GPT-NeoX's, and Hugging Face LLaMA's `rotate_half`): in each head of q and k, of
size hs, dims i and i + hs/2 form pair i (i < hs/2), which turns by p * theta^(-2i/hs) at
position p. The angles and their cos/sin are computed here once, in float64, and rounded to
f32; every backend reads these same tables (`rope_forward` / `rope_backward`), so CPU and GPU
rotate by identical numbers and no kernel needs a trigonometric function.
"""

from __future__ import annotations

import math
from array import array


def frequencies(head_dim: int, theta: float) -> list[float]:
    """f_i = theta^(-2i/hs) for the hs/2 pairs of a head."""
    return [theta ** (-2.0 * i / head_dim) for i in range(head_dim // 2)]


def tables(length: int, head_dim: int, theta: float) -> tuple[array, array]:
    """(cos, sin) as f32 arrays of shape (length, head_dim/2), row-major: row p holds
    cos(p * f_i), sin(p * f_i)."""
    freqs = frequencies(head_dim, theta)
    cos, sin = array("f"), array("f")
    for p in range(length):
        for f in freqs:
            cos.append(math.cos(p * f))
            sin.append(math.sin(p * f))
    return cos, sin
