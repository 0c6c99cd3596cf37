"""What is specific to the CPU backend (C kernels): results bit-identical for 1, 2 and 3 threads,
the Philox twin bit-exact against alpha.core.rng, the strided copy kernel, the build cache, and
float64 spot checks at sizes past the kernels' chunk and block boundaries (the shared suite,
tests/backend_suite.py, does the broad op-by-op comparison at small sizes)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from alpha.core import rng as pyrng
from alpha.core.errors import CompilerNotFound
from alpha.tensor import build, get_backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def be():
    return get_backend("cpu")


@pytest.fixture
def threads():
    """Restores the pool size after a test that changes it."""
    before = build.num_threads()
    yield build.set_num_threads
    build.set_num_threads(before)


def uniform(be, shape, seed, lo=-1.0, hi=1.0):
    t = be.empty(shape)
    be.rng_uniform(t, pyrng.stream_key(seed, "test"), 0)
    if (lo, hi) != (0.0, 1.0):
        be.binary_scalar(t, "mul", t, hi - lo)
        be.binary_scalar(t, "add", t, lo)
    return t


def ints(be, shape, high, seed):
    n = math.prod(shape)
    values = [(w * high) >> 32 for w in pyrng.words(pyrng.stream_key(seed, "ids"), 0, n)]
    return be.from_array(array("i", values), shape, "i32")


def raw(be, t) -> bytes:
    return be.to_array(t).tobytes()


# ---- determinism: every op, 1 vs 2 vs 3 threads ---------------------------------------------


def run_every_op(be) -> dict:
    """Every non-matmul op on inputs big enough to be split among threads; returns the bytes of
    every output."""
    out = {}
    n = 300_001  # past several 16K pieces, odd
    x, y = uniform(be, (n,), 1), uniform(be, (n,), 2)
    r = be.empty((n,))
    for op in ("add", "mul", "div", "max"):
        be.binary(r, op, x, y)
        out[f"binary {op}"] = raw(be, r)
    for op in ("exp", "tanh", "rsqrt", "square"):
        be.unary(r, op, x)
        out[f"unary {op}"] = raw(be, r)
    be.binary_scalar(r, "pow", x, 3.0)
    out["binary_scalar pow"] = raw(be, r)
    acc = uniform(be, (n,), 3)
    be.axpy(acc, x, 0.37)
    out["axpy"] = raw(be, acc)
    m = uniform(be, (500, 600), 4)
    row = uniform(be, (600,), 5)
    bc = be.empty((500, 600))
    be.binary(bc, "sub", m, row)
    out["binary broadcast"] = raw(be, bc)
    be.where_mask(bc, m, row, -1e9)
    out["where_mask"] = raw(be, bc)
    for axes in ([0], [1], [0, 1]):
        s = be.zeros([k for d, k in enumerate(m.shape) if d not in axes])
        be.sum(s, m, axes)
        out[f"sum {axes}"] = raw(be, s)
    st = uniform(be, (600,), 6)
    be.sum_to(st, m)
    out["sum_to"] = raw(be, st)
    mx = be.empty((500,))
    be.max(mx, m, 1)
    out["max"] = raw(be, mx)
    out["sum_squares"] = repr(be.sum_squares(x)).encode()
    out["sum_squares 2-D"] = repr(be.sum_squares(m.transpose())).encode()
    out["all_finite"] = repr(be.all_finite(x)).encode()

    N, C = 2048, 96
    xs = uniform(be, (N, C), 7, -3, 3)
    sm = be.empty((N, C))
    for fwd, bwd in (("softmax_forward", "softmax_backward"),
                     ("log_softmax_forward", "log_softmax_backward")):
        getattr(be, fwd)(sm, xs)
        out[fwd] = raw(be, sm)
        dx = uniform(be, (N, C), 8)
        getattr(be, bwd)(dx, uniform(be, (N, C), 9), sm)
        out[bwd] = raw(be, dx)

    w, b = uniform(be, (C,), 10, 0.5, 1.5), uniform(be, (C,), 11)
    ln, mean, rstd = be.empty((N, C)), be.empty((N,)), be.empty((N,))
    be.layernorm_forward(ln, mean, rstd, xs, w, b)
    out["layernorm out"] = raw(be, ln) + raw(be, mean) + raw(be, rstd)
    dx, dw, db = uniform(be, (N, C), 12), uniform(be, (C,), 13), uniform(be, (C,), 14)
    be.layernorm_backward(dx, dw, db, uniform(be, (N, C), 15), xs, w, mean, rstd)
    out["layernorm dx"], out["layernorm dw"], out["layernorm db"] = \
        raw(be, dx), raw(be, dw), raw(be, db)

    for act in ("gelu", "relu", "silu"):
        getattr(be, f"{act}_forward")(r, x)
        out[f"{act}_forward"] = raw(be, r)
        d = uniform(be, (n,), 16)
        getattr(be, f"{act}_backward")(d, y, x)
        out[f"{act}_backward"] = raw(be, d)
    sw = be.empty((N, C // 2))
    be.swiglu_forward(sw, xs)
    out["swiglu_forward"] = raw(be, sw)
    dsw = uniform(be, (N, C), 17)
    be.swiglu_backward(dsw, uniform(be, (N, C // 2), 18), xs)
    out["swiglu_backward"] = raw(be, dsw)

    u = uniform(be, (n,), 19, 0.0, 1.0)
    be.dropout_forward(r, x, u, 0.1)
    out["dropout_forward"] = raw(be, r)
    d = uniform(be, (n,), 20)
    be.dropout_backward(d, y, u, 0.1)
    out["dropout_backward"] = raw(be, d)

    V, E = 300, 256
    table = uniform(be, (V, E), 21)
    ids = ints(be, (16, 256), V, 22)  # many repeats
    emb = be.empty((16, 256, E))
    be.embedding_forward(emb, ids, table)
    out["embedding_forward"] = raw(be, emb)
    dtable = uniform(be, (V, E), 23)
    be.embedding_backward(dtable, uniform(be, (16, 256, E), 24), ids)
    out["embedding_backward"] = raw(be, dtable)

    logits = uniform(be, (256, 700), 25, -4, 4)
    targets = ints(be, (256,), 700, 26)
    losses = be.empty((256,))
    be.crossentropy_forward(losses, logits, targets)
    out["crossentropy_forward"] = raw(be, losses)
    dl = uniform(be, (256, 700), 27)
    be.crossentropy_backward(dl, uniform(be, (256,), 28), logits, targets)
    out["crossentropy_backward"] = raw(be, dl)

    B, T, Cq, nh = 2, 50, 64, 4  # T not a multiple of the 4-query blocks
    qkv = uniform(be, (B, T, 3 * Cq), 29, -2, 2)
    att, lse = be.empty((B, T, Cq)), be.empty((B, nh, T))
    be.attention_forward(att, lse, qkv, nh)
    out["attention_forward"] = raw(be, att) + raw(be, lse)
    dqkv = uniform(be, (B, T, 3 * Cq), 30)
    be.attention_backward(dqkv, uniform(be, (B, T, Cq), 31), qkv, att, lse, nh)
    out["attention_backward"] = raw(be, dqkv)
    kv = be.empty((B, 5, Cq))
    be.kv_attention(kv, qkv.narrow(1, 40, 5).narrow(2, 0, Cq), qkv.narrow(2, Cq, Cq),
                    qkv.narrow(2, 2 * Cq, Cq), nh, 40)
    out["kv_attention"] = raw(be, kv)

    p, g, mm, vv = uniform(be, (n,), 32), uniform(be, (n,), 33), be.zeros((n,)), be.zeros((n,))
    for step in (1, 2):
        be.adamw_step(p, g, mm, vv, lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8,
                      weight_decay=0.1, step=step, grad_scale=0.5)
    out["adamw"] = raw(be, p) + raw(be, mm) + raw(be, vv)

    nrm = be.empty((n,))
    be.rng_normal(nrm, (5, 6), 7, 0.0, 0.02)
    out["rng_normal"] = raw(be, nrm)
    big = be.empty((3, 400, 500))
    be.copy(big, uniform(be, (500, 400, 3), 34).permute(2, 1, 0))
    out["strided copy"] = raw(be, big)
    return out


def test_every_op_is_bit_identical_for_1_2_3_threads(be, threads):
    results = []
    for n in (1, 2, 3):
        threads(n)
        results.append(run_every_op(be))
    for name in results[0]:
        assert results[1][name] == results[0][name], f"{name}: 2 threads differ from 1"
        assert results[2][name] == results[0][name], f"{name}: 3 threads differ from 1"


# ---- RNG: bit-exact twin of alpha.core.rng ----------------------------------------------------


@pytest.mark.parametrize("n,position", [(1, 0), (5, 3), (64, 1), (1000, 4093),
                                        (37, 2 ** 34 + 2), (70_001, 11)])
def test_rng_matches_python_reference(be, n, position):
    key = pyrng.stream_key(42, "dropout")
    want_words = pyrng.words(key, position, n)
    u = be.empty((n,))
    be.rng_uniform(u, key, position)
    assert be.to_array(u) == array("f", [pyrng.to_uniform(w) for w in want_words])
    for mean, std in [(0.0, 1.0), (0.25, 0.02)]:
        z = be.empty((n,))
        be.rng_normal(z, key, position, mean, std)
        ws = pyrng.words(key, position, 2 * ((n + 1) // 2))
        want = array("f", [mean + std * v for v in pyrng.normals_from_words(ws, n)])
        assert be.to_array(z) == want, f"rng_normal n={n} position={position} not bit-exact"


def test_rng_stream_positions_continue(be):
    """Two fills that continue a stream equal one fill of the whole length."""
    key = pyrng.stream_key(1, "init")
    whole, a, b = be.empty((1001,)), be.empty((500,)), be.empty((501,))
    be.rng_uniform(whole, key, 7)
    be.rng_uniform(a, key, 7)
    be.rng_uniform(b, key, 507)
    assert be.to_array(whole) == be.to_array(a) + be.to_array(b)


# ---- strided copy ----------------------------------------------------------------------------


def _py_permute_copy(values, shape, perm):
    """Row-major values of x.permute(perm) for x of `shape`, computed in Python."""
    strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    pshape = [shape[p] for p in perm]
    pstrides = [strides[p] for p in perm]
    pos = [0]
    for n, s in zip(pshape, pstrides):
        pos = [q + i * s for q in pos for i in range(n)]
    return [values[q] for q in pos]


@pytest.mark.parametrize("shape,perm", [
    ((7,), (0,)), ((3, 5), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((2, 1, 3, 4), (3, 1, 0, 2)),
    ((2, 3, 2, 3, 2), (4, 3, 2, 1, 0)), ((2, 2, 2, 2, 2, 2, 2, 3), (7, 0, 6, 1, 5, 2, 4, 3)),
])
@pytest.mark.parametrize("dtype", ["f32", "f64", "i32", "u16"])
def test_strided_copy_permutations(be, shape, perm, dtype):
    n = math.prod(shape)
    values = list(range(n))
    x = be.from_array(array(be_code(dtype), values), shape, dtype)
    out = be.empty([shape[p] for p in perm], dtype)
    be.copy(out, x.permute(perm))
    assert list(be.to_array(out)) == _py_permute_copy(values, shape, perm)
    # and back: a strided destination
    back = be.zeros(shape, dtype)
    be.copy(back.permute(perm), out)
    assert list(be.to_array(back)) == values


def be_code(dtype):
    return {"f32": "f", "f64": "d", "i32": "i", "u16": "H", "u32": "I"}[dtype]


def test_copy_into_kv_cache_slice_and_stepped_views(be):
    cache = be.zeros((2, 10, 8))
    new = be.from_array(array("f", range(2 * 3 * 8)), (2, 3, 8))
    be.copy(cache.narrow(1, 4, 3), new)
    got = be.to_array(cache)
    for b in range(2):
        for t in range(10):
            for c in range(8):
                want = float((b * 3 + t - 4) * 8 + c) if 4 <= t < 7 else 0.0
                assert got[(b * 10 + t) * 8 + c] == want
    x = be.from_array(array("f", range(40)), (8, 5))
    stepped = be.empty((4, 2))
    be.copy(stepped, x[::2, 1:5:2])
    assert list(be.to_array(stepped)) == [float(r * 5 + c) for r in range(0, 8, 2)
                                          for c in (1, 3)]


def test_large_copy_spans_several_pieces(be):
    n = 200_003
    x = be.from_array(array("f", range(n)), (n,))
    y = be.empty((n,))
    be.copy(y, x)
    assert be.to_array(y) == be.to_array(x)
    t = be.empty((n // 7 + 1, 7))  # different shape via a view of the same data
    assert t.numel >= n


# ---- host transfers ------------------------------------------------------------------------------


def test_from_array_accepts_every_host_form(be):
    want = array("f", [1.5, -2.0, 3.25, 0.0])
    for data in (want, list(want), want.tobytes(), bytearray(want.tobytes()), memoryview(want),
                 memoryview(want.tobytes()), array("d", want)):
        t = be.from_array(data, (2, 2))
        assert be.to_array(t) == want, type(data)
    ids = be.from_array([3, 1.9, -2], dtype="i32")  # floats truncate like int()
    assert list(be.to_array(ids)) == [3, 1, -2]
    tok = be.from_array(array("H", [0, 65535, 7]), dtype="u16")
    assert be.to_array(tok) == array("H", [0, 65535, 7])
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        be.from_array(want, (3, 2))


def test_to_array_and_fill_honour_views(be):
    x = be.from_array(array("i", range(12)), (3, 4), "i32")
    assert list(be.to_array(x.transpose())) == [r * 4 + c for c in range(4) for r in range(3)]
    be.fill(x[:, 1:3], 2.9)  # an int tensor truncates the value
    assert list(be.to_array(x)) == [0, 2, 2, 3, 4, 2, 2, 7, 8, 2, 2, 11]
    d = be.zeros((3, 4), "f64")
    be.cast(d.transpose(), be.from_array(array("f", range(12)), (4, 3)))
    assert list(be.to_array(d)) == [float(c * 3 + r) for r in range(3) for c in range(4)]


# ---- float64 spot checks past block boundaries -------------------------------------------------


def _close(got, want, rtol=1e-4, atol=1e-5):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= atol + rtol * abs(w), f"element {i}: got {g}, want {w}"


def test_elementwise_across_pieces(be):
    n = 40_000  # crosses the 16K-element pieces, leaves a tail
    x, y = uniform(be, (n,), 40, -3, 3), uniform(be, (n,), 41, 0.5, 2)
    xs, ys = be.to_array(x), be.to_array(y)
    r = be.empty((n,))
    be.binary(r, "div", x, y)
    _close(be.to_array(r), [a / b for a, b in zip(xs, ys)])
    be.unary(r, "exp", x)
    _close(be.to_array(r), [math.exp(a) for a in xs])
    be.gelu_forward(r, x)
    k = math.sqrt(2 / math.pi)
    _close(be.to_array(r), [0.5 * a * (1 + math.tanh(k * (a + 0.044715 * a ** 3))) for a in xs])


def test_exp_edge_values(be):
    vals = [0.0, -0.0, 1e-30, -1e-30, 88.0, 88.7, 89.0, 100.0, -87.0, -87.5, -100.0, -104.0,
            -110.0, float("inf"), float("-inf"), float("nan"), 1.0, -1.0, 0.5, 20.0]
    vals = list(array("f", vals))  # what the kernel sees
    x = be.from_array(array("f", vals))
    r = be.empty((len(vals),))
    be.unary(r, "exp", x)
    got = be.to_array(r)
    def exp64(v):
        return math.inf if v > 709 else math.exp(v)  # nan and -inf pass through math.exp

    want = array("f", [exp64(v) for v in vals])
    for v, g, w in zip(vals, got, want):
        if math.isnan(w):
            assert math.isnan(g)
        elif w == 0 or math.isinf(w):
            assert g == w or abs(g) < 1e-37, (v, g, w)
        else:
            assert abs(g - w) <= 3e-7 * abs(w) + 1e-44, (v, g, w)


def test_reductions_column_and_row_strategies(be):
    R, C = 70, 700  # more columns than one column task holds
    x = uniform(be, (R, C), 42)
    xs = be.to_array(x)
    s0, s1 = be.empty((C,)), be.empty((R,))
    be.sum(s0, x, [0])
    be.sum(s1, x, [1])
    _close(be.to_array(s0), [math.fsum(xs[r * C + c] for r in range(R)) for c in range(C)])
    _close(be.to_array(s1), [math.fsum(xs[r * C:(r + 1) * C]) for r in range(R)])
    n = 100_000  # several sum_squares blocks
    y = uniform(be, (n,), 43)
    ys = be.to_array(y)
    assert abs(be.sum_squares(y) - math.fsum(v * v for v in ys)) < 1e-9 * n


def test_layernorm_backward_many_row_blocks(be):
    N, C = 100, 40  # several 32-row blocks, the last one partial
    x, w, b = uniform(be, (N, C), 44, -2, 2), uniform(be, (C,), 45), uniform(be, (C,), 46)
    out, mean, rstd = be.empty((N, C)), be.empty((N,)), be.empty((N,))
    be.layernorm_forward(out, mean, rstd, x, w, b)
    dout = uniform(be, (N, C), 47)
    dx, dw, db = be.zeros((N, C)), be.zeros((C,)), be.zeros((C,))
    be.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)
    xs, ws, gs = be.to_array(x), be.to_array(w), be.to_array(dout)
    want_dw, want_db, want_dx = [0.0] * C, [0.0] * C, []
    for r in range(N):
        row, g = xs[r * C:(r + 1) * C], gs[r * C:(r + 1) * C]
        mu = sum(row) / C
        rs = 1 / math.sqrt(sum((v - mu) ** 2 for v in row) / C + 1e-5)
        norm = [(v - mu) * rs for v in row]
        dn = [g[i] * ws[i] for i in range(C)]
        m1, m2 = sum(dn) / C, sum(a * c for a, c in zip(dn, norm)) / C
        want_dx += [(dn[i] - m1 - norm[i] * m2) * rs for i in range(C)]
        for i in range(C):
            want_dw[i] += g[i] * norm[i]
            want_db[i] += g[i]
    _close(be.to_array(dx), want_dx, atol=1e-4)
    _close(be.to_array(dw), want_dw, atol=1e-4)
    _close(be.to_array(db), want_db, atol=1e-4)


def test_attention_forward_longer_sequence(be):
    B, T, C, nh = 1, 40, 32, 2  # T past the 4-wide key unrolling and the 8 lanes
    hs = C // nh
    qkv = uniform(be, (B, T, 3 * C), 48, -1.5, 1.5)
    out, lse = be.empty((B, T, C)), be.empty((B, nh, T))
    be.attention_forward(out, lse, qkv, nh)
    X = be.to_array(qkv)
    want, want_lse = [0.0] * (T * C), [0.0] * (nh * T)
    for h in range(nh):
        for t in range(T):
            q = X[t * 3 * C + h * hs:t * 3 * C + (h + 1) * hs]
            sc = [sum(q[d] * X[s * 3 * C + C + h * hs + d] for d in range(hs)) / math.sqrt(hs)
                  for s in range(t + 1)]
            m = max(sc)
            tot = math.fsum(math.exp(v - m) for v in sc)
            want_lse[h * T + t] = m + math.log(tot)
            for s, v in enumerate(sc):
                p = math.exp(v - m) / tot
                for d in range(hs):
                    want[t * C + h * hs + d] += p * X[s * 3 * C + 2 * C + h * hs + d]
    _close(be.to_array(out), want)
    _close(be.to_array(lse), want_lse)


# ---- host memory -------------------------------------------------------------------------------


def _vm_flags(addr: int) -> list[str] | None:
    """The VmFlags of the mapping holding `addr` (/proc/self/smaps), None if not found."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return None


def test_big_buffers_start_zeroed_aligned_and_advised_onto_huge_pages(be):
    """A zeros buffer of HUGE_MIN bytes or more is its own 2 MiB-aligned mapping, zeroed and
    writable like any other, advised onto transparent huge pages (VmFlags "hg": whether the kernel
    then finds free huge pages is its business); an empty one of that size stays as it was."""
    from alpha.tensor.cpu_storage import HUGE, HUGE_MIN, data_ptr

    n = HUGE_MIN // 4 + 3
    t = be.zeros((n,), "f32")
    assert data_ptr(t) % HUGE == 0
    host = be.to_array(t)
    assert len(host) == n and not any(host[::997]) and host[-1] == 0.0
    be.fill(t, 1.5)
    host = be.to_array(t)
    assert host[0] == host[n // 2] == host[-1] == 1.5
    if not os.path.exists("/proc/self/smaps") or \
            not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("no /proc/self/smaps or no transparent huge pages here")
    assert "hg" in (_vm_flags(data_ptr(t)) or [])
    plain = be.empty((n,), "f32")
    assert "hg" not in (_vm_flags(data_ptr(plain)) or [])


# ---- the build cache ---------------------------------------------------------------------------


def test_two_processes_build_into_an_empty_cache(tmp_path):
    env = dict(os.environ, ALPHA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    code = ("from alpha.tensor import build; import ctypes; p = build.build(); "
            "ctypes.CDLL(str(p)); print(p)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    paths = [out.strip() for out, _ in outs]
    assert paths[0] == paths[1]
    assert Path(paths[0]).exists()
    leftovers = [f.name for f in (tmp_path / "cache").iterdir() if f.name.endswith(".tmp")]
    assert leftovers == []


def test_missing_compiler_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent")
    monkeypatch.setenv("ALPHA_CACHE_DIR", str(tmp_path))
    with pytest.raises(CompilerNotFound) as e:
        build.build()
    assert "gcc" in str(e.value) and "install" in str(e.value)
