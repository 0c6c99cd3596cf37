"""The optimizers (--optimizer adamw|lion|adafactor|sgd|muon) against float64 references of their
published rules (tests/optim_reference.py), on the CPU backend here and on helios (lavapipe) in a
subprocess; their state in checkpoints (bit-exact resume for each, AdamW checkpoints written
before there was a choice still load); a short run per optimizer whose loss goes down; bad values
of the new flags."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import pytest

import optim_reference as ref
from alpha.core.config import TrainConfig, resolve
from alpha.core.errors import CheckpointError, ConfigError
from alpha.train import checkpoint as ckpt_format
from alpha.train.optimizers import build_optimizer
from alpha.train.optimizers.muon import is_hidden_matrix
from alpha.train.trainer import Trainer

# A model's layout in miniature: block matrices (c_attn: Muon's q, k, v apart; a wide c_fc; a
# tall c_proj, which Muon transposes) and an untied head in the decay range; an embedding and a
# norm's weight and bias outside it.
TABLE = [("h.0.attn.c_attn.weight", (6, 18)), ("h.0.mlp.c_fc.weight", (6, 24)),
         ("h.0.mlp.c_proj.weight", (24, 6)), ("lm_head.weight", (11, 6)), ("wte", (11, 6)),
         ("h.0.ln_1.weight", (6,)), ("h.0.ln_1.bias", (6,))]
N_DECAY = 6 * 18 + 6 * 24 + 24 * 6 + 11 * 6
STEPS = 4
SCALES = [1.0, 0.5, 1.0, 0.25]  # grad_scale per step (the trainer's clip and 1/accum factor)

CASES = {
    "adamw": dict(lr=1e-2, weight_decay=0.1),
    "lion": dict(lr=1e-3, weight_decay=0.5),
    "adafactor": dict(lr=1e-2, weight_decay=0.1),
    "sgd": dict(lr=0.05, weight_decay=0.1, sgd_momentum=0.9, sgd_nesterov=False),
    "sgd-nesterov": dict(lr=0.05, weight_decay=0.1, sgd_momentum=0.9, sgd_nesterov=True),
    "muon": dict(lr=1e-2, weight_decay=0.1, muon_lr=0.05, muon_momentum=0.95),
}


class Flat:
    """What an optimizer needs of a model: flat params/grads, the table, the decay range."""

    def __init__(self, be, values):
        self.table = TABLE
        self.decay_range = (0, N_DECAY)
        self.params = be.from_array(values)
        self.grads = be.zeros((len(values),))


def _entries():
    out, off = [], 0
    for name, shape in TABLE:
        n = 1
        for s in shape:
            n *= s
        out.append((name, shape, off, n))
        off += n
    return out


def reference_run(case, tc, p0, grads):
    """The float64 trajectory: one list of final parameter values."""
    opt = case.split("-")[0]
    p = list(p0)
    states = {name: {} for name, *_ in TABLE}
    for step, (g_all, scale) in enumerate(zip(grads, SCALES), 1):
        for name, shape, off, n in _entries():
            pp, g = p[off:off + n], [x * scale for x in g_all[off:off + n]]
            st = states[name]
            wd = tc.weight_decay if off < N_DECAY else 0.0
            if opt == "adamw" or (opt == "muon" and not is_hidden_matrix(name, shape)):
                st.setdefault("m", [0.0] * n)
                st.setdefault("v", [0.0] * n)
                ref.adamw(pp, g, st, tc.lr, tc.beta1, tc.beta2, tc.eps, wd, step)
            elif opt == "muon":
                blocks = 3 if name.endswith("c_attn.weight") else 1  # q, k, v apart
                ref.muon(pp, g, st, shape, tc.muon_lr, tc.muon_momentum, blocks)
            elif opt == "lion":
                st.setdefault("m", [0.0] * n)
                ref.lion(pp, g, st, tc.lr, tc.beta1, tc.beta2, wd)
            elif opt == "sgd":
                ref.sgd(pp, g, st, tc.lr, tc.sgd_momentum, tc.sgd_nesterov, wd)
            elif opt == "adafactor":
                ref.adafactor(pp, g, st, shape, tc.lr, tc.adafactor_eps, tc.adafactor_clip,
                              tc.adafactor_decay, wd, step)
            p[off:off + n] = pp
    return p


def check_backend(name: str) -> list[str]:
    """Every case on backend `name` against the float64 reference; the failures, worded."""
    from alpha.tensor import get_backend

    be = get_backend(name)
    rnd = random.Random(5)
    n = sum(e[3] for e in _entries())
    p0 = [rnd.gauss(0, 0.5) for _ in range(n)]
    grads = [[rnd.gauss(0, 0.1) for _ in range(n)] for _ in range(STEPS)]
    failures = []
    for case, over in CASES.items():
        tc = dataclasses.replace(TrainConfig(), optimizer=case.split("-")[0], **over)
        model = Flat(be, p0)
        opt = build_optimizer(be, model, tc)
        for g, scale in zip(grads, SCALES):
            be.copy(model.grads, be.from_array(g))
            opt.update(tc.lr, grad_scale=scale)  # the schedule's lr at its peak
        got = list(be.to_array(model.params))
        want = reference_run(case, tc, p0, grads)
        moved = max(abs(w - a) for w, a in zip(want, p0))
        err = max(abs(g_ - w) for g_, w in zip(got, want))
        tol = 1e-4 * moved
        if not err <= tol:
            failures.append(f"{name} {case}: max error {err:.3g} > {tol:.3g} (moved {moved:.3g})")
        if opt.step != STEPS:
            failures.append(f"{name} {case}: step {opt.step}, expected {STEPS}")
    return failures


def test_optimizers_match_float64_reference_on_cpu():
    assert check_backend("cpu") == []


def test_reference_backend_defines_the_same_updates():
    """The reference backend (the living definition of every op) runs the same rules."""
    assert check_backend("reference") == []


def test_optimizers_match_float64_reference_on_helios():
    from test_helios import _py

    r = _py("""
        import sys
        sys.path.insert(0, "tests")
        import test_optimizers
        failures = test_optimizers.check_backend("helios")
        print("\\n".join(failures))
        sys.exit(1 if failures else 0)
    """)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


# ---- training, checkpoints and resume ---------------------------------------------------------

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12

LRS = {"adamw": 1e-2, "lion": 3e-3, "adafactor": 1e-2, "sgd": 0.3, "muon": 1e-2}


def tiny(tmp_path, run, optimizer, **train):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    t = {"data": str(data), "batch_size": 4, "iters": 16, "eval_interval": 0,
         "sample_interval": 0, "checkpoint_interval": 8, "warmup_iters": 2,
         "lr": LRS[optimizer], "min_lr": 0.0, "run_dir": str(tmp_path / run), "seed": 7,
         "optimizer": optimizer, "accum_steps": 2}
    t.update(train)
    return resolve("text", "", {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                          "block_size": 16, "tie_embeddings": False},
                                "train": t})


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def run_and_resume(tmp_path, optimizer, iters=16, **train) -> list[float]:
    """Train `iters` steps (a checkpoint halfway), resume a second run from the halfway
    checkpoint, and check the resumed losses, parameters and every optimizer state tensor are
    the uninterrupted run's bit for bit. Returns the uninterrupted run's losses."""
    tmp_path = Path(tmp_path)
    half = iters // 2
    cfg = tiny(tmp_path, f"{optimizer}-a", optimizer, iters=iters, checkpoint_interval=half,
               **train)
    full = Trainer(cfg, out=None, handle_sigint=False).train()
    assert full.status == "completed" and full.step == iters
    a = losses(tmp_path / f"{optimizer}-a")
    ck = ckpt_format.load(str(tmp_path / f"{optimizer}-a" / "checkpoints" / f"step-{half}.ckpt"))
    assert ck.header["optimizer"] == {"name": optimizer, "step": half}
    Trainer(cfg, resume=ck, run_dir=str(tmp_path / f"{optimizer}-b"), out=None,
            handle_sigint=False).train()
    assert losses(tmp_path / f"{optimizer}-b") == a[half:], optimizer  # bit for bit
    last = f"checkpoints/step-{iters}.ckpt"
    ta = ckpt_format.load(str(tmp_path / f"{optimizer}-a" / last)).tensors
    tb = ckpt_format.load(str(tmp_path / f"{optimizer}-b" / last)).tensors
    assert set(ta) == set(tb) and len(ta) >= 2
    for name in ta:
        assert ta[name] == tb[name], (optimizer, name)  # params and every state tensor
    return a


@pytest.mark.parametrize("optimizer", ["adamw", "lion", "adafactor", "sgd", "muon"])
def test_training_goes_down_and_resumes_bit_exactly(tmp_path, optimizer):
    a = run_and_resume(tmp_path, optimizer)
    assert sum(a[-3:]) / 3 < sum(a[:3]) / 3 - 0.15, a  # it learns


def test_resume_is_bit_exact_on_helios(tmp_path):
    from test_helios import _py

    r = _py("""
        import sys
        sys.path.insert(0, "tests")
        import test_optimizers
        for name in ("adamw", "lion", "adafactor", "sgd", "muon"):
            test_optimizers.run_and_resume(sys.argv[1], name, iters=6, backend="helios")
    """, argv=[str(tmp_path)], timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def test_checkpoint_from_before_the_choice_still_resumes(tmp_path):
    """An AdamW checkpoint whose header says only {"step": n} (no optimizer name) resumes."""
    cfg = tiny(tmp_path, "a", "adamw", iters=10, checkpoint_interval=5)
    Trainer(cfg, out=None).train()
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-5.ckpt"))
    header = {k: v for k, v in ck.header.items() if k not in ("tensors", "body_size")}
    header["optimizer"] = {"step": 5}
    old = str(tmp_path / "old.ckpt")
    ckpt_format.save(old, header, {k: (v, (len(v),), "f32") for k, v in ck.tensors.items()})
    Trainer(cfg, resume=ckpt_format.load(old), run_dir=str(tmp_path / "b"), out=None).train()
    assert losses(tmp_path / "b") == losses(tmp_path / "a")[5:]
    # resuming with another optimizer is refused, naming both
    other = tiny(tmp_path, "c", "lion", iters=10)
    with pytest.raises(CheckpointError, match="optimizer is adamw, this run's is lion"):
        Trainer(other, resume=ckpt_format.load(old), out=None)


@pytest.mark.parametrize("field,value,needle", [
    ("optimizer", "adam", "optimizer='adam' is not one of adamw, lion"),
    ("sgd_momentum", 1.0, "sgd_momentum=1.0 must be in [0, 1)"),
    ("muon_momentum", -0.1, "muon_momentum=-0.1"),
    ("muon_lr", 0.0, "muon_lr=0.0 must be a positive number"),
    ("adafactor_eps", 0.0, "adafactor_eps=0.0"),
    ("adafactor_clip", -1.0, "adafactor_clip=-1.0"),
    ("adafactor_decay", 1.5, "adafactor_decay=1.5 must be in (0, 1]"),
])
def test_bad_optimizer_settings_are_config_errors(field, value, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})
    assert needle in str(e.value)


def test_bad_optimizer_flags_exit_2_with_one_line(tmp_path):
    from test_cli import alpha, one_line_error

    one_line_error(alpha("train", "--optimizer", "adam"), "--optimizer", "adam")
    one_line_error(alpha("train", "--muon-lr", "-1", "--optimizer", "muon"), "muon_lr=-1.0")


def test_optimizer_ops_check_their_arguments():
    from alpha.tensor import get_backend

    be = get_backend("cpu")
    f = lambda *shape: be.zeros(shape)  # noqa: E731
    with pytest.raises(ValueError, match="lion_step: m"):
        be.lion_step(f(5), f(5), f(6), lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.0)
    with pytest.raises(TypeError, match="sgd_step: grad has dtype i32"):
        be.sgd_step(f(5), be.zeros((5,), "i32"), f(5), lr=0.1, momentum=0.9, nesterov=False,
                    weight_decay=0.0)
    with pytest.raises(ValueError, match="muon_momentum: out .* must be contiguous"):
        be.muon_momentum(f(4, 3).transpose(), f(3, 4), f(3, 4), momentum=0.9)
    with pytest.raises(ValueError, match="adafactor_step: col has shape"):
        be.adafactor_step(f(2, 3), f(2, 3), f(2), f(2), lr=0.1, beta2=0.5, eps=1e-30, clip=1.0,
                          weight_decay=0.0)
    with pytest.raises(ValueError, match="adafactor_step: beta2=1.0"):
        be.adafactor_step(f(4), f(4), f(4), None, lr=0.1, beta2=1.0, eps=1e-30, clip=1.0,
                          weight_decay=0.0)


def test_muon_orthogonalises_packed_weights_part_by_part():
    from alpha.train.optimizers.muon import column_blocks

    assert column_blocks("h.0.attn.c_attn.weight", (4, 12)) == [(0, 4), (4, 4), (8, 4)]
    assert column_blocks("h.0.mlp.c_fc.weight", (4, 16), "swiglu") == [(0, 8), (8, 8)]
    assert column_blocks("h.0.mlp.c_fc.weight", (4, 16), "gelu") == [(0, 16)]
    assert column_blocks("h.0.mlp.c_proj.weight", (16, 4)) == [(0, 4)]


def test_cpu_kernels_do_not_depend_on_the_thread_count():
    """Every update rule on buffers big enough to be split: 1 and 4 threads give the same bits."""
    from alpha.tensor import build, get_backend

    be = get_backend("cpu")
    R, C = 300, 250  # adafactor splits rows and 64-column blocks; the others 16K pieces
    rnd = random.Random(3)
    p0 = [rnd.gauss(0, 1) for _ in range(R * C)]
    g0 = [rnd.gauss(0, 1) for _ in range(R * C)]

    def run():
        t = {k: be.from_array(p0, (R, C)) for k in ("p", "s")}
        g = be.from_array(g0, (R, C))
        row, col, out = be.zeros((R,)), be.zeros((C,)), be.zeros((R, C))
        be.lion_step(t["p"], g, t["s"], lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.1)
        be.sgd_step(t["p"], g, t["s"], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
        be.muon_momentum(out, g, t["s"], momentum=0.95)
        be.adafactor_step(t["p"], g, row, col, lr=0.1, beta2=0.5, eps=1e-30, clip=1.0,
                          weight_decay=0.1)
        be.adafactor_step(out.view(R * C), g, t["s"].view(R * C), None, lr=0.1, beta2=0.5,
                          eps=1e-30, clip=1.0, weight_decay=0.1)
        return [be.to_array(x).tobytes() for x in (t["p"], t["s"], row, col, out)]

    before = build.num_threads()
    try:
        build.set_num_threads(1)
        one = run()
        build.set_num_threads(4)
        four = run()
    finally:
        build.set_num_threads(before)
    assert one == four
