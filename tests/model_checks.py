"""Checks shared by the model tests: weights moved off the init, and the model's gradients
against central finite differences of its own loss (float64 reference models)."""

from __future__ import annotations

import math

from alpha.core.rng import Rng, Stream
from alpha.model import GPT, param_offsets
from alpha.tensor import get_backend


def perturbed(cfg, backend=None, dtype="f64", seed=1, scale=0.3):
    """A GPT (on the float64 reference backend unless given another) whose weights are far
    enough from the init (norm weights != 1) that every option and path shows in the output."""
    backend = backend or get_backend("reference")
    m = GPT(cfg, backend, Rng(seed), dtype=dtype)
    s = Stream((seed, 77))
    backend.copy(m.params, backend.from_array(
        [v + scale * z for v, z in zip(m.params.to_array(), s.normal(m.n_params))],
        (m.n_params,), dtype))
    return m


def assert_grads_match_fd(m, ids, tg, pick: Stream, h: float = 1e-5) -> None:
    """m's backward against (L(p + h) - L(p - h)) / 2h on two entries (drawn from `pick`) of
    every parameter; m is a float64 model on the reference backend. Leaves m in eval mode with
    its weights as they were."""
    be = m.backend
    m.zero_grad()
    m.forward(ids, tg)
    m.backward()
    grads, base = list(m.grads.to_array()), list(m.params.to_array())

    def loss_at(vals):
        be.copy(m.params, be.from_array(vals, (m.n_params,), "f64"))
        return m.forward(ids, tg)[1].item()

    m.eval()
    for name, (off, shape) in param_offsets(m.cfg).items():
        for j in pick.randint(2, math.prod(shape)):
            i = off + j
            vals = list(base)
            vals[i] = base[i] + h
            fp = loss_at(vals)
            vals[i] = base[i] - h
            fm = loss_at(vals)
            fd = (fp - fm) / (2 * h)
            assert abs(fd - grads[i]) <= 1e-6 * (1 + abs(fd)), (name, j, fd, grads[i])
    be.copy(m.params, be.from_array(base, (m.n_params,), "f64"))
