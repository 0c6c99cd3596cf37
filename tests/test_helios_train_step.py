"""helios's replayed training step (`alpha/helios/train_step.py`, `capture.py`): a tiny GPT
trained a few steps with the step recorded once and replayed, against the same steps recorded
op by op: the same losses, norms and final weights, bit for bit, with the batch, lr (a
schedule), the bias corrections and the clip factor changing every step. Against the host's
arithmetic (`alpha.train.optim`, AdamW's `update`): the same trajectory within fp32 rounding.
A batch shape change or new optimizer state records again; dropout replays; a skipped
step changes nothing. The trainer replays its step with the same bits and resumes exactly."""

from __future__ import annotations

import json
import math
import textwrap

from test_helios import _py

SETUP = """
    import json, math
    from array import array
    from alpha.core.config import ModelConfig, TrainConfig
    from alpha.core.rng import Rng
    from alpha.helios.train_step import TrainStep
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.train.optim import clip_coef, grad_norm
    from alpha.train.optimizers import build_optimizer

    be = get_backend("helios")
    V = 64

    def batch(s, B, T):
        xs = array("i", [(7 * i + 3 * s) % V for i in range(B * T)])
        ys = array("i", [(5 * i + 3 + s) % V for i in range(B * T)])
        return xs, ys

    def model_of(lp, dropout=0.0, optimizer="adamw"):
        cfg = ModelConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=32, block_size=16,
                          dropout=dropout)
        model = GPT(cfg, lp, Rng(0))
        return model, build_optimizer(lp, model, TrainConfig(optimizer=optimizer,
                                                             sgd_nesterov=True))

    def train(lp, replay, shapes, dropout=0.0, fresh_optimizer_at=None, accum=1,
              optimizer="adamw"):
        model, opt = model_of(lp, dropout, optimizer)
        step = TrainStep(model, opt, grad_clip=1.0, replay=replay)
        out, n0 = [], lp.dev.dispatches
        for s, (B, T) in enumerate(shapes):
            if s == fresh_optimizer_at:
                opt = build_optimizer(lp, model, TrainConfig(optimizer="adamw"))
                step = TrainStep(model, opt, grad_clip=1.0, replay=replay)
            micro = [batch(accum * s + i, B, T) for i in range(accum)]
            out.append(step.run(micro, (B, T), 3e-2 * min(1.0, (s + 1) / 3)))
        return {"steps": out, "params": list(lp.to_array(model.params)),
                "why_not": step.why_not, "recorded": step.recorded, "replayed": step.replayed,
                "dispatches": lp.dev.dispatches - n0,
                "position": model.rng.stream("dropout").position}
"""


def _results(code: str) -> dict:
    r = _py(SETUP + code, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def test_a_replayed_step_trains_the_same_bits_as_the_step_recorded_op_by_op():
    res = _results("""
    out = {}
    for name, emulate, accum, o in (("f32", None, 1, "adamw"), ("bf16", True, 1, "adamw"),
                                    ("accum3", None, 3, "adamw"), ("lion", None, 1, "lion"),
                                    ("sgd", None, 1, "sgd")):
        lp = be if emulate is None else be.with_matmul_dtype("bf16")
        if emulate:  # the tensor-core path on lavapipe: packings, flash attention
            lp.flash, lp.coop_emulate = "emulated", True
        out[name] = [train(lp, replay, [(2, 16)] * 5, accum=accum, optimizer=o)
                     for replay in (True, False)]
    print("RESULT " + json.dumps(out))
    """)
    for name, (rep, op) in res.items():
        assert rep["why_not"] is None and op["why_not"] == "ALPHA_HELIOS_REPLAY_STEP=0"
        assert (rep["recorded"], rep["replayed"]) == (1, 4), (name, rep)
        # replays record nothing: only the first step's dispatches were recorded from Python
        assert 5 * rep["dispatches"] == op["dispatches"], (name, rep["dispatches"])
        losses = [s[0] for s in rep["steps"]]
        assert len(set(losses)) == 5 and all(math.isfinite(v) for v in losses), losses
        assert rep["steps"] == op["steps"], name
        assert rep["params"] == op["params"], name
        assert not any(s[2] for s in rep["steps"])


def test_the_gpu_step_follows_the_hosts_clip_and_adamw_arithmetic():
    """The independent reference: the mean loss, norm, clip factor and AdamW update computed on
    the host (the trainer's arithmetic: `grad_norm`, `clip_coef`, `AdamW.update`), same
    batches and lr, one micro-batch a step and two (accumulation); AdamW, Lion and SGD
    (Nesterov)."""
    res = _results("""
    shapes = [(2, 16)] * 4
    out = {}
    for accum, o in ((1, "adamw"), (2, "adamw"), (1, "lion"), (2, "sgd")):
        gpu = train(be, True, shapes, accum=accum, optimizer=o)
        model, opt = model_of(be, optimizer=o)
        host = []
        for s, (B, T) in enumerate(shapes):
            model.zero_grad()
            total = 0.0
            for i in range(accum):
                xs, ys = batch(accum * s + i, B, T)
                ids, tg = be.from_array(xs, (B, T), "i32"), be.from_array(ys, (B, T), "i32")
                _, loss = model.forward(ids, tg)
                total += float(loss.to_array()[0])
                model.backward()
            norm = grad_norm(be, model.grads) / accum
            opt.update(3e-2 * min(1.0, (s + 1) / 3),
                       grad_scale=clip_coef(norm, 1.0) / accum)
            host.append((total / accum, norm))
        out[f"{o} {accum}"] = {"gpu": gpu, "host": host,
                               "params": list(be.to_array(model.params))}
    print("RESULT " + json.dumps(out))
    """)
    for accum, r in res.items():
        gpu, host = r["gpu"], r["host"]
        assert any(norm > 1.0 for _, norm in host)  # the clip is active in some step
        for (loss, norm, skipped), (hloss, hnorm) in zip(gpu["steps"], host):
            assert not skipped
            assert abs(loss - hloss) <= 1e-5 * abs(hloss), (accum, loss, hloss)
            assert abs(norm - hnorm) <= 1e-5 * hnorm, (accum, norm, hnorm)
        diff = max(abs(a - b) for a, b in zip(gpu["params"], r["params"]))
        assert diff < 1e-5, (accum, diff)


def test_a_new_batch_shape_or_new_optimizer_state_records_again():
    res = _results("""
    shapes = [(2, 16), (2, 16), (3, 16), (3, 16), (2, 16), (2, 8), (2, 8)]
    rep, op = train(be, True, shapes), train(be, False, shapes)
    fresh = train(be, True, [(2, 16)] * 4, fresh_optimizer_at=2)
    fresh_op = train(be, False, [(2, 16)] * 4, fresh_optimizer_at=2)
    print("RESULT " + json.dumps({"rep": rep, "op": op, "fresh": fresh, "fresh_op": fresh_op}))
    """)
    rep, op = res["rep"], res["op"]
    assert (rep["recorded"], rep["replayed"]) == (4, 3), rep  # every shape change records
    assert rep["steps"] == op["steps"] and rep["params"] == op["params"]
    fresh = res["fresh"]
    assert (fresh["recorded"], fresh["replayed"]) == (1, 1), fresh  # the new TrainStep's
    assert fresh["steps"] == res["fresh_op"]["steps"]
    assert fresh["params"] == res["fresh_op"]["params"]


def test_dropout_replays_with_fresh_masks_every_step():
    """Dropout's masks come from the stream's position at each replay (not the recorded one):
    the same bits as op by op, and the stream ends where op by op leaves it."""
    res = _results("""
    out = [train(be, replay, [(2, 16)] * 4, dropout=0.2) for replay in (True, False)]
    print("RESULT " + json.dumps(out))
    """)
    rep, op = res
    assert rep["why_not"] is None and (rep["recorded"], rep["replayed"]) == (1, 3), rep
    assert rep["steps"] == op["steps"] and rep["params"] == op["params"]
    assert rep["position"] == op["position"] > 0


def test_memory_the_recorded_step_uses_is_never_handed_out_between_replays():
    """Tensors made between replays (of the step's temporaries' sizes and others) keep their
    values through the next replay: the capture owns every range it allocated, freed or not."""
    res = _results("""
    model, opt = model_of(be)
    step = TrainStep(model, opt, grad_clip=1.0)
    xs, ys = batch(0, 2, 16)
    step.run([(xs, ys)], (2, 16), 1e-2)
    held = []
    for n in (32, 64, 96, 128, 1024, 2048, 2 * 16 * 64, 2 * 16 * 32 * 4, 3 * 32 * 32, 4096):
        for _ in range(3):
            t = be.empty((n,))
            be.fill(t, 7.0)
            held.append(t)
    for s in range(1, 3):
        xs, ys = batch(s, 2, 16)
        step.run([(xs, ys)], (2, 16), 1e-2)
    bad = sum(1 for t in held for v in be.to_array(t) if v != 7.0)
    print("RESULT " + json.dumps({"bad": bad, "replayed": step.replayed}))
    """)
    assert res == {"bad": 0, "replayed": 2}, res


def test_a_skipped_step_changes_no_weight_and_is_not_counted():
    """A NaN loss (a poisoned weight) and a norm above the spike threshold: the GPU's verdict
    leaves params, m and v as they were, and AdamW's step count does not move."""
    res = _results("""
    out = {}
    for kind in ("nan", "spike"):
        model, opt = model_of(be)
        step = TrainStep(model, opt, grad_clip=1.0, spike_threshold=1e-3 if kind == "spike"
                         else 0.0)
        xs, ys = batch(0, 2, 16)
        if kind == "nan":
            be.fill(model.params.narrow(0, 5, 1), float("nan"))
        before = [list(be.to_array(t)) for t in (model.params, opt.m, opt.v)]
        runs = [step.run([(xs, ys)], (2, 16), 1e-2) for _ in range(3)]
        after = [list(be.to_array(t)) for t in (model.params, opt.m, opt.v)]
        same = all(repr(a) == repr(b) for a, b in zip(before, after))  # NaN == NaN by repr
        out[kind] = {"runs": [[repr(v) for v in r] for r in runs], "same": same,
                     "count": opt.step, "replayed": step.replayed}
    print("RESULT " + json.dumps(out))
    """)
    for kind, r in res.items():
        assert r["same"] and r["count"] == 0 and r["replayed"] == 2, (kind, r)
        assert all(run[2] == "True" for run in r["runs"]), r
    assert all(run[0] == "nan" for run in res["nan"]["runs"])
    assert all(float(run[1]) > 1e-3 for run in res["spike"]["runs"])


TRAIN = """
    import os, sys
    from alpha.core.config import resolve
    from alpha.train import checkpoint
    from alpha.train.trainer import Trainer
    backend, data, run_dir = sys.argv[1:4]
    resume = sys.argv[4] if len(sys.argv) > 4 else ""
    t = {"data": data, "batch_size": 2, "iters": 8, "eval_interval": 3, "eval_iters": 1,
         "sample_interval": 0, "checkpoint_interval": 4, "warmup_iters": 2, "lr": 3e-3,
         "run_dir": run_dir, "seed": 7, "backend": backend, "layer_stats_interval": 5,
         "keep_checkpoints": 0, "accum_steps": 2}
    model = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    cfg = resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})
    ck = checkpoint.load(resume) if resume else None
    Trainer(cfg, out=None, handle_sigint=False, resume=ck).train()
"""


def test_the_trainer_replays_its_step_with_the_same_bits_and_resumes_exactly(tmp_path):
    """`alpha train --backend helios --accum-steps 2`: steps replayed (between evals,
    checkpoints and a layer-stats step, which runs the trainer's own step) give the metrics of
    the steps recorded op by op (ALPHA_HELIOS_REPLAY_STEP=0) bit for bit and the CPU's losses
    within 1e-3, and a run resumed from step 4 repeats steps 5-8 of the uninterrupted one."""
    from test_helios_train import TEXT, _cpu
    data = tmp_path / "data.txt"
    data.write_text(TEXT)

    def train(name, resume="", env=None, backend="helios"):
        if backend == "cpu":
            r = _cpu(textwrap.dedent(TRAIN), data, tmp_path / name)
        else:
            r = _py(TRAIN, env=env, argv=[backend, str(data), str(tmp_path / name), resume])
        assert r.returncode == 0, r.stderr[-3000:]
        with open(tmp_path / name / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        keys = ("step", "loss", "lr", "grad_norm", "clip_coef", "val_loss")
        return [{k: row.get(k) for k in keys} for row in rows]

    replayed = train("replay")
    op = train("op", env={"ALPHA_HELIOS_REPLAY_STEP": "0"})
    assert len(replayed) == 8 and replayed == op
    for a, b in zip(train("cpu", backend="cpu"), replayed):
        assert abs(a["loss"] - b["loss"]) <= 1e-3 * a["loss"], (a, b)
    log = (tmp_path / "replay" / "train.log").read_text()
    assert "training step is recorded once and replayed" in log, log
    assert "ALPHA_HELIOS_REPLAY_STEP=0" in (tmp_path / "op" / "train.log").read_text()
    resumed = train("replay", str(tmp_path / "replay" / "checkpoints" / "step-4.ckpt"))
    assert resumed == replayed


def test_every_model_option_replays_with_the_same_bits():
    """rope, rmsnorm, swiglu, no bias, qk-norm, both soft-caps, an untied head, relu2,
    dropout, each with activation checkpointing and the embedding gradient shrink too: no
    read-back while recording (so they replay) and the same bits as op by op."""
    res = _results("""
    out = {}
    variants = {"rope": dict(pos="rope", norm="rmsnorm", activation="swiglu", bias=False),
                "qk": dict(qk_norm=True, attn_softcap=5.0, logit_softcap=10.0),
                "untied": dict(tie_embeddings=False, activation="relu2"),
                "dropout": dict(dropout=0.1)}
    for name, kw in variants.items():
        for ckpt in (False, True):
            runs = []
            for replay in (True, False):
                cfg = ModelConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=32,
                                  block_size=16, **kw)
                model = GPT(cfg, be, Rng(0))
                model.checkpointing, model.emb_grad_scale = ckpt, 0.5 if ckpt else 1.0
                opt = build_optimizer(be, model, TrainConfig(optimizer="adamw"))
                st = TrainStep(model, opt, grad_clip=1.0, replay=replay)
                steps = [st.run([batch(s, 2, 16)], (2, 16), 1e-2) for s in range(3)]
                runs.append([steps, list(be.to_array(model.params)), st.why_not, st.replayed])
            out[name + ("+ckpt" if ckpt else "")] = runs
    print("RESULT " + json.dumps(out))
    """)
    for name, (rep, op) in res.items():
        assert rep[2] is None and rep[3] == 2, (name, rep[2:])
        assert rep[:2] == op[:2], name


def test_a_step_that_reads_back_while_recording_runs_op_by_op():
    """A host read-back inside the step (here a forward that reads its loss) makes the
    recording unreplayable: the step runs op by op with the same bits, says why, and stops
    trying to record after RECORD_TRIES."""
    res = _results("""
    from alpha.helios import train_step as ts
    tries = []

    class Counted(ts.Capture):
        def start(self):
            tries.append(1)
            super().start()
    ts.Capture = Counted
    out = []
    for replay in (True, False):
        model, opt = model_of(be)
        forward = model.forward

        def reading(*args, _f=forward, **kw):
            logits, loss = _f(*args, **kw)
            be.to_array(loss)  # a host read-back mid-step
            return logits, loss
        model.forward = reading
        step = TrainStep(model, opt, grad_clip=1.0, replay=replay)
        runs = [step.run([batch(s, 2, 16)], (2, 16), 1e-2) for s in range(4)]
        out.append([runs, list(be.to_array(model.params)), step.why_not, step.recorded,
                    step.replayed])
    print("RESULT " + json.dumps({"out": out, "tries": len(tries),
                                  "limit": ts.RECORD_TRIES}))
    """)
    (rep, op), tries = res["out"], res["tries"]
    assert rep[2] == "a read-back while recording the step" and rep[3:] == [0, 0], rep[2:]
    assert tries == res["limit"] == 2
    assert rep[:2] == op[:2]
