"""helios on a real Vulkan driver (lavapipe in CI). Every GPU test runs in a SUBPROCESS, so a
driver crash fails one test instead of killing pytest. Sizes are small: lavapipe is a CPU."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import require_peer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LVP = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"


def _have_vulkan() -> bool:
    return ctypes.util.find_library("vulkan") is not None and (
        os.path.exists(LVP) or bool(os.environ.get("VK_DRIVER_FILES")))


def _py(code: str, timeout: int = 240, env: dict | None = None,
        argv: list[str] = ()) -> subprocess.CompletedProcess:
    require_peer(_have_vulkan(), "no Vulkan loader + lavapipe (apt: libvulkan1 "
                                 "mesa-vulkan-drivers)")
    e = dict(os.environ, PYTHONPATH=ROOT)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode < 0:
        pytest.fail(f"the GPU subprocess died with signal {-r.returncode}:\n{r.stderr[-3000:]}")
    return r


def test_shared_backend_suite_passes_on_helios():
    r = _py("""
        import sys
        sys.path.insert(0, "tests")
        import backend_suite
        sys.exit(backend_suite.main(["helios"]))
    """, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]


def test_matmul_edges_and_batching_against_python():
    r = _py("""
        import random
        from array import array
        from alpha.tensor import get_backend
        from alpha.helios.kernels import matmul as kmm
        be = get_backend("helios")
        random.seed(1)
        cases = [(None, 1, 1, 1, 1), (None, 2, 65, 33, 17), (None, 1, 130, 70, 129),
                 (None, 3, 7, 129, 5), (kmm.LARGE, 1, 128, 128, 16), (kmm.LARGE, 2, 129, 131, 9),
                 (kmm.DEFAULT, 1, 64, 128, 32), (kmm.SMALL, 2, 32, 32, 8),
                 ("split4", 1, 70, 45, 64), ("split2", 1, 128, 128, 32),
                 ("split2", 1, 130, 129, 64)]
        for (cfg, B, M, N, K) in cases:
            if isinstance(cfg, str):  # force split-K (only chosen on GPUs by itself)
                n = int(cfg[5:])
                be._split_k = lambda *a, n=n: n
                cfg = kmm.SMALL
            else:
                be._split_k = lambda *a: 1
            be._mm_config = (lambda M, N, K, nb=1, cfg=cfg: cfg) if cfg else type(be)._mm_config.__get__(be)
            A = [random.uniform(-1, 1) for _ in range(B * M * K)]
            Bm = [random.uniform(-1, 1) for _ in range(K * N)]
            a = be.from_array(array("f", A), (B, M, K))
            b = be.from_array(array("f", Bm), (K, N))
            out = be.empty((B, M, N))
            be.matmul(out, a, b)
            got = be.to_array(out)
            for bi in range(B):
                for i in range(0, M, 7):
                    for j in range(0, N, 5):
                        want = sum(A[bi*M*K + i*K + k] * Bm[k*N + j] for k in range(K))
                        g = got[bi*M*N + i*N + j]
                        assert abs(g - want) <= 1e-4 + 1e-4 * abs(want), (B, M, N, K, i, j, g, want)
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]


def test_ops_are_batched_not_submitted_one_by_one():
    r = _py("""
        from array import array
        from alpha.tensor import get_backend
        be = get_backend("helios")
        x = be.from_array(array("f", range(1000)))
        be.synchronize()
        submits = []
        real = be.dev.submit
        def counting():
            if be.dev.cmd is not None:
                submits.append(1)
            real()
        be.dev.submit = counting
        for _ in range(100):
            be.binary_scalar(x, "mul", x, 1.0)
            be.axpy(x, x, 0.0)
        assert not submits, f"{len(submits)} submits before any read-back"
        v = be.to_array(x)
        assert len(submits) == 1 and v[999] == 999.0, (submits, v[999])
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]


def test_results_are_deterministic():
    r = _py("""
        from array import array
        from alpha.core import rng
        from alpha.tensor import get_backend
        be = get_backend("helios")
        vals = rng.Stream((1, 2)).uniform(17 * 241)
        outs = []
        for _ in range(2):
            x = be.from_array(array("f", vals), (17, 241))
            s = be.empty((17,))
            be.sum(s, x, [1])
            outs.append((list(be.to_array(s)), be.sum_squares(x)))
        assert outs[0] == outs[1]
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]


def test_gpu_timestamps():
    r = _py("""
        from array import array
        from alpha.tensor import get_backend
        be = get_backend("helios")
        x = be.from_array(array("f", range(4096)))
        be.unary(x, "abs", x)
        t = be.dev.gpu_seconds(lambda: be.unary(x, "abs", x), repeat=3)
        assert 0 < t < 1, t
        print("ok")
    """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]


def test_no_device_is_one_clear_error():
    r = _py("""
        from alpha.core.errors import BackendUnavailable
        try:
            from alpha.helios.backend import HeliosBackend
            HeliosBackend()
        except BackendUnavailable as e:
            assert "\\n" not in str(e)
            print("unavailable:", e)
    """, env={"VK_DRIVER_FILES": "/nonexistent.json", "VK_ICD_FILENAMES": "/nonexistent.json"})
    assert r.returncode == 0 and "unavailable: helios:" in r.stdout, r.stdout + r.stderr
    r = _py("from alpha.helios import doctor; doctor.report()",
            env={"VK_DRIVER_FILES": "/nonexistent.json", "VK_ICD_FILENAMES": "/nonexistent.json"})
    assert r.stdout.startswith("helios: no Vulkan device ("), r.stdout + r.stderr


def test_doctor_reports_the_device():
    r = _py("from alpha.helios import doctor; doctor.report()")
    assert r.returncode == 0 and "gpu " in r.stdout and "subgroup" in r.stdout, r.stdout + r.stderr


def test_device_choice_by_name_and_bad_index():
    r = _py("""
        import os
        from alpha.core.errors import BackendUnavailable
        from alpha.helios.device import Device
        os.environ["ALPHA_VK_DEVICE"] = "99"
        try:
            Device()
        except BackendUnavailable as e:
            print("bad index:", e)
    """)
    assert "bad index: helios: ALPHA_VK_DEVICE=99" in r.stdout, r.stdout + r.stderr


def test_struct_layouts_match_the_headers():
    from alpha.helios import vk
    assert ctypes.sizeof(vk.PhysicalDeviceLimits) == 504
    assert ctypes.sizeof(vk.PhysicalDeviceProperties) == 824
    assert ctypes.sizeof(vk.PhysicalDeviceMemoryProperties) == 520
    assert ctypes.sizeof(vk.PhysicalDeviceFeatures2) == 240
    assert ctypes.sizeof(vk.ComputePipelineCreateInfo) == 96


@pytest.mark.parametrize("variant", ["tiled", "rows"])
def test_attention_variants_at_wide_heads_against_reference(variant):
    """helios picks its attention kernels by head size and key count: tiled kernels (a head-wide
    row in registers, staged key/query tiles) up to a head-size limit, else row kernels sized by
    a power-of-two class of the key count. The shared suite's small heads reach only the tiled
    ones, so each variant runs here at a wide head with T = 70 (not a multiple of the tiles, key
    class 128), forward, backward and a KV-cache decode step, against the float64 reference;
    the pipelines created say which kernels ran. Heads: tiled hs 16 on lavapipe (its LLVM takes
    minutes to compile wider unrolled kernels), GPT-sized 64 on a GPU; rows just past the limit."""
    r = _py("""
        import sys
        from array import array
        from alpha.core import rng
        from alpha.helios.kernels import attention as katt
        from alpha.tensor import get_backend
        be, ref = get_backend("helios"), get_backend("reference")
        cpu_device = be.dev.device_type == "cpu"
        tiled = sys.argv[1] == "tiled"
        if tiled:
            hs = 16 if cpu_device else 64
        else:
            hs = 24 if cpu_device else katt.MAX_TILED_HS + 8
        B, T, H = 1, 70, 2
        C = H * hs
        s = rng.Stream((3, 4))
        qkv = array("f", s.uniform(B * T * 3 * C))
        dout = array("f", [u - 0.5 for u in s.uniform(B * T * C)])
        res = {}
        for name, bk in (("gpu", be), ("ref", ref)):
            x = bk.from_array(qkv, (B, T, 3 * C))
            out, lse = bk.zeros((B, T, C)), bk.zeros((B, H, T))
            bk.attention_forward(out, lse, x, H)
            d = bk.zeros((B, T, 3 * C))
            bk.attention_backward(d, bk.from_array(dout, (B, T, C)), x, out, lse, H)
            q, k, v = (x.narrow(2, i * C, C) for i in range(3))
            step = bk.zeros((B, 1, C))
            bk.kv_attention(step, q.narrow(1, T - 1, 1), k, v, H, T - 1)
            res[name] = [list(bk.to_array(t)) for t in (out, lse, d, step)]
        for what, g, w in zip(("out", "lse", "dqkv", "kv step"), res["gpu"], res["ref"]):
            bad = [(i, a, b) for i, (a, b) in enumerate(zip(g, w))
                   if not abs(a - b) <= 2e-5 + 1e-4 * abs(b)]  # a NaN fails too
            assert not bad, (what, bad[:3])
        keys = set(be.pipes.programs)
        want = ([("attn_fwd_tiled", hs), ("attn_bwd_dq_tiled", hs)] if tiled else
                [("attn_fwd", 128), ("attn_bwd_dq", 128), ("attn_bwd_dkv", 128)])
        assert all(key in keys for key in want), (want, sorted(k for k in keys if "attn" in k[0]))
        print("ok")
    """ + "\n", timeout=500, argv=[variant])
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]


def test_bench_quick_runs():
    r = _py("""
        import sys
        from alpha.cli.main import main
        sys.exit(main(["bench", "helios", "--quick"]))
    """)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "copy bandwidth" in r.stdout and "SGEMM fp32" in r.stdout, r.stdout


def test_bench_profile_reports_gpu_time_per_kernel():
    r = _py("""
        import sys
        from alpha.cli.main import main
        sys.exit(main(["bench", "profile", "bench", "helios", "--quick"]))
    """)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "dispatches" in r.stdout and "pipelines created" in r.stdout, r.stdout[-2000:]
