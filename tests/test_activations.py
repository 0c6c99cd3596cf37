"""Each activation and its backward at known points against float64 formulas written here, apart
from every backend's code, at ~1e-7: a wrong constant (GELU's 0.044715 or sqrt(2/pi) off in the
fifth digit) moves the f32 results by ~1e-6, which the backend suite's float32 tolerance (1e-4)
lets through.

Points are multiples of 1/8 in [-3, 3] (exact in f32, where the f32 kernels are accurate to an
ulp or two); the reference backend (float64) must match to 1e-12.
"""

from __future__ import annotations

import math

import pytest

import backend_suite as suite
from conftest import require_peer

K = math.sqrt(2.0 / math.pi)
XS = [i / 8 for i in range(-24, 25)]


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + math.tanh(K * (x + 0.044715 * x ** 3)))


def gelu_grad(x):
    t = math.tanh(K * (x + 0.044715 * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3 * 0.044715 * x * x)


def silu(x):
    return x * _sigmoid(x)


def silu_grad(x):
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


ACTS = {
    "gelu": (gelu, gelu_grad),
    "relu": (lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0),
    "silu": (silu, silu_grad),
}


@pytest.fixture(scope="module", params=["reference", "cpu", "helios"])
def backend(request):
    be, reason = suite.load_backend(request.param)
    if be is None:
        require_peer(False, f"{reason} (lavapipe: apt-get install mesa-vulkan-drivers)")
    return be


def _close(be, label, got, xs, want):
    dtype_tol = 1e-12 if be.name == "reference" else 3e-7
    bad = [(x, g, w) for x, g, w in zip(xs, got, want)
           if not abs(g - w) <= dtype_tol * max(1.0, abs(w), abs(x))]  # NaN fails too
    assert not bad, f"{be.name} {label}: (x, got, float64) {bad[:4]}"


def _load(be, values, shape=None):
    return be.from_array(values, shape, "f64" if be.name == "reference" else "f32")


@pytest.mark.parametrize("act", sorted(ACTS))
def test_activation_at_known_points(backend, act):
    be = backend
    f, df = ACTS[act]
    x = _load(be, XS)
    out = _load(be, [0.0] * len(XS))
    getattr(be, f"{act}_forward")(out, x)
    _close(be, f"{act}_forward", be.to_array(out), XS, [f(v) for v in XS])
    # backward adds dout * f'(x) into dx, which starts at 0.25; dout = 1.5 (exact in f32)
    dx = _load(be, [0.25] * len(XS))
    getattr(be, f"{act}_backward")(dx, _load(be, [1.5] * len(XS)), x)
    _close(be, f"{act}_backward", be.to_array(dx), XS, [0.25 + 1.5 * df(v) for v in XS])


def test_swiglu_at_known_points(backend):
    """x (N, 2H) = [gate | up]: out = silu(gate) * up; the backward's two halves."""
    be = backend
    H = len(XS)
    ups = [1.0 - i / 16 for i in range(H)]
    x = _load(be, XS + ups, (1, 2 * H))
    out = _load(be, [0.0] * H, (1, H))
    be.swiglu_forward(out, x)
    _close(be, "swiglu_forward", be.to_array(out), XS, [silu(g) * u for g, u in zip(XS, ups)])
    dout = [0.5 + i / 32 for i in range(H)]
    dx = _load(be, [0.0] * (2 * H), (1, 2 * H))
    be.swiglu_backward(dx, _load(be, dout, (1, H)), x)
    got = list(be.to_array(dx))
    _close(be, "swiglu_backward (gate)", got[:H], XS,
           [d * u * silu_grad(g) for g, u, d in zip(XS, ups, dout)])
    _close(be, "swiglu_backward (up)", got[H:], XS, [d * silu(g) for g, d in zip(XS, dout)])
