"""The CPU backend's optimizer ops: AdamW, Lion, SGD, Muon's momentum and Adafactor, each one C
call (`alpha/tensor/csrc/{adamw,lion,sgd,adafactor}.c`) on arguments the front
(`alpha.core.backend_optim`) has checked.

A mixin of `alpha.tensor.cpu.CPUBackend`, like `cpu_nn.CPUNNOps`. The optimizers pass contiguous
views of their flat buffers; a strided one goes through a contiguous temporary (`_wbuf`).
"""

from __future__ import annotations

from alpha.tensor.cpu_kernels import oom, ptr


class CPUOptimOps:
    def _adamw_step(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                    grad_scale) -> None:
        n = param.numel
        if n == 0:
            return
        pb, mb, vb = self._wbuf(param, True), self._wbuf(m, True), self._wbuf(v, True)
        grad = self._contig(grad)
        self.k.adamw_step(ptr(pb), ptr(grad), ptr(mb), ptr(vb), n, lr, beta1,
                          beta2, eps, weight_decay, step, grad_scale)
        self._wback(param, pb)
        self._wback(m, mb)
        self._wback(v, vb)

    def _lion_step(self, param, grad, m, lr, beta1, beta2, weight_decay, grad_scale) -> None:
        n = param.numel
        if n == 0:
            return
        pb, mb = self._wbuf(param, True), self._wbuf(m, True)
        grad = self._contig(grad)
        self.k.lion_step(ptr(pb), ptr(grad), ptr(mb), n, lr, beta1, beta2, weight_decay,
                         grad_scale)
        self._wback(param, pb)
        self._wback(m, mb)

    def _sgd_step(self, param, grad, buf, lr, momentum, nesterov, weight_decay,
                  grad_scale) -> None:
        n = param.numel
        if n == 0:
            return
        pb, bb = self._wbuf(param, True), self._wbuf(buf, True)
        grad = self._contig(grad)
        self.k.sgd_step(ptr(pb), ptr(grad), ptr(bb), n, lr, momentum, int(nesterov),
                        weight_decay, grad_scale)
        self._wback(param, pb)
        self._wback(buf, bb)

    def _muon_momentum(self, out, grad, buf, momentum, nesterov, grad_scale) -> None:
        n = out.numel
        if n == 0:
            return
        bb = self._wbuf(buf, True)
        grad = self._contig(grad)
        self.k.muon_momentum(ptr(out), ptr(grad), ptr(bb), n, momentum, int(nesterov),
                             grad_scale)
        self._wback(buf, bb)

    def _adafactor_step(self, param, grad, row, col, lr, beta2, eps, clip, weight_decay,
                        grad_scale) -> None:
        n = param.numel
        if n == 0:
            return
        R, C = param.shape if col is not None else (1, n)
        pb, rb = self._wbuf(param, True), self._wbuf(row, True)
        cb = self._wbuf(col, True) if col is not None else None
        grad = self._contig(grad)
        if self.k.adafactor_step(ptr(pb), ptr(grad), ptr(rb), ptr(cb) if cb is not None else None,
                                 R, C, lr, beta2, eps, clip, weight_decay, grad_scale):
            raise oom("adafactor_step")
        self._wback(param, pb)
        self._wback(row, rb)
        if cb is not None:
            self._wback(col, cb)
