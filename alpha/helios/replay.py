"""helios's `decode_step`: the GPT's whole decode step (one new token for each of M sequences) as
ONE command buffer, recorded once per (batch size, KV cache, weights) and replayed every token.

Why: recording a dispatch from Python through ctypes costs 9-16 us, more than the GPU takes to
run it; op by op, a token of config B recorded ~95 dispatches and the GPU idled (230 tok/s on an
H200). Replayed, a token costs the host one memcpy of 3M integers, one vkQueueSubmit and one wait.

What changes per token lives in a small host-written argument buffer (`kernels/decode.py`): the
token ids, the cache slots and the positions; the kernels read them there instead of from push
constants, and attention loops to each row's own length, so nothing is recorded per length.
Everything else (weights, the cache, the scratch activations) is at a fixed address, read live:
new weights in the same tensors are used by the next token without re-recording.

A token is 3 + 5 * n_layer dispatches (`kernels/decode.py`): the embedding, per layer
[norm + qkv product], [k, v into the cache + attention], [c_proj + residual], [norm + c_fc +
activation], [mlp c_proj + residual], then [ln_f + head], whose logits are written straight
into host memory (read without a copy: `Runtime.read_bytes`), and their argmax, which
`argmax_rows` answers without a dispatch or a copy (greedy decoding reads M ids, not M * V
logits). The products are fp32 whatever the backend's matmul dtype, like `matmul_rows`, and
batch-invariant: a row's bits do not depend on M or on the other rows. They are not the
op-by-op path's bits (K is summed in slices, the norms are fused), only the same tokens within
fp32 rounding.

Model options: softcap, rmsnorm, logit soft-cap, rope (q and the new k turned inside the
attention kernel), every activation (swiglu: both halves of c_fc in one product). Declined
(NotImplementedError: the model runs its other decode paths): qk_norm (its weights are not
among the block's), non-f32 or non-contiguous tensors, a cache longer than shared memory
holds, heads wider than 256.
"""

from __future__ import annotations

import ctypes
import math
import struct
import weakref
from array import array
from collections import OrderedDict
from ctypes import byref

from alpha.helios import vk
from alpha.helios.kernels import decode as kdec
from alpha.helios.runtime import MAX_GROUPS, HeliosStorage, groups
from alpha.tensor.tensor import Tensor

MAX_RECORDED = 32  # recorded steps kept (a server's batch size changes as requests come and go)
ACTIVATIONS = ("gelu", "relu", "relu2", "silu", "swiglu")
GREEDY = ("greedy",)  # the write record's mark on a step's logits: its `greedy` is their argmax


class DecodeOps:
    """Mixed into HeliosBackend: the `decode_step` hook (arguments checked by the front,
    `alpha.core.backend_attention`)."""

    def _decode_step(self, ids, caches, slots, positions, params, n_head, activation, eps,
                     **options):
        unknown = set(options) - {"softcap", "norm", "logit_softcap", "rope"}
        if unknown:
            raise NotImplementedError(f"need decode_step with {', '.join(sorted(unknown))}")
        if activation not in ACTIVATIONS:
            raise NotImplementedError(f"need decode_step with {activation}")
        M = len(slots)
        rope = options.get("rope")
        if rope is not None and max(positions) >= rope[0].shape[0]:
            raise ValueError(f"decode_step: position {max(positions)} is outside the rope "
                             f"tables' [0, {rope[0].shape[0]})")
        key = (M, id(caches), id(params), n_head, activation, eps,
               tuple(sorted((k, id(v) if k == "rope" else v) for k, v in options.items())))
        replays = self.__dict__.setdefault("_replays", OrderedDict())
        rep = replays.get(key)
        if rep is None or not rep.matches(caches, params):
            for k, r in list(replays.items()):  # steps over freed caches or weights go
                if k == key or not r.alive():
                    del replays[k]
                    r.release()
            rep = DecodeReplay(self, M, caches, params, n_head, activation, eps, **options)
            replays[key] = rep
            if len(replays) > MAX_RECORDED:
                replays.popitem(last=False)[1].release()
        replays.move_to_end(key)
        return rep.run(self._ids_on_host(ids), slots, positions)

    def _argmax_rows(self, x) -> list[int]:
        if x.dtype != "f32":
            raise NotImplementedError("need argmax_rows for f64")
        for rep in self.__dict__.get("_replays", {}).values():  # computed by the step already
            if rep.owns(x):
                return list(self.rt.host_values(rep.greedy))
        M, N = x.shape
        x = self.rt.contig(x)
        ids = self.rt.new((M,), "u32")
        self.rt.launch(("argmax_rows",), kdec.argmax_rows,
                       [self.rt.addr(ids), self.rt.addr(x), M, N], (min(M, MAX_GROUPS), 1, 1),
                       [ids])
        return list(self.rt.host_values(ids))


class DecodeReplay:
    """One recorded decode step of M rows (see the module docstring)."""

    def __init__(self, be, M, caches, params, n_head, activation, eps, softcap=0.0,
                 norm="layernorm", logit_softcap=0.0, rope=None):
        self.be, self.dev, self.M = be, be.dev, M
        wte, wpe, blocks, lnf_w, lnf_b, head_t = params
        # the memory it reads, by weak reference: a step over freed memory is never replayed,
        # and a kept step holds no cache or model alive
        keyed = self._keyed(caches, params) + list(rope or ())
        self._refs = [weakref.ref(t.storage.alloc) for t in keyed]
        V, C = wte.shape
        F = blocks[0][8].shape[1]  # c_fc's outputs: [gate | up] with swiglu
        H = F // 2 if activation == "swiglu" else F  # the MLP's hidden width
        S, Tmax = caches[0].shape[:2]
        self._check(params, caches, C, F, H, V)
        keys = 64
        while keys < Tmax:
            keys *= 2
        limits = self.dev.limits
        if 4 * (keys + 2 * kdec.ATT_LOCAL) > limits.maxComputeSharedMemorySize \
                or limits.maxComputeWorkGroupInvocations < kdec.NC * 16:
            raise NotImplementedError(f"need decode_step for a cache of {Tmax} positions")
        rt = be.rt
        self.x, self.qkv = rt.new((M, C)), rt.new((M, 3 * C))
        self.att, self.hid = rt.new((M, C)), rt.new((M, H))
        dev = self.dev
        # the arguments: host-visible device memory where there is some, else host memory
        self.args = (dev.device_pool if dev.direct_upload else dev.host_pool).alloc(12 * M)
        # the logits and their argmax (greedy decoding: `argmax_rows`) go straight to host
        # memory, which the host reads without a copy
        self.logits = self._host_tensor((M, V), "f32")
        self.greedy = self._host_tensor((M,), "u32")
        A = rt.addr
        args = self.args.address
        learned = wpe is not None
        steps = [(("decode_embed", learned), lambda: kdec.decode_embed(learned),
                  [A(self.x), A(wte), A(wpe) if learned else A(wte), args, M, C],
                  (groups(M * C), 1, 1))]
        hs = C // n_head
        if hs > kdec.ATT_LOCAL:
            raise NotImplementedError(f"need decode_step for heads of {hs} > {kdec.ATT_LOCAL}")
        turn = rope is not None
        if turn:
            for t in rope:
                if t.dtype != "f32" or not t.is_contiguous or t.ndim != 2 \
                        or t.shape[1] != hs // 2 or hs % 2:
                    raise ValueError(f"decode_step: rope table {t.shape} must be contiguous f32 "
                                     f"(L, {hs // 2})")
        tables = [A(t) for t in rope] if turn else [args, args]
        att_key = ("decode_attention", keys, hs, softcap, turn)
        att_build = lambda: kdec.decode_attention(keys, hs, softcap, turn)  # noqa: E731
        for cache, blk in zip(caches, blocks):
            ln1w, ln1b, aw, ab, pw, pb, ln2w, ln2b, fw, fb, mw, mb = blk
            steps.append(self._gemv(self.qkv, self.x, aw, ab, (norm, ln1w, ln1b), None, eps))
            steps.append((att_key, att_build,
                          [A(self.att), A(self.qkv), A(cache), args] + tables
                          + [M, C, Tmax * 2 * C, 1.0 / math.sqrt(hs)], (n_head, M, 1)))
            steps.append(self._gemv(self.x, self.att, pw, pb, None, "residual", eps))
            steps.append(self._gemv(self.hid, self.x, fw, fb, (norm, ln2w, ln2b), activation,
                                    eps))
            steps.append(self._gemv(self.x, self.hid, mw, mb, None, "residual", eps))
        steps.append(self._gemv(self.logits, self.x, head_t, None, (norm, lnf_w, lnf_b),
                                "softcap" if logit_softcap else None, eps, logit_softcap))
        steps.append((("argmax_rows",), kdec.argmax_rows, [A(self.greedy), A(self.logits), M, V],
                      (min(M, MAX_GROUPS), 1, 1)))
        self.dispatches = len(steps)
        self.cb, self.fence = self._record(steps)

    def _host_tensor(self, shape, dtype) -> Tensor:
        """A tensor in host memory where it is coherent (read with no copy), else on the GPU."""
        dev = self.dev
        if not dev.host_coherent:
            return self.be.rt.new(shape, dtype)
        n = 4 * math.prod(shape)
        return Tensor(self.be, HeliosStorage(dev.host_pool.alloc(n), n), shape, dtype)

    @staticmethod
    def _keyed(caches, params) -> list:
        """The tensors whose memory identifies a recording: the caches, the weights' flat
        buffer (wte is a view of it), the cache's transposed head."""
        return list(caches) + [params[0], params[5]]

    def matches(self, caches, params) -> bool:
        keyed = self._keyed(caches, params)
        return len(keyed) == len(self._refs) and all(
            r() is t.storage.alloc for r, t in zip(self._refs, keyed))

    def alive(self) -> bool:
        return all(r() is not None for r in self._refs)

    def owns(self, x) -> bool:
        """x is this step's logits, unchanged since its last run (the write record keeps the
        mark until a command writes them)."""
        return (x.storage is self.logits.storage and x.offset == 0
                and x.shape == self.logits.shape
                and self.dev.derived.get(x.storage.alloc, GREEDY) is not None)

    @staticmethod
    def _check(params, caches, C, F, H, V) -> None:
        """Every tensor contiguous f32 of the shape the kernels assume (declined otherwise)."""
        wte, wpe, blocks, lnf_w, lnf_b, head_t = params
        want = [(wte, (V, C)), (lnf_w, (C,)), (lnf_b, (C,)), (head_t, (C, V))]
        if wpe is not None:
            want.append((wpe, (wpe.shape[0], C)))
        shapes = ((C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, F), (F,),
                  (H, C), (C,))
        for blk in blocks:
            want += list(zip(blk, shapes))
        want += [(c, caches[0].shape) for c in caches]
        for t, shape in want:
            if t is None:
                continue
            if t.dtype != "f32" or not t.is_contiguous:
                raise NotImplementedError("need decode_step on f32 contiguous tensors")
            if t.shape != shape:
                raise ValueError(f"decode_step: a parameter of shape {t.shape} where {shape} "
                                 "belongs")

    def _gemv(self, out, a, w, bias, norm, epilogue, eps, cap=0.0):
        """One `decode_gemv` step: norm is None or (kind, weight, bias)."""
        A = self.be.rt.addr
        K, N = w.shape
        pairs = 2 if epilogue == "swiglu" else 1
        N //= pairs  # swiglu: [gate | up] columns, N outputs
        KS = kdec.gemv_slices(K)
        kind, nw, nb = None, a, a
        if norm is not None:
            kind, nw, nb = norm[0], norm[1], norm[2]
            if kind == "layernorm" and nb is None:
                kind = "layernorm_nobias"
            nb = nb if nb is not None else a
        has_bias = bias is not None
        staged = kdec.stage_class(K) if kind is not None else 0
        limit = self.dev.limits.maxComputeSharedMemorySize
        if kdec.gemv_shared_bytes(KS, staged, pairs) > limit:
            staged = 0  # normalised as loaded: slower, no shared-memory bound on K
        key = ("decode_gemv", KS, kind, epilogue, has_bias, staged)
        return (key, lambda: kdec.decode_gemv(KS, kind, epilogue, has_bias, staged),
                [A(out), A(a), A(w), A(bias) if has_bias else A(a), A(nw), A(nb), self.M, K, N,
                 float(eps), float(cap)],
                (-(-N // kdec.NC), -(-self.M // kdec.MR), 1))

    def _record(self, steps) -> tuple[int, int]:
        dev = self.dev
        f = dev.f
        cb, fence = dev._new_cmd()
        info = vk.CommandBufferBeginInfo(sType=vk.ST_COMMAND_BUFFER_BEGIN_INFO, flags=0)
        vk.check(f.BeginCommandBuffer(cb, byref(info)), "vkBeginCommandBuffer")
        # barriers first and last: ordered after the work submitted before it (a prefill's
        # cache writes) and before the work submitted after it (the next op's reads)
        dev._barrier(cb)
        pool = self._profile_pool(cb, len(steps))
        last = None
        for i, (key, build, values, grid) in enumerate(steps):
            prog = self.be.pipes.get(key, build)
            if i:
                dev._barrier(cb)
            if prog.pipeline != last:
                f.CmdBindPipeline(cb, vk.BIND_POINT_COMPUTE, prog.pipeline)
                last = prog.pipeline
            push = struct.pack(prog.push_format, *values)
            f.CmdPushConstants(cb, prog.layout, vk.SHADER_STAGE_COMPUTE, 0, len(push), push)
            f.CmdDispatch(cb, *grid)
            if pool:
                self._names.append(prog.name)
                f.CmdWriteTimestamp(cb, vk.STAGE_BOTTOM, pool, i + 1)
        dev._barrier(cb)
        hb = vk.MemoryBarrier(sType=vk.ST_MEMORY_BARRIER, srcAccessMask=vk.ACCESS_SHADER_WRITE,
                              dstAccessMask=vk.ACCESS_HOST_READ)
        f.CmdPipelineBarrier(cb, dev._stages, vk.STAGE_HOST, 0, 1, byref(hb), 0, None, 0, None)
        vk.check(f.EndCommandBuffer(cb), "vkEndCommandBuffer")
        return cb, fence

    def _profile_pool(self, cb, n: int) -> int:
        """With ALPHA_HELIOS_PROFILE=1, a timestamp after every dispatch (query pool, reset at
        the start of the step); the GPU times are added to the device's profile table when the
        next run starts (`_collect`)."""
        self._pool, self._names, self._ran = 0, [], False
        dev = self.dev
        if not dev.profiling:
            return 0
        info = vk.QueryPoolCreateInfo(sType=vk.ST_QUERY_POOL_CREATE_INFO,
                                      queryType=vk.QUERY_TIMESTAMP, queryCount=n + 1)
        qp = vk.NH()
        vk.check(dev.f.CreateQueryPool(dev.device, byref(info), None, byref(qp)),
                 "vkCreateQueryPool")
        self._pool = qp.value
        dev.f.CmdResetQueryPool(cb, self._pool, 0, n + 1)
        dev.f.CmdWriteTimestamp(cb, vk.STAGE_BOTTOM, self._pool, 0)
        return self._pool

    def _collect(self) -> None:
        n = len(self._names)
        data = (ctypes.c_uint64 * (n + 1))()
        dev = self.dev
        vk.check(dev.f.GetQueryPoolResults(dev.device, self._pool, 0, n + 1, ctypes.sizeof(data),
                                           data, 8, vk.QUERY_RESULT_64_WAIT),
                 "vkGetQueryPoolResults")
        period = dev.limits.timestampPeriod * 1e-9
        for i, name in enumerate(self._names):
            entry = dev.profile.setdefault("replay " + name, [0, 0.0])
            entry[0] += 1
            entry[1] += (data[i + 1] - data[i]) * period

    def run(self, ids, slots, positions) -> Tensor:
        """Write this token's arguments, submit the recorded step (no wait: reading the logits
        waits), return the logits (M, V), overwritten by the next run."""
        dev = self.dev
        if self.fence in dev.replays_in_flight:  # the last token still reads the arguments
            dev.synchronize()
        if self._pool and self._ran:
            self._collect()
        self._ran = True
        data = array("I", [int(i) for i in ids])
        data.extend(slots)
        data.extend(positions)
        ctypes.memmove(self.args.host_ptr, data.buffer_info()[0], 12 * self.M)
        dev.derived.wrote(None)  # GPU memory will change (the record does not know which parts)
        dev.submit_recorded(self.cb, self.fence)
        dev.derived.put(self.logits.storage.alloc, GREEDY, True)  # `greedy` is their argmax
        return self.logits

    def release(self) -> None:
        """Give the command buffer back to the device's stream (once the GPU is done)."""
        dev = self.dev
        if self.fence in dev.replays_in_flight:
            dev.synchronize()
        if self._pool:
            dev.f.DestroyQueryPool(dev.device, self._pool, None)
            self._pool = 0
        vk.check(dev.f.ResetCommandBuffer(self.cb, 0), "vkResetCommandBuffer")
        dev.free_cmds.append((self.cb, self.fence))
