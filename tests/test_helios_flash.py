"""The fused flash attention (`alpha/helios/kernels/flash.py`) on lavapipe: its emulated variant
-- the same kernels with the tensor-core products done by scalar loops, 32-row tiles -- against
a float64 reference of causal attention on the bf16-rounded q, k, v and dO
(`alpha/bench/helios_flash.py`): forward, log-sum-exp and the gradient of qkv, at a T that is
not a multiple of the tile (three tiles, the last partial; two sequences, two heads); with
scores spread wide enough that the lazily rescaled forward moves its running max, and the
forward that rescales on every tile. The
cooperative-matrix kernels themselves pass spirv-val in test_helios_coopmat.py and are checked on
tensor cores by `bench/gpu_attention.py`."""

from __future__ import annotations

import json

from test_helios import _py

CODE = """
    import json
    from alpha.tensor import get_backend
    from alpha.bench import helios_flash as hf
    be = get_backend("helios")
    lp = be.with_matmul_dtype("bf16")
    lp.flash = "emulated"
    B, T, C, H = 2, 70, 128, 2
    rel = []
    for span, lazy in ((2.0, True), (6.0, True), (6.0, False)):
        lp.flash_lazy = lazy
        x, dy = hf.inputs(B, T, C, span=span)
        got = hf.run(lp, be, x, dy, B, T, C, H)
        rel.append(hf.rel_errors(got, hf.reference(x, dy, B, T, C, H)))
    ran = sorted(set(k[0] for k in lp.rt.pipes.programs if str(k[0]).startswith("flash")))
    print("RESULT", json.dumps({"rel": rel, "ran": ran}))
"""


def test_emulated_flash_attention_matches_float64():
    r = _py(CODE)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert res["ran"] == ["flash_bwd_kv", "flash_bwd_q", "flash_fwd", "flash_rowdot"]
    # P and dS are rounded to bf16 before their products: ~1e-3 relative, never exact
    for out, lse, grad in res["rel"]:
        assert 0 < out < 5e-3 and lse < 1e-6 and 0 < grad < 1e-2, res["rel"]
