"""The kernels of a replayed decode step (alpha/helios/replay.py): one new token for each of M
sequences, every per-token value read from a small argument buffer the host writes before each
submit, so the command buffer is recorded once and replayed for every token.

The argument buffer `args` (u32): ids [0, M), cache slots [M, 2M), positions [2M, 3M) (a row's
position is its sequence's cache length before this token).

Per layer three kinds of dispatch, five in all:
  - `decode_gemv`: out (M, N) = epilogue(prologue(a) (M, K) @ w (K, N) + bias): the prologue is
    the block's norm (layernorm / rmsnorm of the row, computed by every workgroup for its rows:
    no separate norm dispatch), the epilogue an activation, the residual add (out += ...) or
    the logit soft-cap. K is cut into KS slices summed in a fixed order: a row's bits do not
    depend on M or on the other rows (batch invariance, as `matmul_rows` promises).
  - `decode_attention`: one workgroup per (head, row): writes the row's new k and v into its
    cache slot and attends over positions 0..pos (the loop runs to the row's own length, read
    from `args`; the new key is read from qkv, the older ones from the cache).
  - `decode_embed`: x = wte[id] (+ wpe[pos]).
"""

from __future__ import annotations

from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import elementwise as kel
from alpha.spirv.dsl import SCOPE_SUBGROUP, Kernel

NC = 32  # output columns per workgroup (one per invocation of a slice: coalesced weight rows)
MR = 4  # rows per workgroup: each weight element loaded once is used MR times
NORM_LOCAL = 128  # invocations that compute a row's norm statistics (the rest add zeros)
UNROLL = 8  # k steps per round of a product's inner loop
ATT_LOCAL = 256
NORMS = (None, "layernorm", "layernorm_nobias", "rmsnorm")
EPILOGUES = (None, "residual", "softcap", "gelu", "relu", "relu2", "silu", "swiglu")

GEMV_PARAMS = [("out", "f32*"), ("a", "f32*"), ("w", "f32*"), ("bias", "f32*"), ("nw", "f32*"),
               ("nb", "f32*"), ("M", "u32"), ("K", "u32"), ("N", "u32"), ("eps", "f32"),
               ("cap", "f32")]


def gemv_slices(K: int) -> int:
    """How many K slices (each summed by its own invocations, then added in order): enough
    loads in flight for a few rows, at most 16 (512 invocations)."""
    return 16 if K >= 1024 else 8 if K >= 256 else 4


def _activation(k, name: str, y):
    if name == "gelu":
        return kel.gelu_forward(k, y)
    if name == "relu":
        return k.select(y > 0.0, y, 0.0)
    if name == "relu2":
        return k.select(y > 0.0, y * y, 0.0)
    return kel.silu_forward(k, y)


def stage_class(K: int) -> int:
    """The staged-row capacity (elements) of a norm prologue for K: K rounded up to 128."""
    return (K + 127) // 128 * 128


def gemv_shared_bytes(KS: int, staged: int, pairs: int = 1) -> int:
    """Shared memory of a `decode_gemv`: the partial sums (`pairs` = 2 with swiglu), the
    reduction scratch and the MR normalised rows (`staged` elements each, 0 when not staged)."""
    return 4 * (pairs * KS * MR * NC + NC * KS + MR * staged)


def _reduce_rows(k, vals, scratch):
    """The workgroup sums of MR values at once: a subgroup reduction of each, one value per
    subgroup and row through shared memory, one pair of barriers for all (fixed order)."""
    k.m.capability("GroupNonUniform", "GroupNonUniformArithmetic")
    parts = [k.op("OpGroupNonUniformFAdd", "f32", k.const(SCOPE_SUBGROUP, "u32").id, 0, v.id)
             for v in vals]
    lane = k._builtin_scalar("SubgroupLocalInvocationId")
    sg = k._builtin_scalar("SubgroupId")
    nsg = k._builtin_scalar("NumSubgroups")
    with k.if_(lane.eq(0)):
        for r, part in enumerate(parts):
            scratch[r * nsg + sg] = part
    k.barrier()
    out = []
    for r in range(len(vals)):
        acc = k.var("f32", scratch[r * nsg])
        with k.loop(1, nsg) as i:
            acc.set(acc.get() + scratch[r * nsg + i])
        out.append(acc.get())
    k.barrier()
    return out


def decode_gemv(KS: int, norm: str | None, epilogue: str | None, has_bias: bool,
                staged: int = 0) -> Kernel:
    """Grid (ceil(N / NC), ceil(M / MR)); NC * KS invocations: column c = lid % NC of the
    workgroup's NC, K slice s = lid / NC, UNROLL loads in flight per invocation. With a norm
    and `staged` >= K (`stage_class`), the MR rows are normalised once into shared memory
    (statistics of all rows in one reduction); without, each element is normalised as it is
    loaded. The "swiglu" epilogue makes two products per output, w (K, 2N) as [gate | up]:
    out = silu(a @ w_gate + b_gate) * (a @ w_up + b_up). Unused pointers may be any valid
    address."""
    if norm not in NORMS or epilogue not in EPILOGUES:
        raise ValueError(f"decode_gemv: norm {norm!r}, epilogue {epilogue!r}")
    local = NC * KS
    staged = staged if norm is not None else 0
    name = (f"decode_gemv_{norm or 'plain'}_{epilogue or 'none'}{'_bias' if has_bias else ''}"
            f"{'_staged' if staged else ''}")
    k = Kernel(name, (local, 1, 1), GEMV_PARAMS)
    out, a, w, bias, nw, nb, M, K, N, eps, cap = k.params()
    lid = k.local_id(0)
    c, s = lid % NC, lid / NC
    n0 = k.group_id(0) * NC
    col = k.umin(n0 + c, N - 1)
    m0 = k.group_id(1) * MR
    rows = [k.umin(m0 + r, M - 1) * K for r in range(MR)]  # row bases (clamped: no stores)
    red = k.shared("f32", local)
    pairs = 2 if epilogue == "swiglu" else 1
    ldw = N * 2 if pairs == 2 else N  # the weight's row length
    part = k.shared("f32", pairs * KS * MR * NC)
    kf = K.to("f32")
    if staged:
        A = k.shared("f32", MR * staged)
        with k.loop(lid, K, local) as j:
            for r in range(MR):
                A[r * staged + j] = a[rows[r] + j]
        k.barrier()

        def row_sums(f):
            accs = [k.var("f32", 0.0) for _ in range(MR)]
            with k.loop(lid, K, local) as j:
                for r in range(MR):
                    accs[r].set(accs[r].get() + f(r, A[r * staged + j]))
            return _reduce_rows(k, [v.get() for v in accs], red)
        if norm == "rmsnorm":
            mus = [None] * MR
            ms = row_sums(lambda r, x: x * x)
        else:
            mus = [t / kf for t in row_sums(lambda r, x: x)]
            ms = row_sums(lambda r, x: (x - mus[r]) * (x - mus[r]))
        rss = [1.0 / k.sqrt(v / kf + eps) for v in ms]
        with k.loop(lid, K, local) as j:
            g = nw[j]
            b = nb[j] if norm == "layernorm" else None
            for r in range(MR):
                x = A[r * staged + j]
                y = x * rss[r] * g if mus[r] is None else (x - mus[r]) * rss[r] * g
                A[r * staged + j] = y + b if b is not None else y
        k.barrier()
    stats = []  # per row, unstaged: (mean or None, 1 / rms or 1 / std)
    if norm is not None and not staged:
        # the first NORM_LOCAL invocations sum as the row kernels do; the others add zeros
        end = k.select(lid < NORM_LOCAL, K, 0)
        for base in rows:
            def row_sum(f, base=base):
                acc = k.var("f32", 0.0)
                with k.loop(lid, end, NORM_LOCAL) as j:
                    acc.set(acc.get() + f(base + j))
                return k.reduce_sum(acc.get(), red)
            if norm == "rmsnorm":
                ms = row_sum(lambda i: a[i] * a[i]) / kf
                stats.append((None, 1.0 / k.sqrt(ms + eps)))
            else:
                mu = row_sum(lambda i: a[i]) / kf
                var = row_sum(lambda i: (a[i] - mu) * (a[i] - mu)) / kf
                stats.append((mu, 1.0 / k.sqrt(var + eps)))

    def load_a(r, j):
        if staged:
            return A[r * staged + j]
        x = a[rows[r] + j]
        if norm == "rmsnorm":
            return x * stats[r][1] * nw[j]
        if norm is not None:
            x = (x - stats[r][0]) * stats[r][1] * nw[j]
            return x + nb[j] if norm == "layernorm" else x
        return x

    # slice s sums k in [k0, k1), UNROLL at a time: all loads of a round are issued before its
    # multiply-adds (a loop of one load each waited out the memory latency every iteration)
    span = (K + (KS * UNROLL - 1)) / (KS * UNROLL) * UNROLL
    k0 = s * span
    k1 = k.umin(K, k0 + span)
    accs = [[k.var("f32", 0.0) for _ in range(MR)] for _ in range(pairs)]
    with k.loop(k0, k1, UNROLL) as j0:
        ws, xs = [], []
        for u in range(UNROLL):
            j = k.umin(j0 + u, K - 1)
            ok = j0 + u < k1
            ws.append([k.select(ok, w[j * ldw + (col + N if h else col)], 0.0)
                       for h in range(pairs)])
            xs.append([load_a(r, j) for r in range(MR)])
        for u in range(UNROLL):
            for h in range(pairs):
                for r in range(MR):
                    accs[h][r].set(accs[h][r].get() + xs[u][r] * ws[u][h])
    for h in range(pairs):
        for r in range(MR):
            part[((h * KS + s) * MR + r) * NC + c] = accs[h][r].get()
    k.barrier()
    with k.loop(lid, MR * NC, local) as i:
        r, cc = i / NC, i % NC
        n, m = n0 + cc, m0 + r
        ys = []
        for h in range(pairs):
            tot = k.var("f32", part[(h * KS * MR + r) * NC + cc])
            for sl in range(1, KS):
                tot.set(tot.get() + part[((h * KS + sl) * MR + r) * NC + cc])
            ys.append(tot)
        with k.if_((n < N) & (m < M)):
            y = ys[0].get()
            if has_bias:
                y = y + bias[n]
            if epilogue == "swiglu":
                up = ys[1].get()
                if has_bias:
                    up = up + bias[n + N]
                y = kel.silu_forward(k, y) * up
            o = m * N + n
            if epilogue == "residual":
                y = out[o] + y
            elif epilogue == "softcap":
                y = kel.softcap_forward(k, y, cap)
            elif epilogue not in (None, "swiglu"):
                y = _activation(k, epilogue, y)
            out[o] = y
    return k


def _turn(k, x, cs, sn, half):
    """Rope's half-split rotation of a head's values x (a list) by tables cs, sn (lists)."""
    return ([x[i] * cs[i] - x[i + half] * sn[i] for i in range(half)]
            + [x[i + half] * cs[i] + x[i] * sn[i] for i in range(half)])


def decode_attention(max_keys: int, HS: int, softcap: float = 0.0,
                     rope: bool = False) -> Kernel:
    """Grid (H, M), ATT_LOCAL invocations; head size HS a compile-time constant (the dot
    products unrolled: every load of a row in flight at once). qkv (M, 3C) [q | k | v]; cache
    (S, Tmax, 2C) rows [k | v], `sstride` = Tmax * 2C; out (M, C). Row m writes its new k, v at
    (slot, pos) and attends over 0..pos: scores in shared memory (max_keys >= Tmax), one key
    per invocation; the weighted sum of values by ATT_LOCAL / HS groups of HS lanes, each over
    every G-th key, UNROLL keys a round, the groups' sums added in order. With `rope`, q and
    the new k are turned by the row's position first (tables cos, sin (L, HS/2), as
    `rope_forward`), so the cache holds turned keys like the op-by-op path's."""
    if HS > ATT_LOCAL:
        raise ValueError(f"decode_attention: head size {HS} > {ATT_LOCAL}")
    G = ATT_LOCAL // HS
    k = Kernel(f"decode_attention{HS}" + katt._suffix(softcap) + ("_rope" if rope else ""),
               (ATT_LOCAL, 1, 1),
               [("out", "f32*"), ("qkv", "f32*"), ("cache", "f32*"), ("args", "u32*"),
                ("cos", "f32*"), ("sin", "f32*"), ("M", "u32"), ("C", "u32"),
                ("sstride", "u32"), ("scale", "f32")])
    out, qkv, cache, args, cos, sin, M, C, sstride, scale = k.params()
    S = k.shared("f32", max_keys)
    sh = k.shared("f32", ATT_LOCAL)
    sums = k.shared("f32", G * HS)
    h, m = k.group_id(0), k.group_id(1)
    lid = k.local_id(0)
    slot, pos = args[M + m], args[2 * M + m]
    C2 = C * 2
    cb = slot * sstride + h * HS  # key j of this head at cb + j * C2, its value C further
    qb = m * (3 * C) + h * HS
    nk = qb + C  # the new key (and its value C further) in qkv
    half = HS // 2
    q = [qkv[qb + d] for d in range(HS)]
    if rope:
        cs = [cos[pos * half + i] for i in range(half)]
        sn = [sin[pos * half + i] for i in range(half)]
        q = _turn(k, q, cs, sn, half)
    with k.if_(lid < HS):
        key = qkv[nk + lid]
        if rope:  # this lane's element of the turned key
            lo = lid < half
            pair = k.select(lo, lid, lid - half)
            c, sv = cos[pos * half + pair], sin[pos * half + pair]
            other = qkv[nk + k.select(lo, lid + half, lid - half)]
            key = k.select(lo, key * c - other * sv, key * c + other * sv)
        cache[cb + pos * C2 + lid] = key
        cache[cb + pos * C2 + C + lid] = qkv[nk + C + lid]

    def score(ptr, base, turn=False):
        keys = [ptr[base + d] for d in range(HS)]
        if turn:
            keys = _turn(k, keys, cs, sn, half)
        acc = q[0] * keys[0]
        for d in range(1, HS):
            acc = acc + q[d] * keys[d]
        return katt._cap(k, acc * scale, softcap)
    mx = k.var("f32", katt.NEG_INF)
    with k.loop(lid, pos, ATT_LOCAL) as j:  # the cached keys
        sc = score(cache, cb + j * C2)
        S[j] = sc
        mx.set(k.fmax(mx.get(), sc))
    with k.if_(lid.eq(pos % ATT_LOCAL)):  # the new key, from qkv
        sc = score(qkv, nk, rope)
        S[pos] = sc
        mx.set(k.fmax(mx.get(), sc))
    mxr = k.reduce_max(mx.get(), sh)
    sm = k.var("f32", 0.0)
    with k.loop(lid, pos + 1, ATT_LOCAL) as j:
        p = k.exp(S[j] - mxr)
        S[j] = p
        sm.set(sm.get() + p)
    inv = 1.0 / k.reduce_sum(sm.get(), sh)  # (its barriers publish S)
    d, g = lid % HS, lid / HS
    with k.if_(g < G):
        acc = k.var("f32", 0.0)
        with k.loop(g * UNROLL, pos, G * UNROLL) as j0:
            ps, vs = [], []
            for u in range(UNROLL):
                j = k.umin(j0 + u, pos - 1)  # pos >= 1 here
                ps.append(k.select(j0 + u < pos, S[j], 0.0))
                vs.append(cache[cb + j * C2 + C + d])
            for u in range(UNROLL):
                acc.set(acc.get() + ps[u] * vs[u])
        sums[g * HS + d] = acc.get()
    k.barrier()
    with k.if_(lid < HS):
        tot = k.var("f32", sums[lid])
        for gg in range(1, G):
            tot.set(tot.get() + sums[gg * HS + lid])
        tot.set(tot.get() + S[pos] * qkv[nk + C + lid])
        out[m * C + h * HS + lid] = tot.get() * inv
    return k


def decode_embed(learned_pos: bool) -> Kernel:
    """x (M, C) = wte[ids[m]] (+ wpe[pos[m]]), one invocation per element."""
    k = Kernel("decode_embed" + ("_pos" if learned_pos else ""), (256, 1, 1),
               [("x", "f32*"), ("wte", "f32*"), ("wpe", "f32*"), ("args", "u32*"),
                ("M", "u32"), ("C", "u32")])
    x, wte, wpe, args, M, C = k.params()
    with k.loop(k.gid, M * C, k.nthreads) as i:
        m = i / C
        c = i - m * C
        v = wte[args[m] * C + c]
        if learned_pos:
            v = v + wpe[args[2 * M + m] * C + c]
        x[i] = v
    return k


ARGMAX_LOCAL = 256


def argmax_rows() -> Kernel:
    """ids[r] = the index of row r's largest value, the lowest among equal ones (x (R, N));
    one workgroup per row (grid-stride over rows), a fixed-order tree in shared memory."""
    k = Kernel("argmax_rows", (ARGMAX_LOCAL, 1, 1),
               [("ids", "u32*"), ("x", "f32*"), ("R", "u32"), ("N", "u32")])
    ids, x, R, N = k.params()
    vals = k.shared("f32", ARGMAX_LOCAL)
    idx = k.shared("u32", ARGMAX_LOCAL)
    lid = k.local_id(0)
    with k.loop(k.group_id(0), R, k.num_groups(0)) as r:
        base = r * N
        best = k.var("f32", katt.NEG_INF)
        at = k.var("u32", 0xFFFFFFFF)
        with k.loop(lid, N, ARGMAX_LOCAL) as j:  # ascending j: only a larger value wins
            v = x[base + j]
            with k.if_(v > best.get()):
                best.set(v)
                at.set(j)
        vals[lid] = best.get()
        idx[lid] = at.get()
        s = ARGMAX_LOCAL // 2
        while s >= 1:
            k.barrier()
            with k.if_(lid < s):
                v, i = vals[lid + s], idx[lid + s]
                mine, mi = vals[lid], idx[lid]
                with k.if_((v > mine) | (v.eq(mine) & (i < mi))):
                    vals[lid] = v
                    idx[lid] = i
            s //= 2
        k.barrier()
        with k.if_(lid.eq(0)):
            found = idx[0]
            ids[r] = k.select(found < N, found, 0)  # a row of NaNs or -infs: 0
        k.barrier()
    return k
