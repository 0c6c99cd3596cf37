"""helios matmul: the protocol's `matmul` and the 16-bit `matmul16`, choosing per call between the
tensor-core kernel (`kernels/coopmat.py`, where the device offers VK_KHR_cooperative_matrix) and
the SIMT kernel (`kernels/matmul.py`, everywhere), plus split-K for products with too few tiles.

Precision: a backend made with `with_matmul_dtype("bf16")` (or "f16") multiplies 16-bit roundings
of its fp32 inputs with fp32 accumulation: on tensor cores when it can, else (bf16 only) with the
SIMT kernel rounding its inputs the same way (lavapipe, the tests). Everything else stays fp32: this is the
mixed-precision mode of `alpha train --dtype bf16` (fp32 master weights, optimizer state,
activations and reductions; bf16 matrix products).
"""

from __future__ import annotations

import copy
import math

from alpha.helios.kernels import coopmat as kcm
from alpha.helios.kernels import coopmat2 as kcm2
from alpha.helios.kernels import matmul as kmm
from alpha.helios.kernels import rows as krows
from alpha.helios.runtime import MAX_GROUPS, groups as _groups

MATMUL_DTYPES = ("f32", "bf16", "f16")
SIMT_ROWS = 64  # fp32 products with fewer rows than this skip the tensor cores (see _mm)


class MatmulOps:
    matmul_dtype = "f32"  # the precision of f32 matmuls: f32 | bf16 | f16 (inputs rounded)
    coop_config = None  # a kcm.CoopConfig forcing the tensor-core tile shape (benchmarks)
    coop_exact = True  # False: bounds-checked loads on whole tiles too (benchmarks: the before)
    coop_emulate = False  # True: the tensor-core kernels with scalar products (lavapipe: tests)
    # a linear's bias added by the tensor-core kernel as it stores C (one pass over the output,
    # not a second read and write of it; GPT-2 small: 73 adds, 6.9 ms of a 95 ms step on an
    # H200). False: the product, then a separate add (benchmarks: the before)
    bias_epilogue = True
    # the workgroup-scope kernel (kernels/coopmat2.py, VK_NV_cooperative_matrix2) for products
    # that take the large tile, where the device offers it. Off: on an H200 it ties the
    # subgroup kernel (8192^3 318 vs 324 TFLOP/s, GPT-2's products -4% .. +4%) and the
    # training step ran 5% slower with it (bench/gpu_coopmat2.py, bench/gpu_train.py -cm2)
    coop2 = False

    def with_matmul_dtype(self, dtype: str):
        """This backend (same device, same memory) with f32 matmuls in `dtype`."""
        if dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul dtype {dtype!r} (known: {', '.join(MATMUL_DTYPES)})")
        if dtype == self.matmul_dtype:
            return self
        other = copy.copy(self)
        other.matmul_dtype = dtype
        other.rt = copy.copy(self.rt)  # same device and pipelines; new tensors belong to other
        other.rt.backend = other
        return other

    def _coop_types(self) -> set:
        types = getattr(self.dev, "_coop_types", None)
        if types is None:
            types = self.dev._coop_types = self.dev.coopmat_types()
        return types

    def _matrix_types(self) -> set:
        """The 16-bit types the tensor-core matmul multiplies here (emulated: all)."""
        return set(kcm.DTYPES) if self.coop_emulate else self._coop_types()

    # ---- the protocol op (arguments checked by the front, alpha.core.backend) --------------
    def _matmul(self, out, a, b, trans_a, trans_b, accumulate, alpha) -> None:
        self._mm(out, a, b, trans_a, trans_b, accumulate, alpha, self.matmul_dtype, "f32")

    def _matmul_bias(self, out, a, b, trans_a, trans_b, accumulate, alpha, bias) -> None:
        if not self.bias_epilogue:
            return super()._matmul_bias(out, a, b, trans_a, trans_b, accumulate, alpha, bias)
        self._mm(out, a, b, trans_a, trans_b, accumulate, alpha, self.matmul_dtype, "f32",
                 bias=bias)

    def _matmul_rows(self, out, a, b, trans_b) -> None:
        """Batch-invariant rows (decode): fp32 whatever the matmul dtype; the SIMT shaders give
        each output element one fixed k order whatever M."""
        self._mm(out, a, b, False, trans_b, False, 1.0, "f32", "f32")

    def matmul16(self, out, a, b, *, dtype="bf16", trans_a=False, trans_b=False,
                 accumulate=False, alpha=1.0, bias=None) -> None:
        """out (f32) = alpha * op(a) @ op(b) (+ out) (+ bias), a and b u16 tensors holding bf16
        or fp16 bits (see `pack16`), bias f32 (N,) or None; needs tensor cores for `dtype`."""
        if out.dtype != "f32":
            raise TypeError(f"matmul16: out has dtype {out.dtype}; it must be f32")
        for name, t in (("a", a), ("b", b)):
            if t.dtype != "u16":
                raise TypeError(f"matmul16: {name} has dtype {t.dtype}; it holds {dtype} bits "
                                "in a u16 tensor")
        if dtype not in self._matrix_types():
            raise NotImplementedError(f"need tensor cores for {dtype} (VK_KHR_cooperative_matrix"
                                      f" on {self.dev.name} offers "
                                      f"{sorted(self._coop_types()) or 'none'})")
        if bias is not None and (bias.dtype != "f32" or bias.shape != out.shape[-1:]):
            raise ValueError(f"matmul16: bias must be f32 of shape {out.shape[-1:]} (got "
                             f"{bias.dtype} {bias.shape})")
        self._mm(out, a, b, trans_a, trans_b, accumulate, alpha, dtype, dtype, bias=bias)

    def pack16(self, out, x, dtype="bf16") -> None:
        """out (u16, same element count) = x (f32) rounded to `dtype` bits (nearest even)."""
        if x.dtype != "f32":
            raise TypeError(f"pack16: x has dtype {x.dtype}; it must be f32")
        if out.dtype != "u16" or out.numel != x.numel or not out.is_contiguous \
                or x.numel % 2:
            raise ValueError(f"pack16: out must be a contiguous u16 tensor of x's even element "
                             f"count {x.numel} (got {out.dtype} {out.shape})")
        x = self.rt.contig(x)
        n = x.numel // 2
        if n:
            self.rt.launch(("pack16", dtype), lambda: kcm.pack16_kernel(dtype),
                         [self.rt.addr(out), self.rt.addr(x), n], (_groups(n), 1, 1), [out])

    # ---- shared front ----------------------------------------------------------------------
    def _mm(self, out, a, b, trans_a, trans_b, accumulate, alpha, dtype, src,
            causal=None, bias=None) -> None:
        """causal: a `coopmat.CAUSAL` hint for the products of causal attention (tensor cores
        only: the SIMT kernel computes everything, which gives the same result). bias: (N,)
        added last, by the tensor-core kernel's store where it can (`_coop`), else by a
        separate add (the same bits)."""
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: a {a.shape} and b {b.shape} need at least 2 dims")
        # a few rows of fp32 (decode): the SIMT kernel rounding as it loads, not two packing
        # passes over the weights for every token (bf16 decode ran at half the fp32 speed)
        rows = math.prod(a.shape[:-2]) * a.shape[-1 if trans_a else -2]
        tensor_cores = dtype in self._matrix_types() and not (
            src == "f32" and dtype == "bf16" and rows < SIMT_ROWS)
        if src == "f32" and tensor_cores:
            # one rounding pass per operand, then the 16-bit kernel: converting inside the
            # matmul would redo it for every tile that reads the element (measured 4x slower)
            pa, pb = self._packed(a, dtype), self._packed(b, dtype)
            if pa is not None and pb is not None:
                a, b, src = pa, pb, dtype
        opa = a.transpose(-2, -1) if trans_a else a
        opb = b.transpose(-2, -1) if trans_b else b
        batch = opa.shape[:-2]
        M, K = opa.shape[-2:]
        K2, N = opb.shape[-2:]
        if K != K2 or (opb.ndim > 2 and opb.shape[:-2] != batch):
            raise ValueError(f"matmul: a {a.shape} (trans_a={trans_a}) and b {b.shape} "
                             f"(trans_b={trans_b}) do not multiply")
        if out.shape != batch + (M, N):
            raise ValueError(f"matmul: out has shape {out.shape}, expected {batch + (M, N)} "
                             f"for a {a.shape} and b {b.shape}")
        nb = math.prod(batch)
        if nb == 0 or M == 0 or N == 0:
            return

        opa, sab = self._batched(opa)
        opb, sbb = self._batched(opb) if opb.ndim > 2 else (opb, 0)
        o = out if out.is_contiguous else self.rt.new(out.shape)
        if o is not out and accumulate:
            self.rt.copy(o, out)
        if dtype != "f32" and tensor_cores:
            bias = self._coop(o, opa, opb, M, N, K, nb, sab, sbb, alpha, accumulate, dtype,
                              src, causal, bias)
        elif dtype == "f16":
            raise NotImplementedError(f"need tensor cores for f16 matmuls ({self.dev.name} has "
                                      "none usable); bf16 runs everywhere")
        else:
            self._simt(o, opa, opb, M, N, K, nb, sab, sbb, alpha, accumulate,
                       None if dtype == "f32" else dtype)
        if bias is not None:
            self._add_bias(o, bias)
        if o is not out:
            self.rt.copy(out, o)

    def _add_bias(self, o, bias) -> None:
        self._binary(o, "add", o, bias, o.shape)

    def _run(self, key, build, o, a, b, values, grid, nb, sab, sbb, esize, M, N):
        """Dispatch over the batch in slices of at most MAX_GROUPS workgroups."""
        for b0 in range(0, nb, MAX_GROUPS):
            nbi = min(MAX_GROUPS, nb - b0)
            if b0:
                values[0] = self.rt.addr(o) + b0 * M * N * 4
                values[1] = self.rt.addr(a) + b0 * sab * esize
                values[2] = self.rt.addr(b) + b0 * sbb * esize
            self.rt.launch(key, build, values, (grid[0], grid[1], nbi), [o])

    def _packed(self, t, dtype):
        """t's values as `dtype` bits in a u16 tensor of t's shape, or None when t has an odd
        number of elements (the f32-reading kernel takes those). A packing is kept in the write
        record (alpha/helios/derived.py) until t's allocation is written: a linear layer's
        backward reuses the packings of its forward (x and w) and packs dY once for dX = dY W
        and dW = dY^T X."""
        if t.numel % 2 or t.numel == 0:
            return None
        key = self._pack_key(t, dtype)
        alloc = t.storage.alloc
        u = self.dev.derived.get(alloc, key)
        if u is None:
            u = self.rt.new(t.shape, "u16")
            self.pack16(u.view(t.numel), self.rt.contig(t).view(t.numel), dtype)
            self.dev.derived.put(alloc, key, u)
        return u if u.shape == t.shape else u.view(t.shape)

    @staticmethod
    def _pack_key(t, dtype) -> tuple:
        """The write record's key of the `dtype` packing of the view t (a producer that writes
        it directly, like the cross-entropy backward, records it under this key). Contiguous
        views of the same elements share it whatever their shape: a linear reads its input
        (B, T, C) as (B*T, C)."""
        if t.is_contiguous:
            return ("packed", t.offset, t.numel, dtype)
        return ("packed", t.offset, t.shape, t.strides, dtype)

    # ---- tensor cores ----------------------------------------------------------------------
    def _coop(self, o, a, b, M, N, K, nb, sab, sbb, alpha, accumulate, dtype, src, causal,
              bias):
        """Returns the bias still to add (None once the kernel added it)."""
        sam, sak = a.strides[-2:]
        sbk, sbn = b.strides[-2:]
        a_k = sak == 1 or (sam != 1 and sak <= sam)
        b_n = sbn == 1 or (sbk != 1 and sbn <= sbk)
        esize = 4 if src == "f32" else 2
        # the workgroup-scope kernel takes 16-bit inputs and no causal hint
        wg = src == dtype and not causal
        cfg = self.coop_config or self._coop_shape(M, N, K, nb, dtype if wg else None)
        if isinstance(cfg, kcm2.Cm2Config) and not wg:
            cfg = self._coop_shape(M, N, K, nb)
        if isinstance(cfg, kcm2.Cm2Config):
            return self._coop2(cfg, o, a, b, M, N, K, nb, sab, sbb, alpha, accumulate, dtype,
                               a_k, b_n, bias)
        splits = 1 if causal else self._split_k(cfg.BM, cfg.BN, cfg.BK, M, N, K, nb)
        Ks = K // splits
        inner_a, inner_b = (K if a_k else M), (N if b_n else K)
        vec = (self._aligned16(a, b, a_k, b_n, nb, sab, sbb, splits, Ks)
               and inner_a % 8 == 0 and inner_b % 8 == 0 and Ks % 8 == 0)
        # every tile whole: loads without bounds checks (all of GPT-2's training products)
        exact = (self.coop_exact and vec and M % cfg.BM == 0 and N % cfg.BN == 0
                 and Ks % cfg.BK == 0)
        mode = "emulated" if self.coop_emulate else "coopmat"
        # the kernel's whole tiles load 16 biases at a time (16-byte aligned; GPT-2's are)
        fused = (bias is not None and splits == 1 and bias.is_contiguous
                 and self.rt.addr(bias) % 16 == 0)
        key = ("coopmat", cfg, dtype, src, a_k, b_n, vec, causal, exact, mode, fused)
        build = lambda: kcm.coopmat_kernel(cfg, dtype, src, a_k, b_n, vec, causal,  # noqa
                                           exact, mode, fused)
        self._tiles(key, build, cfg, o, a, b, M, N, K, nb, sab, sbb, splits, alpha, accumulate,
                    bias if fused else None, esize)
        return None if fused else bias  # fused only without split-K

    def _coop2(self, cfg, o, a, b, M, N, K, nb, sab, sbb, alpha, accumulate, dtype, a_k, b_n,
               bias):
        """The workgroup-scope kernel (VK_NV_cooperative_matrix2; 16-bit a and b, no causal
        hint): the same split-K, batching and bias as `_coop`. Returns the bias still to add."""
        splits = self._split_k(cfg.BM, cfg.BN, cfg.BK, M, N, K, nb)
        Ks = K // splits
        aligned = self._aligned16(a, b, a_k, b_n, nb, sab, sbb, splits, Ks)
        exact = (self.coop_exact and aligned and M % cfg.BM == 0 and N % cfg.BN == 0
                 and Ks % (cfg.BK * cfg.unroll) == 0)
        fused = bias is not None and splits == 1 and bias.is_contiguous
        key = ("coopmat2", cfg, dtype, a_k, b_n, aligned, exact, fused)
        build = lambda: kcm2.coopmat2_kernel(cfg, dtype, a_k, b_n, aligned, exact,  # noqa
                                             fused)
        self._tiles(key, build, cfg, o, a, b, M, N, K, nb, sab, sbb, splits, alpha, accumulate,
                    bias if fused else None, 2)
        return None if fused else bias  # fused only without split-K

    def _aligned16(self, a, b, a_k, b_n, nb, sab, sbb, splits, Ks) -> bool:
        """Whether a and b can be read 16 bytes at a time: their contiguous dimensions have
        stride 1, every other stride a K slice or a batch steps by is a multiple of 8 elements,
        and both bases are 16-byte aligned."""
        sam, sak = a.strides[-2:]
        sbk, sbn = b.strides[-2:]
        others = [sam if a_k else sak, sbk if b_n else sbn]
        if nb > 1:
            others += [sab, sbb]
        if splits > 1:
            others += [Ks * sak, Ks * sbk]
        return ((sak if a_k else sam) == 1 and (sbn if b_n else sbk) == 1
                and all(s % 8 == 0 for s in others)
                and self.rt.addr(a) % 16 == 0 and self.rt.addr(b) % 16 == 0)

    def _tiles(self, key, build, cfg, o, a, b, M, N, K, nb, sab, sbb, splits, alpha,
               accumulate, bias, esize):
        """Launch a tensor-core kernel over its output tiles (either scope: both take the same
        values). Split-K writes `splits` partial products and sums them into o in a second
        pass (where the caller adds the bias itself)."""
        sam, sak = a.strides[-2:]
        sbk, sbn = b.strides[-2:]
        grid = (-(-N // cfg.BN), -(-M // cfg.BM))
        if splits > 1:
            Ks = K // splits
            part = self.rt.new((splits, M, N))
            values = [self.rt.addr(part), self.rt.addr(a), self.rt.addr(b), M, N, Ks, Ks * sak,
                      sam, sak, Ks * sbk, sbk, sbn, float(alpha), 0.0]
            self.rt.launch(key, build, values, (grid[0], grid[1], splits), [part])
            add = bool(accumulate)
            self.rt.launch(("colsum_finish", add), lambda: krows.colsum_finish(add),
                           [self.rt.addr(o), self.rt.addr(part), splits, M * N],
                           (_groups(M * N), 1, 1), [o])
            return
        values = [self.rt.addr(o), self.rt.addr(a), self.rt.addr(b), M, N, K, sab, sam, sak,
                  sbb, sbk, sbn, float(alpha), 1.0 if accumulate else 0.0]
        if bias is not None:
            values.append(self.rt.addr(bias))
        self._run(key, build, o, a, b, values, grid, nb, sab, sbb, esize, M, N)

    def _coop_shape(self, M, N, K, nb, dtype=None):
        """128x128 tiles once they give every multiprocessor work, counting the K slices of
        split-K (weight gradients: 768 x 768 .. 3072 x 768 products over K = B*T), else 64x64.
        The weight gradients of GPT-2 small ran at ~107 TFLOP/s in 64x64 tiles; every GPT-2
        small training product runs fastest in the default 128x128 (H200 sweep: 227-293
        TFLOP/s, against 198-260 for 128x192, whose N divides all of them)."""
        D = kcm.DEFAULT
        tiles = -(-M // D.BM) * -(-N // D.BN) * nb
        if tiles * self._split_k(D.BM, D.BN, D.BK, M, N, K, nb) < 256:
            return kcm.SMALL
        W = kcm2.DEFAULT
        if self.coop2 and dtype and not self.coop_emulate and \
                self.dev.coopmat2_ok(dtype, W.threads, W.BM, W.BN, W.BK):
            return W
        return D

    # ---- SIMT --------------------------------------------------------------------------------
    def _simt(self, o, a, b, M, N, K, nb, sab, sbb, alpha, accumulate, rounding):
        sam, sak = a.strides[-2:]
        sbk, sbn = b.strides[-2:]
        cfg = self._mm_config(M, N, K, nb)
        ck = sak == 1 and sam != 1
        splits = self._split_k(kmm.LARGE.BM, kmm.LARGE.BN, kmm.LARGE.BK, M, N, K, nb)
        if splits > 1:  # big tiles, K cut into slices
            self._simt_split_k(o, a, b, kmm.LARGE, M, N, K, splits, alpha, accumulate,
                               rounding)
            return
        al = K > 0 and M % cfg.BM == 0 and N % cfg.BN == 0 and K % cfg.BK == 0
        values = [self.rt.addr(o), self.rt.addr(a), self.rt.addr(b), M, N, K, sab, sam, sak,
                  sbb, sbk, sbn, float(alpha), 1.0 if accumulate else 0.0]
        self._run(("matmul", cfg, ck, al, rounding),
                  lambda: kmm.matmul_kernel(cfg, ck, al, rounding), o, a, b, values,
                  (-(-N // cfg.BN), -(-M // cfg.BM)), nb, sab, sbb, 4, M, N)

    def _split_k(self, BM, BN, BK, M, N, K, batch) -> int:
        """How many K slices a single product with too few tiles to fill the GPU (weight
        gradients: small M x N, long K) is cut into; 1 = no split."""
        if batch != 1 or self.dev.device_type not in ("discrete", "integrated"):
            return 1
        tiles = -(-M // BM) * -(-N // BN)
        for s in (8, 4, 2):
            if tiles * s <= 1024 and tiles < 256 and K % (s * BK) == 0 and K // s >= 256:
                return s
        return 1

    def _simt_split_k(self, o, a, b, cfg, M, N, K, splits, alpha, accumulate, rounding):
        """Slices of K as batch entries into a (splits, M, N) scratch, then a fixed-order sum
        (deterministic, no atomics) into o."""
        part = self.rt.new((splits, M, N))
        Ks = K // splits
        sam, sak = a.strides[-2:]
        sbk, sbn = b.strides[-2:]
        ck = sak == 1 and sam != 1
        al = M % cfg.BM == 0 and N % cfg.BN == 0
        values = [self.rt.addr(part), self.rt.addr(a), self.rt.addr(b), M, N, Ks, Ks * sak, sam, sak,
                  Ks * sbk, sbk, sbn, float(alpha), 0.0]
        self.rt.launch(("matmul", cfg, ck, al, rounding),
                     lambda: kmm.matmul_kernel(cfg, ck, al, rounding), values,
                     ((N + cfg.BN - 1) // cfg.BN, (M + cfg.BM - 1) // cfg.BM, splits), [part])
        add = bool(accumulate)
        self.rt.launch(("colsum_finish", add), lambda: krows.colsum_finish(add),
                     [self.rt.addr(o), self.rt.addr(part), splits, M * N], (_groups(M * N), 1, 1),
                     [o])

    def _mm_config(self, M, N, K, batch=1):
        """The tile shape class: big tiles on a GPU once they still give every multiprocessor
        work (a few hundred tiles), smaller ones for small products."""
        gpu = self.dev.device_type in ("discrete", "integrated")
        if gpu and (M // 128) * (N // 128) * batch >= 256:
            return kmm.LARGE
        if M * N * batch >= 64 * 64 * 8:
            return kmm.DEFAULT
        return kmm.SMALL

    def _batched(self, t):
        """(t or a contiguous copy, batch stride) such that batch i starts at i * stride."""
        bshape, bstr = t.shape[:-2], t.strides[:-2]
        dims = [(n, s) for n, s in zip(bshape, bstr) if n != 1]
        if not dims:
            return t, 0
        ok = all(dims[i][1] == dims[i + 1][1] * dims[i + 1][0] for i in range(len(dims) - 1))
        if ok:
            return t, dims[-1][1]
        t = self.rt.contig(t)
        return t, t.shape[-2] * t.shape[-1]
