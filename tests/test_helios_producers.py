"""Kernels that hand the next tensor-core matmul its 16-bit input as they produce their output
(no packing pass), on lavapipe: the cross-entropy (`kernels/rows.py`: a one-pass forward, online
softmax, that writes each row's log-sum-exp; the backward reads it instead of the logits' max
and sum again, writes a fresh gradient without reading it, and its 16-bit copy) and the
activations (`elementwise.map_packed`: GELU's output and its 16-bit copy). Checked against
float64 (values) and bit for bit against round-to-nearest-even of the kernel's own fp32 output
(the 16-bit copies); and that the copy is recorded where the matmul looks for its packing. The
fp32 paths are also in the shared backend suite (after a forward, into zeros, and for logits
written since)."""

from __future__ import annotations

import json

import pytest

from test_helios import _py

CODE = """
    import json, math, random, struct
    from array import array
    from alpha.tensor import get_backend
    from alpha.helios.kernels import rows as krows
    from alpha.helios.kernels.coopmat import _f16_bits
    be = get_backend("helios")
    rt = be.rt
    rng = random.Random(5)
    R, C = 7, 301 * 2  # rows longer than a workgroup, an even width for the 16-bit pairs
    x = [rng.uniform(-4, 4) for _ in range(R * C)]
    x[3 * C + 5] = float("-inf")  # a masked logit adds nothing
    tg = [rng.randrange(C) for _ in range(R)]
    tg[2] = -1  # ignored
    dl = [rng.uniform(0.5, 2) for _ in range(R)]
    X = be.from_array(array("f", x), (R, C))
    Tg = be.from_array(array("i", tg), (R,), "i32")
    DL = be.from_array(array("f", dl), (R,))
    losses, lse = be.empty((R,)), be.empty((R,))
    rt.launch(("ce_fwd",), krows.crossentropy_forward,
              [rt.addr(t) for t in (losses, lse, X, Tg)] + [R, C], (R, 1, 1), [losses, lse])
    want_lse = []
    for r in range(R):
        row = x[r * C:(r + 1) * C]
        m = max(row)
        want_lse.append(m + math.log(math.fsum(math.exp(v - m) for v in row)))
    err = {"lse": max(abs(a - b) for a, b in zip(be.to_array(lse), want_lse)),
           "loss": max(abs(a - ((want_lse[r] - x[r * C + tg[r]]) if tg[r] >= 0 else 0.0))
                       for r, a in enumerate(be.to_array(losses)))}
    base = [rng.uniform(-1, 1) for _ in range(R * C)]

    def want_grad(r, j, start):
        if tg[r] < 0:
            return start
        p = math.exp(x[r * C + j] - want_lse[r]) - (1.0 if j == tg[r] else 0.0)
        return start + p * dl[r]

    bits_bad = 0
    for overwrite, out16 in ((False, None), (True, None), (True, "bf16"), (False, "f16")):
        dx = be.zeros((R, C)) if overwrite else be.from_array(array("f", base), (R, C))
        outs = [dx] + ([rt.new((R, C), "u16")] if out16 else [])
        rt.launch(("ce_bwd", overwrite, out16),
                  lambda: krows.crossentropy_backward(overwrite, out16),
                  [rt.addr(t) for t in outs + [DL, X, Tg, lse]] + [R, C], (R, 1, 1), outs)
        got = list(be.to_array(dx))
        err[f"grad {overwrite} {out16}"] = max(
            abs(got[i] - want_grad(i // C, i % C, 0.0 if overwrite else base[i]))
            for i in range(R * C))
        if out16:
            for g, h in zip(got, be.to_array(outs[1])):
                u = struct.unpack("<I", struct.pack("<f", g))[0]
                if out16 == "bf16":
                    want = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
                else:  # struct's half-float packing rounds to nearest even
                    want = struct.unpack("<H", struct.pack("<e", g))[0]
                bits_bad += want != h
    print("RESULT", json.dumps({"err": err, "bits_bad": bits_bad}))
"""


def test_crossentropy_kernels_match_float64_and_round_their_16bit_copy():
    r = _py(CODE)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert res["bits_bad"] == 0, res
    for name, e in res["err"].items():
        assert e < 2e-5, (name, res["err"])


def test_crossentropy_backward_leaves_the_next_matmul_its_packing():
    """With 16-bit matmuls on tensor cores the backward writes dlogits' packing under the key
    the matmul looks up (its packing step is skipped); on lavapipe with the tensor-core
    kernels emulated (`coop_emulate`)."""
    r = _py("""
        from array import array
        from alpha.tensor import get_backend
        lp = get_backend("helios").with_matmul_dtype("bf16")
        lp.coop_emulate = True
        R, V = 4, 10
        logits = lp.from_array(array("f", [0.1 * i for i in range(R * V)]), (R, V))
        targets = lp.from_array(array("i", [1, 3, -1, 9]), (R,), "i32")
        losses = lp.empty((R,))
        lp.crossentropy_forward(losses, logits, targets)
        g = lp.zeros((2, 2, V)).view(R, V)
        lp.crossentropy_backward(g, lp.from_array(array("f", [0.25] * R), (R,)), logits, targets)
        u = lp._packed(lp.zeros((2,)).view(2), "bf16")  # another allocation: packed here
        got = lp._packed(g, "bf16")
        ref = lp.empty((R * V,), "u16")
        lp.pack16(ref, g.view(R * V))
        print("SAME", list(lp.to_array(got)) == list(lp.to_array(ref)),
              got is lp._packed(g, "bf16"), u is not got)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SAME True True True" in r.stdout, r.stdout


@pytest.mark.parametrize("op", ["gelu", "layernorm"])
def test_a_producer_writes_its_16bit_copy_where_the_next_matmul_looks(op):
    """GELU's and layernorm's forwards with bf16 tensor-core matmuls: values as the plain
    kernels', the copy bit for bit RNE of them, found by the matmul's packing lookup under a
    view of another shape (a linear reads (B, T, C) as (B*T, C)); no packing pass runs.
    On lavapipe with the tensor-core kernels emulated (`coop_emulate`)."""
    r = _py("""
        import random, struct, sys
        from array import array
        from alpha.tensor import get_backend
        op = sys.argv[1]
        be = get_backend("helios")
        lp = be.with_matmul_dtype("bf16")
        lp.coop_emulate = True
        rng = random.Random(2)
        xs = [rng.uniform(-5, 5) for _ in range(2 * 3 * 70)]
        x = lp.from_array(array("f", xs), (2, 3, 70))
        w = lp.from_array(array("f", [rng.uniform(0.5, 2) for _ in range(70)]), (70,))
        b = lp.from_array(array("f", [rng.uniform(-1, 1) for _ in range(70)]), (70,))

        def run(backend):
            out = backend.empty((2, 3, 70))
            mean, rstd = backend.empty((2, 3)), backend.empty((2, 3))
            if op == "gelu":
                backend.gelu_forward(out, x)
            else:
                backend.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
            return out
        out, plain = run(lp), run(be.with_matmul_dtype("f32"))
        got = list(lp.to_array(out))
        u = lp._packed(out.view(6, 70), "bf16")
        bad = 0
        for g, h in zip(got, lp.to_array(u)):
            v = struct.unpack("<I", struct.pack("<f", g))[0]
            bad += ((v + 0x7FFF + ((v >> 16) & 1)) >> 16) != h
        print("SAME", got == list(be.to_array(plain)), bad, u.shape,
              lp.rt.pipes.programs.get(("pack16", "bf16")) is None)
    """, argv=[op])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SAME True 0 (6, 70) True" in r.stdout, r.stdout

