"""Reverse-mode autograd over the Backend protocol: a tape of backward closures (`tape.py`) and the
differentiable ops, each forward beside its backward (`ops.py`)."""

from alpha.autograd.ops import (  # noqa: F401
    ACTIVATIONS, add, attention, crossentropy, dropout, embedding, gelu, layernorm, linear, qk_norm,
    relu, relu2, rmsnorm, silu, softcap, swiglu,
)
from alpha.autograd.tape import Tape, Var  # noqa: F401
