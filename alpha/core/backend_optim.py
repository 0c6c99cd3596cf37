"""The optimizer ops of the Backend protocol (`alpha.core.backend`), with their checking front:
one fused update per rule, in place, on f32 buffers the optimizer (`alpha.train.optimizers`)
owns. Each public method checks its arguments and calls the `_<op>` hook, like every other op.

What each computes is written out below in the order a kernel does it; `g` is always
`grad * grad_scale` (the trainer folds the clip factor and the 1/accum average into it, so the
gradient buffer is never rescaled). Weight decay is applied to whatever buffer the optimizer
passes: it passes 0 outside the model's decay ranges.
"""

from __future__ import annotations

from alpha.core import checks as ck


def _need_step(op: str, step: int) -> None:
    if step < 1:
        raise ValueError(f"{op}: step={step} must be >= 1")


class OptimizerOps:
    """Mixed into `Backend`; `self.floats` is the backend's float dtypes."""

    def adamw_step(self, param, grad, m, v, *, lr: float, beta1: float, beta2: float,
                   eps: float, weight_decay: float, step: int, grad_scale: float = 1.0) -> None:
        """One AdamW update, in place, on flat f32 buffers of equal size:
        g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
        mhat = m / (1 - b1^step); vhat = v / (1 - b2^step);
        param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)."""
        op = "adamw_step"
        ck.need_float(op, self.floats, ("param", param), ("grad", grad), ("m", m), ("v", v))
        for name, t in (("grad", grad), ("m", m), ("v", v)):
            ck.need_numel(op, name, t, "param", param)
        _need_step(op, step)
        self._adamw_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                         grad_scale)

    def lion_step(self, param, grad, m, *, lr: float, beta1: float, beta2: float,
                  weight_decay: float, grad_scale: float = 1.0) -> None:
        """One Lion update (Chen et al. 2023), in place, on flat buffers of equal size:
        u = sign(b1 m + (1-b1) g) (sign(0) = 0); param -= lr * (u + weight_decay * param);
        m = b2 m + (1-b2) g."""
        op = "lion_step"
        ck.need_float(op, self.floats, ("param", param), ("grad", grad), ("m", m))
        for name, t in (("grad", grad), ("m", m)):
            ck.need_numel(op, name, t, "param", param)
        self._lion_step(param, grad, m, float(lr), float(beta1), float(beta2),
                        float(weight_decay), float(grad_scale))

    def sgd_step(self, param, grad, buf, *, lr: float, momentum: float, nesterov: bool,
                 weight_decay: float, grad_scale: float = 1.0) -> None:
        """One SGD update with momentum, PyTorch's rule (dampening 0), in place:
        g += weight_decay * param (L2, coupled); buf = momentum buf + g;
        param -= lr * (g + momentum buf if nesterov else buf). A zero buf starts it."""
        op = "sgd_step"
        ck.need_float(op, self.floats, ("param", param), ("grad", grad), ("buf", buf))
        for name, t in (("grad", grad), ("buf", buf)):
            ck.need_numel(op, name, t, "param", param)
        self._sgd_step(param, grad, buf, float(lr), float(momentum), bool(nesterov),
                       float(weight_decay), float(grad_scale))

    def muon_momentum(self, out, grad, buf, *, momentum: float, nesterov: bool = True,
                      grad_scale: float = 1.0) -> None:
        """Muon's momentum (SGD's, without decay or update): buf = momentum buf + g;
        out = g + momentum buf if nesterov else buf. out, grad, buf: equal sizes; out is the
        matrix Muon then orthogonalises (contiguous)."""
        op = "muon_momentum"
        ck.need_float(op, self.floats, ("out", out), ("grad", grad), ("buf", buf))
        for name, t in (("grad", grad), ("buf", buf)):
            ck.need_numel(op, name, t, "out", out)
        if not out.is_contiguous:
            raise ValueError(f"{op}: out {out.shape} must be contiguous")
        self._muon_momentum(out, grad, buf, float(momentum), bool(nesterov), float(grad_scale))

    def adafactor_step(self, param, grad, row, col, *, lr: float, beta2: float, eps: float,
                       clip: float, weight_decay: float, grad_scale: float = 1.0) -> None:
        """One Adafactor update of one parameter tensor (Shazeer & Stern 2018; no first moment,
        no relative step), in place. g2 = g^2 + eps.
        Factored (param (R, C), row (R,), col (C,)): row = b2 row + (1-b2) mean(g2, last dim);
        col = b2 col + (1-b2) mean(g2, first dim); u = g / sqrt(row_i / mean(row) * col_j).
        Unfactored (col None, row of param's size): row = b2 row + (1-b2) g2; u = g / sqrt(row).
        Then u /= max(1, rms(u) / clip); param -= lr * weight_decay * param + lr * u.
        beta2 is this step's decay (1 - step^-0.8 in the paper: the optimizer computes it)."""
        op = "adafactor_step"
        ck.need_float(op, self.floats, ("param", param), ("grad", grad), ("row", row),
                      ("col", col))
        ck.need_numel(op, "grad", grad, "param", param)
        if col is None:
            ck.need_numel(op, "row", row, "param", param)
        else:
            if param.ndim != 2:
                raise ValueError(f"{op}: a factored update needs a 2-D param, got {param.shape}")
            ck.need_shape(op, "row", row, (param.shape[0],), ("param", param))
            ck.need_shape(op, "col", col, (param.shape[1],), ("param", param))
        if not (0.0 <= beta2 < 1.0):
            raise ValueError(f"{op}: beta2={beta2} must be in [0, 1)")
        if not (eps > 0 and clip > 0):
            raise ValueError(f"{op}: eps={eps} and clip={clip} must be > 0")
        self._adafactor_step(param, grad, row, col, float(lr), float(beta2), float(eps),
                             float(clip), float(weight_decay), float(grad_scale))
