"""The CPU backend's C kernels as ctypes functions: one table of signatures, declared once.

`Kernels(lib)` sets restype/argtypes on every function of the built library
(`alpha.tensor.build.lib()`); the backend then calls them with plain ints (addresses from
`ptr`), floats and int64 arrays (`dims`). Kept apart from the ops so both `cpu.py` and
`cpu_nn.py` share it.
"""

from __future__ import annotations

import ctypes

from alpha.core.backend import DTYPES

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_F = ctypes.c_float
_D = ctypes.c_double
_U32 = ctypes.c_uint32
_U64 = ctypes.c_uint64
_PI64 = ctypes.POINTER(ctypes.c_int64)
_DIMS = ctypes.c_int64 * 16
MAX_DIMS = 16

ITEMSIZE = {k: v[1] for k, v in DTYPES.items()}
TYPECODE = {k: v[0] for k, v in DTYPES.items()}
DTYPE_ID = {k: i for i, k in enumerate(DTYPES)}  # the order copy.c's cast_copy expects
INT_DTYPES = ("i32", "u16", "u32")

# C function name -> (restype, argtypes)
_SIGNATURES = {
    "strided_copy": (None, [_P, _PI64, _P, _PI64, _PI64, _INT, _INT]),
    "cast_copy": (None, [_P, _INT, _P, _INT, _I64]),
    "fill_contig": (None, [_P, _P, _INT, _I64]),
    "ew_binary": (None, [_P, _PI64, _P, _PI64, _P, _PI64, _PI64, _INT, _INT, _F]),
    "ew_unary": (None, [_P, _PI64, _P, _PI64, _PI64, _INT, _INT, _F]),
    "ew_binary_contig": (None, [_P, _P, _P, _I64, _INT, _F]),
    "ew_unary_contig": (None, [_P, _P, _I64, _INT, _F]),
    "reduce_f32": (None, [_P, _P, _INT, _INT, _PI64, _PI64, _PI64, _INT, _PI64, _PI64, _INT]),
    "sum_squares_f32": (_D, [_P, _I64]),
    "all_finite_f32": (_INT, [_P, _I64]),
    "softmax_forward": (None, [_P, _P, _I64, _I64]),
    "softmax_backward": (None, [_P, _P, _P, _I64, _I64]),
    "log_softmax_forward": (None, [_P, _P, _I64, _I64]),
    "log_softmax_backward": (None, [_P, _P, _P, _I64, _I64]),
    "layernorm_forward": (None, [_P, _P, _P, _P, _P, _P, _I64, _I64, _F]),
    "layernorm_backward": (_INT, [_P, _P, _P, _P, _P, _P, _P, _P, _I64, _I64]),
    "rmsnorm_forward": (None, [_P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64, _F]),
    "rmsnorm_backward": (_INT, [_P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64]),
    "relu2_forward": (None, [_P, _P, _I64]),
    "relu2_backward": (None, [_P, _P, _P, _I64]),
    "softcap_forward": (None, [_P, _P, _I64, _F]),
    "softcap_backward": (None, [_P, _P, _P, _I64, _F]),
    "gelu_forward": (None, [_P, _P, _I64]),
    "gelu_backward": (None, [_P, _P, _P, _I64]),
    "relu_forward": (None, [_P, _P, _I64]),
    "relu_backward": (None, [_P, _P, _P, _I64]),
    "silu_forward": (None, [_P, _P, _I64]),
    "silu_backward": (None, [_P, _P, _P, _I64]),
    "swiglu_forward": (None, [_P, _P, _I64, _I64]),
    "swiglu_backward": (None, [_P, _P, _P, _I64, _I64]),
    "dropout_forward": (None, [_P, _P, _P, _F, _I64]),
    "dropout_backward": (None, [_P, _P, _P, _F, _I64]),
    "embedding_check": (_I64, [_P, _I64, _I64]),
    "embedding_forward": (None, [_P, _P, _P, _I64, _I64]),
    "embedding_backward": (None, [_P, _P, _P, _I64, _I64]),
    "crossentropy_check": (_I64, [_P, _I64, _I64]),
    "crossentropy_forward": (None, [_P, _P, _P, _I64, _I64]),
    "crossentropy_backward": (None, [_P, _P, _P, _P, _I64, _I64]),
    "attention_forward": (_INT, [_P, _P, _P, _I64, _I64, _I64, _I64, _F]),
    "attention_backward": (_INT, [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _F]),
    "kv_attention": (_INT, [_P, _P, _I64, _I64, _P, _I64, _I64, _P, _I64, _I64, _I64, _I64,
                            _I64, _I64, _I64, _F]),
    "rope_forward": (None, [_P, _P, _P, _I64, _P, _P, _I64, _I64, _I64]),
    "rope_backward": (None, [_P, _P, _P, _I64, _P, _P, _I64, _I64, _I64]),
    "block_decode": (_INT, [_P, _I64, _P, _I64, _P, _P] + [_P] * 12
                     + [_I64, _I64, _I64, _INT, _F, _P, _P, _F, _INT]),
    "decode_profile": (None, [_INT, _P]),
    "decode_step": (_INT, [_P, _P, _I64, _P, _I64, _P, _I64, _I64, _P, _I64, _P, _P, _P, _P, _P,
                           _P, _P, _I64, _I64, _I64, _I64, _INT, _F, _P, _P, _F, _INT]),
    "prefill_step": (_INT, [_P, _P, _I64, _I64, _P, _I64, _P, _I64, _I64, _P, _I64, _P, _P, _P,
                            _P, _P, _P, _P, _I64, _I64, _I64, _I64, _INT, _F, _P, _P, _F, _INT]),
    "alpha_pack_panels": (None, [_P, _P, _I64, _I64, _I64]),
    "alpha_sgemm_rows_packed": (None, [_I64, _I64, _I64, _P, _I64, _I64, _P, _P, _I64]),
    "f16_from_f32": (None, [_P, _P, _I64, _INT]),
    "f16_to_f32": (None, [_P, _P, _I64, _INT]),
    "f16_native": (_INT, []),
    "alpha_sgemm_rows": (None, [_I64, _I64, _I64, _P, _I64, _I64, _P, _I64, _I64, _P, _I64, _F,
                                _INT]),
    "adamw_step": (None, [_P, _P, _P, _P, _I64, _D, _D, _D, _D, _D, _I64, _D]),
    "lion_step": (None, [_P, _P, _P, _I64, _D, _D, _D, _D, _D]),
    "sgd_step": (None, [_P, _P, _P, _I64, _D, _D, _INT, _D, _D]),
    "muon_momentum": (None, [_P, _P, _P, _I64, _D, _INT, _D]),
    "adafactor_step": (_INT, [_P, _P, _P, _P, _I64, _I64, _D, _D, _D, _D, _D, _D]),
    "rng_uniform": (None, [_P, _I64, _U32, _U32, _U64]),
    "rng_normal": (None, [_P, _I64, _U32, _U32, _U64, _D, _D]),
}


# Checks that take a microsecond or so are called holding the interpreter lock (through a PyDLL
# handle): releasing it costs more than they run, and a thread that releases it may wait behind
# every runnable thread to get it back (the serving engine's step, with 32 request threads woken
# by its tokens, waited milliseconds on these).
_QUICK = {"embedding_check", "crossentropy_check"}


class Kernels:
    """The C functions, each with restype/argtypes set once."""

    def __init__(self, L: ctypes.CDLL):
        quick = ctypes.PyDLL(L._name, handle=L._handle)
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(quick if name in _QUICK else L, name)
            fn.restype = res
            fn.argtypes = args
            setattr(self, name, fn)


# memmove keeping the interpreter lock (ctypes.memmove gives it up), for copies small enough that
# the hand-back would cost more than the copy (see _QUICK)
_memmove_holding = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_size_t)(ctypes._memmove_addr)
QUICK_COPY = 1 << 20  # bytes


def host_copy(dst: int, src: int, nbytes: int) -> None:
    """memmove between host addresses; copies up to QUICK_COPY bytes keep the interpreter lock."""
    (_memmove_holding if nbytes <= QUICK_COPY else ctypes.memmove)(dst, src, nbytes)


def ptr(t) -> int:
    """Address of a CPU tensor's first element (its offset applied)."""
    return t.storage.ptr + t.offset * ITEMSIZE[t.dtype]


def dims(values) -> ctypes.Array:
    return _DIMS(*values)


def oom(op: str) -> MemoryError:
    return MemoryError(f"{op}: out of memory for the kernel's work buffers")
