"""Muon (Keller Jordan 2024, the nanoGPT speedrun's optimizer): for the 2-D matrices inside the
blocks (attention and MLP weights), SGD-Nesterov momentum whose update is orthogonalised by a
Newton-Schulz iteration before it is applied; AdamW (the config's betas, eps, weight decay and
lr) for everything else: embeddings, an untied head, norms and biases.

Per matrix W, with g = grad * grad_scale:
    buf = momentum buf + g;  G = g + momentum buf             (backend.muon_momentum)
    X = G / (|G|_F + 1e-7), transposed when it has more rows than columns
    5 times: A = X X^T;  B = b A + c A A;  X = a X + B X      (backend matmuls)
    W -= lr_muon * max(1, fan_out / fan_in)^0.5 * X            (axpy)
with the quintic coefficients (a, b, c) = (3.4445, -4.7750, 2.0315), which push every singular
value of X towards ~1 (roughly into [0.7, 1.2]) in a few steps. Alpha stores W as (in, out), the
transpose of PyTorch's (out, in): fan_out / fan_in is PyTorch's rows / cols, so the scale is the
speedrun's. c_attn's q, k and v (its three column blocks) are orthogonalised as three matrices,
as the speedrun's separate c_q, c_k, c_v are (and a swiglu c_fc's gate and up as two). No weight
decay on them (as in the speedrun). The matrices' lr follows the schedule: muon_lr * lr / peak
lr. The speedrun runs Newton-Schulz in bfloat16; here it is f32.

State: AdamW's `m`, `v` (over the parameters' whole size, zero on the matrices) and one buffer
`muon_momentum` holding the matrices' momenta in table order.
"""

from __future__ import annotations

from alpha.train.optimizers.adamw import AdamW
from alpha.train.optimizers.common import Optimizer, entries, view

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def is_hidden_matrix(name: str, shape) -> bool:
    """A matrix Muon orthogonalises: 2-D and inside a block (h.<i>.*)."""
    return len(shape) == 2 and name.startswith("h.")


def column_blocks(name: str, shape, activation: str = "") -> list[tuple[int, int]]:
    """The (start, width) column blocks orthogonalised one by one: q, k, v of c_attn (packed
    [q | k | v] along its output columns), gate and up of a swiglu c_fc ([gate | up]), the whole
    matrix otherwise."""
    cols = shape[1]
    parts = 1
    if name.endswith("attn.c_attn.weight"):
        parts = 3
    elif name.endswith("mlp.c_fc.weight") and activation == "swiglu":
        parts = 2
    if cols % parts:
        parts = 1
    w = cols // parts
    return [(k * w, w) for k in range(parts)]


def newton_schulz(be, X, scratch, steps: int = NS_STEPS):
    """Orthogonalise X (r, c), r <= c, contiguous, in place up to a swap: returns the tensor
    (X or scratch["Y"]) holding the result. `scratch` holds A, B (r, r), Y (r, c), sq (r, c) and
    nrm (1, 1) of X's shape class."""
    a, b, c = NS_COEFFS
    A, B, Y, sq, nrm = (scratch[k] for k in ("A", "B", "Y", "sq", "nrm"))
    # X /= |X|_F + eps, on the device (no read back of the norm)
    be.unary(sq, "square", X)
    be.sum(nrm, sq, (0, 1), keepdim=True)
    be.unary(nrm, "sqrt", nrm)
    be.binary_scalar(nrm, "add", nrm, NS_EPS)
    be.binary(X, "div", X, nrm)
    for _ in range(steps):
        be.matmul(A, X, X, trans_b=True)  # A = X X^T
        be.binary_scalar(B, "mul", A, b)
        be.matmul(B, A, A, accumulate=True, alpha=c)  # B = b A + c A A
        be.binary_scalar(Y, "mul", X, a)
        be.matmul(Y, B, X, accumulate=True)  # Y = a X + B X
        X, Y = Y, X
    return X


class Muon(Optimizer):
    name = "muon"

    def __init__(self, backend, model, tc):
        self.backend = backend
        self.momentum = tc.muon_momentum
        self.lr_ratio = tc.muon_lr / tc.lr  # the matrices' lr relative to the schedule's
        self.step = 0
        mats = [e for e in entries(model) if is_hidden_matrix(e.name, e.shape)]
        activation = getattr(getattr(model, "cfg", None), "activation", "")
        self.adamw = AdamW(backend, model, tc,
                           skip=[(e.offset, e.offset + e.numel) for e in mats])
        self.buf = backend.zeros((sum(e.numel for e in mats),), "f32")
        self.mats = []  # (param view, grad view, momentum view, column blocks)
        off = 0
        for e in mats:
            mom = self.buf.narrow(0, off, e.numel).view(e.shape)
            self.mats.append((view(model.params, e), view(model.grads, e), mom,
                              column_blocks(e.name, e.shape, activation)))
            off += e.numel
        self._scratch: dict = {}  # shape -> work tensors

    def _work(self, key, make):
        """Work tensors, shared by the matrices of one shape (`make` builds them once)."""
        w = self._scratch.get(key)
        if w is None:
            w = self._scratch[key] = make()
        return w

    def _ns_work(self, r: int, c: int) -> dict:
        be = self.backend
        return self._work((r, c), lambda: {
            "X": be.empty((r, c)), "Y": be.empty((r, c)), "sq": be.empty((r, c)),
            "A": be.empty((r, r)), "B": be.empty((r, r)), "nrm": be.empty((1, 1))})

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        self.adamw.update(lr, grad_scale)
        be = self.backend
        lr_mat = lr * self.lr_ratio
        for param, grad, mom, blocks in self.mats:
            G = self._work(("G",) + param.shape, lambda: be.empty(param.shape))
            be.muon_momentum(G, grad, mom, momentum=self.momentum, nesterov=True,
                             grad_scale=grad_scale)
            rows = param.shape[0]  # fan_in
            for start, cols in blocks:  # cols: this block's fan_out
                Gb = G.narrow(1, start, cols) if cols != param.shape[1] else G
                tall = rows > cols
                w = self._ns_work(min(rows, cols), max(rows, cols))
                be.copy(w["X"], Gb.transpose() if tall else Gb)
                O = newton_schulz(be, w["X"], w)
                scale = max(1.0, cols / rows) ** 0.5
                pb = param.narrow(1, start, cols) if cols != param.shape[1] else param
                be.axpy(pb, O.transpose() if tall else O, -lr_mat * scale)

    def state_tensors(self) -> dict:
        return {**self.adamw.state_tensors(), "muon_momentum": self.buf}

    def load_state(self, state: dict, tensors: dict) -> None:
        super().load_state(state, tensors)
        self.adamw.step = self.step  # the two step together (AdamW's bias correction)
