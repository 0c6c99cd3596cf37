"""The attention row kernels that write the tensor-core matmuls' 16-bit inputs
(`alpha/helios/kernels/attn_probs.py`), on lavapipe: the fp32 variants against a float64
reference of causal softmax, exp(S - lse) and the softmax gradient, and the bf16/fp16 variants
bit for bit against round-to-nearest-even of the fp32 variants' values (the same arithmetic,
rounded once). The whole mixed-precision attention is checked against the fp32 kernels in
test_helios_coopmat.py; on tensor cores by `bench/gpu_train.py --check`."""

from __future__ import annotations

import json

from test_helios import _py

CODE = """
    import json, math, random, struct
    from array import array
    from alpha.tensor import get_backend
    from alpha.helios.kernels import attn_probs as kap
    be = get_backend("helios")
    rt = be.rt
    rng = random.Random(7)
    T, R = 6, 18  # 3 (sequence, head) pairs of 6 queries
    s = [rng.uniform(-3, 3) for _ in range(R * T)]
    dp = [rng.uniform(-1, 1) for _ in range(R * T)]
    S = be.from_array(array("f", s), (R, T))
    dP = be.from_array(array("f", dp), (R, T))

    def run(builder, out_t, ins):
        out = rt.new((R, T), "f32" if out_t == "f32" else "u16")
        rt.launch((builder.__name__, out_t), lambda: builder(out_t),
                  [rt.addr(t) for t in [out] + ins] + [R, T], (R, 1, 1))
        return list(be.to_array(out))

    lse = be.empty((R,))
    res = {}
    for t in ("f32", "bf16", "f16"):
        res["softmax", t] = run(kap.causal_softmax_probs, t, [S, lse])
        res["probs", t] = run(kap.causal_probs, t, [S, lse])
        res["grad", t] = run(kap.causal_softmax_grad, t, [S, dP, lse])
    # float64 reference
    ref_p, ref_g, ref_lse = [], [], []
    for r in range(R):
        n = r % T + 1
        row = s[r * T:r * T + n]
        m = max(row)
        z = sum(math.exp(x - m) for x in row)
        p = [math.exp(x - m) / z for x in row] + [0.0] * (T - n)
        d = sum(p[j] * dp[r * T + j] for j in range(n))
        ref_p += p
        ref_g += [p[j] * (dp[r * T + j] - d) if j < n else 0.0 for j in range(T)]
        ref_lse.append(m + math.log(z))

    def bf16(x):
        b = struct.unpack("<I", struct.pack("<f", x))[0]
        return (b + 0x7FFF + ((b >> 16) & 1)) >> 16

    def f16(x):
        return struct.unpack("<H", struct.pack("<e", x))[0]  # Python rounds to nearest even

    out = {"err": {}, "bits": {}}
    lse_got = list(be.to_array(lse))
    out["err"]["lse"] = max(abs(a - b) for a, b in zip(lse_got, ref_lse))
    for kind, ref in (("softmax", ref_p), ("probs", ref_p), ("grad", ref_g)):
        got = res[kind, "f32"]
        out["err"][kind] = max(abs(a - b) for a, b in zip(got, ref))
        for t, rnd in (("bf16", bf16), ("f16", f16)):
            want = [rnd(x) for x in got]
            out["bits"][kind + "_" + t] = sum(a != b for a, b in zip(res[kind, t], want))
    print("RESULT", json.dumps(out))
"""


def test_attention_row_kernels_match_float64_and_round_once():
    r = _py(CODE)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert all(e < 1e-5 for e in res["err"].values()), res["err"]
    assert all(n == 0 for n in res["bits"].values()), res["bits"]


def test_pack_heads_is_a_rounded_head_major_copy():
    r = _py("""
        import random, struct
        from array import array
        from alpha.tensor import get_backend
        from alpha.helios.kernels import attn_probs as kap
        be = get_backend("helios")
        rt = be.rt
        rng = random.Random(3)
        B, T, H, hs, parts = 2, 5, 3, 4, 3
        C, W = H * hs, parts * H * hs
        xs = [rng.uniform(-4, 4) for _ in range(B * T * W)]
        x = be.from_array(array("f", xs), (B, T, W))
        bad = 0
        for p in range(parts):
            out = rt.new((B * H, T, hs), "u16")
            n = B * H * T * hs // 2
            rt.launch(("pack_heads", "bf16"), lambda: kap.pack_heads("bf16"),
                      [rt.addr(out), rt.addr(x) + 4 * p * C, n, T, H, hs, W], (1, 1, 1))
            got = list(be.to_array(out))
            for b in range(B):
                for h in range(H):
                    for t in range(T):
                        for d in range(hs):
                            v = xs[(b * T + t) * W + p * C + h * hs + d]
                            u = struct.unpack("<I", struct.pack("<f", v))[0]
                            want = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
                            bad += got[((b * H + h) * T + t) * hs + d] != want
        print("BAD", bad)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split("BAD")[-1].strip() == "0", r.stdout[-500:]


def test_a_packing_is_reused_only_while_nothing_wrote_gpu_memory():
    """ops_matmul._packed's memo (tensor cores pack fp32 operands to bf16 before a product): the
    same view again gives the same packing; a write to the device (a fill) makes a new one with
    the new values."""
    r = _py("""
        from array import array
        from alpha.tensor import get_backend
        lp = get_backend("helios").with_matmul_dtype("bf16")
        t = lp.from_array(array("f", [0.5 * i for i in range(24)]), (4, 6))
        u1 = lp._packed(t, "bf16")
        u2 = lp._packed(t, "bf16")
        u3 = lp._packed(t.transpose(0, 1), "bf16")
        lp.fill(t, 1.0)
        u4 = lp._packed(t, "bf16")
        print("SAME", u1 is u2, u3 is not u1, u4 is not u1)
        print("BITS", sorted(set(lp.to_array(u4))), list(lp.to_array(u1))[:3])
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SAME True True True" in r.stdout, r.stdout
    assert "BITS [16256] [0, 16128, 16256]" in r.stdout, r.stdout
