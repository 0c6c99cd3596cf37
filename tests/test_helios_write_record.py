"""helios's write record (`alpha/helios/derived.py`): values derived from an allocation (bf16
packings, q/k/v in heads, the logits' log-sum-exp) are trusted until a command writes that
allocation, so every command must say what it writes. On lavapipe, a training step of a tiny GPT
(fp32; bf16 with the emulated flash attention, with and without the emulated tensor-core
matmuls) runs with a check around every recorded
command: the GPU is drained and every live allocation read before and after it; whatever
changed must be among the allocations the command declared. And no command of the step leaves
its writes unknown (that would forget every packing: slower, not wrong)."""

from __future__ import annotations

import json

from test_helios import _py

CHECK = """
    import ctypes, json, weakref
    from array import array
    from alpha.core.config import ModelConfig, TrainConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.train.optim import clip_coef, grad_norm
    from alpha.train.optimizers import build_optimizer

    be = get_backend("helios")
    dev = be.dev
    live = weakref.WeakSet()
    pool = dev.device_pool
    pool_alloc = pool.alloc

    def alloc(nbytes):
        a = pool_alloc(nbytes)
        live.add(a)
        return a
    pool.alloc = alloc

    def contents():
        dev.synchronize()
        out = {}
        for a in list(live):
            assert a.host_ptr, "lavapipe memory is host-visible"
            out[id(a)] = (a, ctypes.string_at(a.host_ptr, a.size))
        return out

    report = {"commands": 0, "unknown": [], "undeclared": []}

    def checked(name, record):
        def run(*args, writes=None, **kw):
            before = contents()  # (its wait records a held-back zero fill first)
            record(*args, writes=writes, **kw)
            after = contents()
            report["commands"] += 1
            if writes is None:
                report["unknown"].append(name(args))
                return
            declared = {id(a) for a in writes}
            for i, (a, data) in before.items():
                if after[i][1] != data and i not in declared:
                    report["undeclared"].append(name(args))
        return run
    dev.dispatch = checked(lambda args: args[0].name, dev.dispatch)
    dev.copy = checked(lambda args: "copy", dev.copy)
    dev.fill_zero = checked(lambda args: "fill_zero", dev.fill_zero)

    for dtype, emulate in (("f32", False), ("bf16", False), ("bf16", True)):
        lp = be.with_matmul_dtype(dtype)
        lp.flash = "emulated"
        lp.coop_emulate = emulate  # the tensor-core path: packings, producers' 16-bit copies
        cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=128, block_size=16)
        model = GPT(cfg, lp, Rng(0))
        opt = build_optimizer(lp, model, TrainConfig(optimizer="adamw"))
        B, T = 2, 16
        xs = array("i", [(7 * i) % 64 for i in range(B * T)])
        ys = array("i", [(5 * i + 3) % 64 for i in range(B * T)])
        report["commands"] = 0
        for step in range(2):
            ids, targets = lp.from_array(xs, (B, T), "i32"), lp.from_array(ys, (B, T), "i32")
            model.zero_grad()
            _, loss = model.forward(ids, targets)
            loss.to_array()
            model.backward()
            opt.update(1e-3, grad_scale=clip_coef(grad_norm(lp, model.grads), 1.0))
        lp.synchronize()
        ran = sorted({k[0] for k in lp.rt.pipes.programs if str(k[0]).startswith("flash")})
        print("RESULT", dtype + ("-emulated" if emulate else ""), json.dumps(dict(report, ran=ran)))
        report["unknown"].clear()
        report["undeclared"].clear()
"""


def test_every_command_of_a_training_step_declares_what_it_writes():
    r = _py(CHECK, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in r.stdout.splitlines():
        if line.startswith("RESULT"):
            _, dtype, body = line.split(" ", 2)
            res = json.loads(body)
            assert res["commands"] > 40, res
            assert res["undeclared"] == [], (dtype, res["undeclared"])
            assert res["unknown"] == [], (dtype, res["unknown"])
            if dtype == "bf16":
                assert "flash_fwd" in res["ran"], res["ran"]


def test_a_derived_value_lives_until_its_allocation_is_written_or_dropped():
    r = _py("""
        import gc
        from array import array
        from alpha.tensor import get_backend
        be = get_backend("helios")
        rec = be.dev.derived
        a, b = be.from_array(array("f", [1.0, 2.0]), (2,)), be.zeros((2,))
        rec.put(a.storage.alloc, "k", "va")
        rec.put(b.storage.alloc, "k", "vb")
        seen = [rec.get(a.storage.alloc, "k"), rec.get(a.storage.alloc, "other")]
        be.fill(b, 3.0)  # writes b only
        seen += [rec.get(a.storage.alloc, "k"), rec.get(b.storage.alloc, "k")]
        rec.put(b.storage.alloc, "k", "vb")
        be.rt.write_bytes(a.storage.alloc, 0, array("f", [5.0]).tobytes())  # a host write
        seen += [rec.get(a.storage.alloc, "k"), rec.get(b.storage.alloc, "k")]
        rec.wrote(None)  # a command that does not say what it writes
        seen.append(rec.get(b.storage.alloc, "k"))
        rec.put(b.storage.alloc, "k", "vb")
        del b
        gc.collect()
        print("SEEN", seen, len(rec))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SEEN ['va', None, 'va', None, None, 'vb', None] 0" in r.stdout, r.stdout


def test_a_training_step_trusting_the_write_record_computes_the_same_bits():
    """bf16 training on the tensor-core path (emulated on lavapipe): packings reused from the
    forward, producers' 16-bit copies, the cross-entropy's saved log-sum-exp, zero fills of
    fresh gradients dropped where the next op overwrites them. Against the same steps with
    every lookup in the write record missing (everything recomputed) and with every fill
    recorded: the same losses and parameters, bit for bit (a stale value or a dropped fill that
    was needed would change them), and fewer dispatches."""
    r = _py("""
        import sys
        sys.path.insert(0, "tests")
        from helios_training import train_tiny
        from alpha.core.config import ModelConfig
        from alpha.tensor import get_backend
        be = get_backend("helios")
        out, counts = [], []
        cfg = ModelConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=128, block_size=16)
        for trust in ("all", "no lookups", "no dropped fills"):
            lp = be.with_matmul_dtype("bf16")
            lp.flash, lp.coop_emulate = "emulated", True
            if trust == "no lookups":
                lp.dev.derived.get = lambda alloc, key: None
            if trust == "no dropped fills":
                lp.dev.defer = lambda alloc, record: record()
            losses, params, n = train_tiny(lp, cfg, batch=2, steps=3)
            out.append((losses, params))
            counts.append(n)
            lp.dev.__dict__.pop("defer", None)
            lp.dev.derived.__dict__.pop("get", None)
        print("LOSSES", [o[0] for o in out], counts)
        print("SAME", out[0] == out[1] == out[2], out[0][0][0] != out[0][0][2],
              counts[0] < counts[2])
    """, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SAME True True True" in r.stdout, r.stdout
