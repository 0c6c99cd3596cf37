"""The optimizer ops of HeliosBackend (AdamW's is in ops_nn.py): Lion, SGD, Muon's momentum and
Adafactor, as hooks of the checking front (`alpha.core.backend_optim`). Lion, SGD and the
momentum are one fused elementwise kernel each (`kernels/optim.py`). Adafactor is a few: g^2,
its row and column sums (the backend's reductions), the moments, the update u, its RMS and the
clipped apply, all on the device: nothing is read back, so a step does not wait for the GPU.
"""

from __future__ import annotations

from alpha.helios.kernels import optim as kopt

F32 = "f32"


class OptimOps:
    def _flat(self, ts, op, n_out):
        """The tensors as equal 1-D views when their shapes differ (same numel); the first
        n_out are written, so they must be contiguous then (inputs may be copied)."""
        if len({t.shape for t in ts}) == 1:
            return ts
        if not all(t.is_contiguous for t in ts[:n_out]):
            raise NotImplementedError(f"need {op} on a non-contiguous state of another shape "
                                      "than grad")
        return [t.view(t.numel) if t.is_contiguous else self.rt.contig(t).view(t.numel)
                for t in ts]

    def _lion_step(self, param, grad, m, lr, beta1, beta2, weight_decay, grad_scale) -> None:
        p, mm, g = self._flat([param, m, grad], "lion_step", 2)
        self.rt.map("lion_step", [(p, "inout"), (g, "in"), (mm, "inout")], p.shape,
                    kopt.lion_body, [lr, beta1, beta2, weight_decay, grad_scale], [F32] * 5)

    def _sgd_step(self, param, grad, buf, lr, momentum, nesterov, weight_decay,
                  grad_scale) -> None:
        p, b, g = self._flat([param, buf, grad], "sgd_step", 2)
        name = "sgd_step_nesterov" if nesterov else "sgd_step"
        self.rt.map(name, [(p, "inout"), (g, "in"), (b, "inout")], p.shape,
                    kopt.sgd_body(nesterov), [lr, momentum, weight_decay, grad_scale], [F32] * 4)

    def _muon_momentum(self, out, grad, buf, momentum, nesterov, grad_scale) -> None:
        o, b, g = self._flat([out, buf, grad], "muon_momentum", 2)
        name = "muon_momentum_nesterov" if nesterov else "muon_momentum"
        self.rt.map(name, [(o, "out"), (g, "in"), (b, "inout")], o.shape,
                    kopt.muon_momentum_body(nesterov), [momentum, grad_scale], [F32] * 2)

    def _adafactor_step(self, param, grad, row, col, lr, beta2, eps, clip, weight_decay,
                        grad_scale) -> None:
        n = param.numel
        if n == 0:
            return
        rt = self.rt
        if col is None:  # a vector (or any tensor) with its full second moment
            if not (param.is_contiguous and row.is_contiguous):
                raise NotImplementedError("need adafactor_step on a non-contiguous vector")
            param, row, grad = param.view(n), row.view(n), rt.contig(grad).view(n)
        shape = param.shape
        g2 = rt.new(shape)
        rt.map("adafactor_sq", [(g2, "out"), (grad, "in")], shape, kopt.adafactor_sq_body,
               [grad_scale, eps], [F32] * 2)
        u = rt.new(shape)
        if col is None:
            rt.map("adafactor_moment", [(row, "inout"), (g2, "in")], shape,
                   kopt.adafactor_moment_body, [beta2, 1.0], [F32] * 2)
            rt.map("adafactor_u", [(u, "out"), (grad, "in"), (row, "in")], shape,
                   kopt.adafactor_u_body(False), [grad_scale, 1.0], [F32] * 2)
        else:
            R, C = shape
            rsum, csum = rt.new((R,)), rt.new((C,))
            self.sum(rsum, g2, (1,))
            self.sum(csum, g2, (0,))
            rt.map("adafactor_moment", [(row, "inout"), (rsum, "in")], (R,),
                   kopt.adafactor_moment_body, [beta2, 1.0 / C], [F32] * 2)
            rt.map("adafactor_moment", [(col, "inout"), (csum, "in")], (C,),
                   kopt.adafactor_moment_body, [beta2, 1.0 / R], [F32] * 2)
            total = rt.new((1, 1))
            self.sum(total, row.view(1, R), (0, 1), keepdim=True)
            rt.map("adafactor_u_factored", [(u, "out"), (grad, "in"), (row.view(R, 1), "in"),
                                            (col.view(1, C), "in"), (total, "in")], shape,
                   kopt.adafactor_u_body(True), [grad_scale, float(R)], [F32] * 2)
        self.unary(g2, "square", u)
        ss = rt.new((1,) * len(shape))
        self.sum(ss, g2, tuple(range(len(shape))), keepdim=True)
        rt.map("adafactor_apply", [(param, "inout"), (u, "in"), (ss, "in")], shape,
               kopt.adafactor_apply_body, [lr, weight_decay, clip, float(n)], [F32] * 4)
