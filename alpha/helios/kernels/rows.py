"""Row kernels: one workgroup per row of a (R, C) contiguous matrix, shared-memory tree reductions
in a fixed order (deterministic): row sum/max, softmax and log-softmax (+backward), layernorm and
rmsnorm (+backward), fused cross-entropy (+backward); and two-stage column kernels (rows in a fixed
order): column sums, layernorm/rmsnorm weight (and bias) gradients, embedding scatter-add grouped
by id. Plus the flat partial
reductions behind sum_squares / all_finite, and the Philox uniform generator.

Rows are visited with a grid-stride loop over workgroups, so R may exceed the 65535 group limit.
"""

from __future__ import annotations

from contextlib import contextmanager

from alpha.helios.kernels.coopmat import _bf16_bits, _f16_bits
from alpha.spirv.dsl import Kernel, Val

ROW_LOCAL = 128
NEG_INF = float("-inf")


@contextmanager
def rows(k: Kernel, R):
    with k.loop(k.group_id(0), R, k.num_groups(0)) as r:
        yield r


def _row_max(k, x, base, C, scratch):
    lid = k.local_id(0)
    acc = k.var("f32", NEG_INF)
    with k.loop(lid, C, ROW_LOCAL) as j:
        acc.set(k.fmax(acc.get(), x[base + j]))
    return k.reduce_max(acc.get(), scratch)


def _row_sum(k, f, C, scratch):
    """sum over j of f(j) (f builds the term)."""
    acc = k.var("f32", 0.0)
    with k.loop(k.local_id(0), C, ROW_LOCAL) as j:
        acc.set(acc.get() + f(j))
    return k.reduce_sum(acc.get(), scratch)


def row_reduce(kind: str) -> Kernel:
    k = Kernel(f"row_{kind}", (ROW_LOCAL, 1, 1), [("out", "f32*"), ("x", "f32*"), ("R", "u32"),
                                                  ("C", "u32")])
    out, x, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    with rows(k, R) as r:
        base = r * C
        if kind == "max":
            v = _row_max(k, x, base, C, sh)
        else:
            v = _row_sum(k, lambda j: x[base + j], C, sh)
        with k.if_(k.local_id(0).eq(0)):
            out[r] = v
    return k


def softmax_forward(log: bool) -> Kernel:
    k = Kernel("log_softmax_forward" if log else "softmax_forward", (ROW_LOCAL, 1, 1),
               [("out", "f32*"), ("x", "f32*"), ("R", "u32"), ("C", "u32")])
    out, x, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        mx = _row_max(k, x, base, C, sh)
        s = _row_sum(k, lambda j: k.exp(x[base + j] - mx), C, sh)
        if log:
            lse = mx + k.log(s)
            with k.loop(lid, C, ROW_LOCAL) as j:
                out[base + j] = x[base + j] - lse
        else:
            inv = 1.0 / s
            with k.loop(lid, C, ROW_LOCAL) as j:
                out[base + j] = k.exp(x[base + j] - mx) * inv
    return k


def softmax_backward(log: bool) -> Kernel:
    k = Kernel("log_softmax_backward" if log else "softmax_backward", (ROW_LOCAL, 1, 1),
               [("dx", "f32*"), ("dout", "f32*"), ("out", "f32*"), ("R", "u32"), ("C", "u32")])
    dx, dout, out, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        if log:
            s = _row_sum(k, lambda j: dout[base + j], C, sh)
            with k.loop(lid, C, ROW_LOCAL) as j:
                i = base + j
                dx[i] = dx[i] + dout[i] - k.exp(out[i]) * s
        else:
            s = _row_sum(k, lambda j: dout[base + j] * out[base + j], C, sh)
            with k.loop(lid, C, ROW_LOCAL) as j:
                i = base + j
                dx[i] = dx[i] + out[i] * (dout[i] - s)
    return k


def _store_row(k: Kernel, lid: Val, C: Val, base: Val, dst, dst16, out16: str | None,
               value) -> None:
    """dst[base + j] = value(j) over a row; with `out16` ("bf16"/"f16") also its copy rounded to
    16 bits in dst16, pairs in u32 words (C even), for the tensor-core matmul that reads it
    next."""
    if out16 is None:
        with k.loop(lid, C, ROW_LOCAL) as j:
            dst[base + j] = value(j)
        return
    bits = _bf16_bits if out16 == "bf16" else _f16_bits
    with k.loop(lid, C >> 1, ROW_LOCAL) as p:
        j = p * 2
        a, b = value(j), value(j + 1)
        dst[base + j] = a
        dst[base + j + 1] = b
        dst16[(base >> 1) + p] = bits(k, a) | (bits(k, b) << 16)


def layernorm_forward(has_bias: bool, out16: str | None = None, add: bool = False) -> Kernel:
    """`out16` ("bf16"/"f16"): out is also written rounded to 16 bits (pairs in u32 words: C
    even) for the tensor-core matmul that reads it next (no packing pass over it). `add`: the
    row normalised is x + y, stored in s as the mean's pass reads it (the residual add before
    the norm: add_layernorm_forward); the later passes add again rather than read s back, as
    the 16-bit store's threads take other columns than the ones they stored."""
    names = (["s"] if add else []) + ["out"] + (["out16"] if out16 else []) + ["mean", "rstd",
                                                                               "x"]
    names += (["y"] if add else []) + ["w"] + (["b"] if has_bias else [])
    params = [(n, "u32*" if n == "out16" else "f32*") for n in names]
    params += [("R", "u32"), ("C", "u32"), ("eps", "f32")]
    name = ("add_" if add else "") + "layernorm_forward" + (f"_{out16}" if out16 else "")
    k = Kernel(name, (ROW_LOCAL, 1, 1), params)
    ps = dict(zip(names + ["R", "C", "eps"], k.params()))
    out, mean, rstd, x, w = (ps[n] for n in ("out", "mean", "rstd", "x", "w"))
    o16, b, R, C, eps = ps.get("out16"), ps.get("b"), ps["R"], ps["C"], ps["eps"]
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        cf = C.to("f32")
        if add:
            s, yv = ps["s"], ps["y"]

            def xv(i):
                return x[i] + yv[i]

            def summed(j):
                v = xv(base + j)
                s[base + j] = v
                return v
        else:
            def xv(i):
                return x[i]
            summed = None
        mu = _row_sum(k, summed or (lambda j: xv(base + j)), C, sh) / cf
        var = _row_sum(k, lambda j: (xv(base + j) - mu) * (xv(base + j) - mu), C, sh) / cf
        rs = 1.0 / k.sqrt(var + eps)

        def y(j):
            v = (xv(base + j) - mu) * rs * w[j]
            return v + b[j] if b is not None else v

        _store_row(k, lid, C, base, out, o16, out16, y)
        with k.if_(lid.eq(0)):
            mean[r] = mu
            rstd[r] = rs
    return k


def layernorm_backward_dx() -> Kernel:
    k = Kernel("layernorm_backward", (ROW_LOCAL, 1, 1),
               [("dx", "f32*"), ("dout", "f32*"), ("x", "f32*"), ("w", "f32*"), ("mean", "f32*"),
                ("rstd", "f32*"), ("R", "u32"), ("C", "u32")])
    dx, dout, x, w, mean, rstd, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        mu, rs = mean[r], rstd[r]
        cf = C.to("f32")
        a = _row_sum(k, lambda j: w[j] * dout[base + j], C, sh) / cf
        bsum = _row_sum(k, lambda j: w[j] * dout[base + j] * ((x[base + j] - mu) * rs), C, sh)
        bm = bsum / cf
        with k.loop(lid, C, ROW_LOCAL) as j:
            i = base + j
            xhat = (x[i] - mu) * rs
            dx[i] = dx[i] + rs * (w[j] * dout[i] - a - xhat * bm)
    return k


def rmsnorm_forward() -> Kernel:
    k = Kernel("rmsnorm_forward", (ROW_LOCAL, 1, 1),
               [("out", "f32*"), ("rstd", "f32*"), ("x", "f32*"), ("w", "f32*"), ("R", "u32"),
                ("C", "u32"), ("eps", "f32")])
    out, rstd, x, w, R, C, eps = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        ms = _row_sum(k, lambda j: x[base + j] * x[base + j], C, sh) / C.to("f32")
        rs = 1.0 / k.sqrt(ms + eps)
        with k.loop(lid, C, ROW_LOCAL) as j:
            out[base + j] = x[base + j] * rs * w[j]
        with k.if_(lid.eq(0)):
            rstd[r] = rs
    return k


def rmsnorm_backward_dx() -> Kernel:
    k = Kernel("rmsnorm_backward", (ROW_LOCAL, 1, 1),
               [("dx", "f32*"), ("dout", "f32*"), ("x", "f32*"), ("w", "f32*"), ("rstd", "f32*"),
                ("R", "u32"), ("C", "u32")])
    dx, dout, x, w, rstd, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        rs = rstd[r]
        bm = _row_sum(k, lambda j: w[j] * dout[base + j] * (x[base + j] * rs), C, sh) / C.to("f32")
        with k.loop(lid, C, ROW_LOCAL) as j:
            i = base + j
            dx[i] = dx[i] + rs * (w[j] * dout[i] - x[i] * rs * bm)
    return k


def crossentropy_forward() -> Kernel:
    """losses[r] = lse[r] - x[r, t[r]] (0 where t[r] < 0) and lse[r] = log sum_j exp(x[r, j]):
    one read of the row, each invocation keeping a running max and a sum rescaled to it (the
    online softmax), combined over the workgroup at the end. lse is what the backward needs:
    the logits (3.3 GB in GPT-2 small at batch 16) are not read again for their max and sum."""
    k = Kernel("crossentropy_forward", (ROW_LOCAL, 1, 1),
               [("losses", "f32*"), ("lse", "f32*"), ("x", "f32*"), ("t", "i32*"), ("R", "u32"),
                ("C", "u32")])
    losses, lse, x, t, R, C = k.params()
    sh = k.shared("f32", ROW_LOCAL)
    with rows(k, R) as r:
        base = r * C
        m, s = k.var("f32", NEG_INF), k.var("f32", 0.0)
        with k.loop(k.local_id(0), C, ROW_LOCAL) as j:
            v = x[base + j]
            old, new = m.get(), k.fmax(m.get(), v)
            # a -inf logit adds nothing, and -inf - -inf must not make a NaN
            s.set(k.select(old.eq(new), s.get(), s.get() * k.exp(old - new))
                  + k.select(v.eq(NEG_INF), 0.0, k.exp(v - new)))
            m.set(new)
        mx = k.reduce_max(m.get(), sh)
        mine = m.get()
        total = k.reduce_sum(k.select(mine.eq(NEG_INF), 0.0, s.get() * k.exp(mine - mx)), sh)
        tr = t[r]
        with k.if_(k.local_id(0).eq(0)):
            ls = mx + k.log(total)
            loss = k.var("f32", 0.0)
            with k.if_(tr >= 0):
                loss.set(ls - x[base + tr.bits("u32")])
            losses[r] = loss.get()
            lse[r] = ls
    return k


def crossentropy_backward(overwrite: bool, out16: str | None) -> Kernel:
    """dx[r, j] += (exp(x[r, j] - lse[r]) - [j == t[r]]) * dl[r] (nothing where t[r] < 0), from
    the forward's lse: one read of x. `overwrite`: dx is known to hold zeros, so it is written
    without being read. `out16` ("bf16"/"f16"): the new dx is also written rounded to 16 bits
    (pairs in u32 words: C even) for the matmul that reads it next, in place of a packing pass
    over it."""
    params = [("dx", "f32*")] + ([("dx16", "u32*")] if out16 else [])
    params += [("dl", "f32*"), ("x", "f32*"), ("t", "i32*"), ("lse", "f32*"), ("R", "u32"),
               ("C", "u32")]
    name = "crossentropy_backward" + ("_set" if overwrite else "") + (f"_{out16}" if out16 else "")
    k = Kernel(name, (ROW_LOCAL, 1, 1), params)
    ps = k.params()
    dx, dx16 = ps[0], (ps[1] if out16 else None)
    dl, x, t, lse, R, C = ps[-6:]
    lid = k.local_id(0)
    with rows(k, R) as r:
        base = r * C
        tr = t[r]
        kept = tr >= 0
        g, ls = dl[r], lse[r]
        tu = tr.bits("u32")

        def value(j):
            d = k.select(kept, (k.exp(x[base + j] - ls) - k.select(j.eq(tu), 1.0, 0.0)) * g,
                         0.0)
            return d if overwrite else dx[base + j] + d

        if out16 is None:
            with k.if_(kept):  # a dropped row is left as it is
                _store_row(k, lid, C, base, dx, None, None, value)
        else:  # every row: its 16-bit copy is written whatever its target
            _store_row(k, lid, C, base, dx, dx16, out16, value)
    return k


def embedding_forward() -> Kernel:
    k = Kernel("embedding_forward", (256, 1, 1),
               [("out", "f32*"), ("ids", "i32*"), ("table", "f32*"), ("n", "u32"), ("C", "u32")])
    out, ids, table, n, C = k.params()
    with k.loop(k.gid, n, k.nthreads) as i:
        row = i / C
        out[i] = table[ids[row].bits("u32") * C + (i - row * C)]
    return k


def partial_reduce(kind: str, acc_t: str) -> Kernel:
    """partials[group] = sum of x^2 (kind "sumsq") or count of non-finite x ("nonfinite") over
    the group's grid-stride share of n elements."""
    out_t = acc_t if kind == "sumsq" else "f32"
    k = Kernel(f"partial_{kind}", (256, 1, 1),
               [("partials", f"{out_t}*"), ("x", "f32*"), ("n", "u32")])
    part, x, n = k.params()
    sh = k.shared(out_t, 256)
    acc = k.var(out_t, 0.0)
    with k.loop(k.gid, n, k.nthreads) as i:
        v = x[i]
        if kind == "sumsq":
            vv = v.to(acc_t)
            acc.set(acc.get() + vv * vv)
        else:
            bad = k.isnan(v) | k.isinf(v)
            acc.set(acc.get() + k.select(bad, k.const(1.0, "f32"), k.const(0.0, "f32")))
    total = k.reduce_sum(acc.get(), sh)
    with k.if_(k.local_id(0).eq(0)):
        part[k.group_id(0)] = total
    return k


M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def rng_uniform(based: bool = False) -> Kernel:
    """out[i] = uniform from Philox word position + i (position as lo/hi u32 halves). based:
    the position is an offset from the base that `base` (lo, hi) holds, read on the GPU (a
    replayed training step's dropout: alpha/helios/train_step.py); the same words."""
    params = [("out", "f32*"), ("n", "u32"), ("pos_lo", "u32"), ("pos_hi", "u32"),
              ("k0", "u32"), ("k1", "u32")] + ([("base", "u32*")] if based else [])
    k = Kernel("rng_uniform_based" if based else "rng_uniform", (256, 1, 1), params)
    out, n, plo, phi, key0, key1 = k.params()[:6]
    start = plo.to("u64") + (phi.to("u64") << k.const(32, "u64"))
    if based:
        base = k.params()[6]
        start = start + base[0].to("u64") + (base[1].to("u64") << k.const(32, "u64"))
    with k.loop(k.gid, n, k.nthreads) as i:
        w = start + i.to("u64")
        block = w >> k.const(2, "u64")
        sel = (w & k.const(3, "u64")).to("u32")
        c0, c1 = block.to("u32"), (block >> k.const(32, "u64")).to("u32")
        c2, c3 = k.const(0, "u32"), k.const(0, "u32")
        ka, kb = key0, key1
        for rnd in range(10):
            hi0, lo0 = k.umul_hi_lo(c0, k.const(M0, "u32"))
            hi1, lo1 = k.umul_hi_lo(c2, k.const(M1, "u32"))
            c0, c1, c2, c3 = hi1 ^ c1 ^ ka, lo1, hi0 ^ c3 ^ kb, lo0
            if rnd < 9:
                ka, kb = ka + W0, kb + W1
        word = k.select(sel.eq(0), c0, k.select(sel.eq(1), c1, k.select(sel.eq(2), c2, c3)))
        out[i] = (word >> 8).to("f32") * (1.0 / 16777216.0)
    return k


# ---- column reductions in two deterministic stages ------------------------------------------
# stage 1: workgroup (column block, row chunk) sums its chunk's rows in order into
# partial[chunk * C + c]; stage 2: out[c] (+)= the chunk partials in chunk order.
COL_LOCAL = 64


def colsum_partial() -> Kernel:
    k = Kernel("colsum_partial", (COL_LOCAL, 1, 1),
               [("partial", "f32*"), ("x", "f32*"), ("L", "u32"), ("C", "u32"), ("rows", "u32")])
    part, x, L, C, rows_per = k.params()
    c = k.group_id(0) * COL_LOCAL + k.local_id(0)
    chunk = k.group_id(1)
    with k.if_(c < C):
        acc = k.var("f32", 0.0)
        start = chunk * rows_per
        with k.loop(start, k.umin(start + rows_per, L)) as r:
            acc.set(acc.get() + x[r * C + c])
        part[chunk * C + c] = acc.get()
    return k


def layernorm_params_partial(has_bias: bool) -> Kernel:
    params = [("pw", "f32*")] + ([("pb", "f32*")] if has_bias else [])
    params += [("dout", "f32*"), ("x", "f32*"), ("mean", "f32*"), ("rstd", "f32*"),
               ("L", "u32"), ("C", "u32"), ("rows", "u32")]
    k = Kernel("layernorm_backward_params", (COL_LOCAL, 1, 1), params)
    ps = k.params()
    pw = ps[0]
    pb = ps[1] if has_bias else None
    dout, x, mean, rstd, L, C, rows_per = ps[-7:]
    c = k.group_id(0) * COL_LOCAL + k.local_id(0)
    chunk = k.group_id(1)
    with k.if_(c < C):
        aw = k.var("f32", 0.0)
        ab = k.var("f32", 0.0)
        start = chunk * rows_per
        with k.loop(start, k.umin(start + rows_per, L)) as r:
            i = r * C + c
            d = dout[i]
            aw.set(aw.get() + d * ((x[i] - mean[r]) * rstd[r]))
            ab.set(ab.get() + d)
        pw[chunk * C + c] = aw.get()
        if pb is not None:
            pb[chunk * C + c] = ab.get()
    return k


def rmsnorm_params_partial() -> Kernel:
    k = Kernel("rmsnorm_backward_params", (COL_LOCAL, 1, 1),
               [("pw", "f32*"), ("dout", "f32*"), ("x", "f32*"), ("rstd", "f32*"), ("L", "u32"),
                ("C", "u32"), ("rows", "u32")])
    pw, dout, x, rstd, L, C, rows_per = k.params()
    c = k.group_id(0) * COL_LOCAL + k.local_id(0)
    chunk = k.group_id(1)
    with k.if_(c < C):
        aw = k.var("f32", 0.0)
        start = chunk * rows_per
        with k.loop(start, k.umin(start + rows_per, L)) as r:
            i = r * C + c
            aw.set(aw.get() + dout[i] * (x[i] * rstd[r]))
        pw[chunk * C + c] = aw.get()
    return k


def colsum_finish(add: bool) -> Kernel:
    k = Kernel("colsum_finish", (256, 1, 1),
               [("out", "f32*"), ("partial", "f32*"), ("chunks", "u32"), ("C", "u32")])
    out, part, chunks, C = k.params()
    with k.loop(k.gid, C, k.nthreads) as c:
        acc = k.var("f32", 0.0)
        with k.loop(0, chunks) as j:
            acc.set(acc.get() + part[j * C + c])
        out[c] = out[c] + acc.get() if add else acc.get()
    return k


def embedding_rank() -> Kernel:
    """The ids sorted by (id, position) without a host sort: token i goes to place
    #{j: ids[j] < ids[i]} + #{j < i: ids[j] == ids[i]} (a stable ranking, N^2 compares: 0.3 G
    for GPT-2 small's 16k tokens, no atomics, so the order is the same every run). perm[place]
    = i, sorted[place] = ids[i], seglen[place] = the id's token count at its first place, else
    0. On the GPU so that a training step never reads its ids back (a recorded step replays
    with new ids: alpha/helios/capture.py)."""
    k = Kernel("embedding_rank", (256, 1, 1),
               [("perm", "i32*"), ("sorted", "i32*"), ("seglen", "u32*"), ("ids", "i32*"),
                ("N", "u32")])
    perm, srt, seglen, ids, N = k.params()
    one, zero = k.const(1, "u32"), k.const(0, "u32")
    with k.loop(k.gid, N, k.nthreads) as i:
        v = ids[i]
        less, same, before = k.var("u32", 0), k.var("u32", 0), k.var("u32", 0)
        with k.loop(0, N) as j:
            w = ids[j]
            eq = w.eq(v)
            less.set(less.get() + k.select(w < v, one, zero))
            same.set(same.get() + k.select(eq, one, zero))
            before.set(before.get() + k.select(eq & (j < i), one, zero))
        place = less.get() + before.get()
        perm[place] = i.bits("i32")
        srt[place] = v
        seglen[place] = k.select(before.get().eq(0), same.get(), zero)
    return k


def embedding_backward_sorted() -> Kernel:
    """dtable[id, c] += sum of dout[perm[p], c] over the id's places p (token order), from
    `embedding_rank`: one invocation per (column, first place of an id)."""
    k = Kernel("embedding_backward", (COL_LOCAL, 1, 1),
               [("dtable", "f32*"), ("dout", "f32*"), ("perm", "i32*"), ("sorted", "i32*"),
                ("seglen", "u32*"), ("N", "u32"), ("C", "u32")])
    dtable, dout, perm, srt, seglen, N, C = k.params()
    c = k.group_id(0) * COL_LOCAL + k.local_id(0)
    with k.if_(c < C):
        with k.loop(k.group_id(1), N, k.num_groups(1)) as g:
            n = seglen[g]
            with k.if_(n > 0):
                acc = k.var("f32", 0.0)
                with k.loop(g, g + n) as p:
                    acc.set(acc.get() + dout[perm[p].bits("u32") * C + c])
                dst = srt[g].bits("u32") * C + c
                dtable[dst] = dtable[dst] + acc.get()
    return k
