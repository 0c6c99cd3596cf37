"""Activation checkpointing (--activation-checkpointing): the gradients are the same bits with and
without it — dropout on, two micro-batches adding into the gradient buffer, GPT-2's block and
the blocks of the architecture options — on the CPU and on helios (lavapipe, in a subprocess);
the peak tensor memory of a step really drops (host and device); a training run
with it follows the plain run's losses bit for bit and resumes exactly; the data-parallel
gradient sync still sees which op completes each block's parameters."""

from __future__ import annotations

import json

import pytest
from ckpt_helpers import peak_of_step, step_both_ways
from test_helios import _py
from test_trainer import data_file, losses, tiny  # noqa: F401  (data_file: a fixture)

from alpha.core.config import ModelConfig
from alpha.core.rng import Rng
from alpha.dist.grads import first_uses
from alpha.model.gpt import GPT
from alpha.tensor import get_backend
from alpha.train import checkpoint as ckpt_format
from alpha.train import restore
from alpha.train.trainer import Trainer

CFG = dict(n_layer=3, n_head=2, n_embd=16, block_size=8, vocab_size=13, dropout=0.2)
# every block option of issue 14 at once
MODERN = dict(pos="rope", attn_softcap=2.0, norm="rmsnorm", qk_norm=True, logit_softcap=5.0,
              activation="relu2")


def test_cpu_gradients_identical_bit_for_bit():
    got = step_both_ways(get_backend("cpu"), ModelConfig(**CFG))
    plain, ckpt = got[False], got[True]
    assert plain[-1] > 0  # dropout drew masks
    assert plain == ckpt  # both losses, every gradient, the dropout stream: the same bits


@pytest.mark.parametrize("options", [
    dict(activation="swiglu", bias=False, tie_embeddings=False),
    dict(pos="rope", attn_softcap=2.0),
    dict(norm="rmsnorm", qk_norm=True, logit_softcap=5.0, activation="relu2"),
    MODERN,
], ids=["swiglu-nobias-untied", "rope-softcap", "rmsnorm-qknorm-relu2", "all"])
def test_cpu_gradients_identical_other_blocks(options):
    """Other block shapes go through the same `_block`: still the same bits."""
    got = step_both_ways(get_backend("cpu"), ModelConfig(**dict(CFG, **options)))
    assert got[False] == got[True]


def test_helios_gradients_identical_and_less_device_memory():
    r = _py(f"""
        import json, sys
        sys.path.insert(0, "tests")
        from ckpt_helpers import peak_of_step, step_both_ways
        from alpha.core.config import ModelConfig
        from alpha.tensor import get_backend
        from ckpt_helpers import peak_of_step
        be = get_backend("helios")
        got = step_both_ways(be, ModelConfig(**{CFG!r}))
        modern = step_both_ways(be, ModelConfig(**{dict(CFG, **MODERN)!r}))
        peaks = [peak_of_step(be, False), peak_of_step(be, True)]
        print(json.dumps([got[False] == got[True], got[False][-1], modern[False] == modern[True],
                          peaks]))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    same, dropout_words, same_modern, (plain, ckpt) = json.loads(
        r.stdout.strip().splitlines()[-1])
    assert dropout_words > 0 and same and same_modern
    assert 0 < ckpt < 0.5 * plain, (ckpt, plain)  # device memory: the pool's high-water mark


def test_checkpointing_lowers_the_peak_tensor_memory():
    """Six blocks: without checkpointing the step holds six blocks' intermediates and their
    gradients, with it one block's plus a (B, T, C) input and gradient per block."""
    be = get_backend("cpu")
    plain, ckpt = peak_of_step(be, False), peak_of_step(be, True)
    assert 0 < ckpt < 0.5 * plain, (ckpt, plain)


def test_memory_meter_counts_allocations_and_frees():
    be = get_backend("cpu")
    be.reset_peak_memory()
    start = be.memory_stats()
    t = be.empty((1000,))
    assert be.memory_stats()["in_use"] == start["in_use"] + 4000
    del t
    stats = be.memory_stats()
    assert stats["in_use"] == start["in_use"] and stats["peak"] >= start["in_use"] + 4000


def test_dist_sync_sees_each_blocks_parameters():
    """alpha.dist.grads reads the recorded closures to know when a bucket is complete: with
    checkpointing every parameter is still found, each block's in its own (recompute) op."""
    model = GPT(ModelConfig(**CFG), get_backend("cpu"), Rng(1)).train()
    model.checkpointing = True
    ids = model.backend.from_array([1] * 16, (2, 8), "i32")
    model.forward(ids, ids)
    names = {id(v): n for n, v in model.vars.items()}
    uses = first_uses(model.tape.recorded(), names)
    assert set(uses) == set(model.vars)
    ops_of_block = [{uses[n] for n in model.vars if n.startswith(f"h.{i}.")} for i in range(3)]
    assert all(len(ops) == 1 for ops in ops_of_block)
    assert len({min(ops) for ops in ops_of_block}) == 3  # three distinct ops, one per block
    model.backward()


def test_training_matches_and_resumes_bit_exactly(data_file, tmp_path):  # noqa: F811
    """The same run with and without checkpointing: the same losses, bit for bit (dropout and
    accumulation on). The option is saved in the checkpoint, and resuming it is bit-exact."""
    common = dict(accum_steps=2, model={"n_layer": 2, "dropout": 0.1})
    plain = Trainer(tiny(data_file, tmp_path / "a", **common), out=None).train()
    cfg = tiny(data_file, tmp_path / "b", activation_checkpointing=True, **common)
    full = Trainer(cfg, out=None).train()
    assert plain.status == full.status == "completed"
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert plain.val_loss == full.val_loss

    ck = ckpt_format.load(str(tmp_path / "b" / "checkpoints" / "step-3.ckpt"))
    saved = restore.config_of(ck)  # what `train --resume` starts from
    assert saved.train.activation_checkpointing is True
    resumed = Trainer(saved, resume=ck, run_dir=str(tmp_path / "c"), out=None).train()
    assert losses(tmp_path / "b")[3:] == losses(tmp_path / "c")
    assert resumed.val_loss == full.val_loss
    pb = ckpt_format.load(str(tmp_path / "b" / "checkpoints" / "step-6.ckpt")).tensors
    pc = ckpt_format.load(str(tmp_path / "c" / "checkpoints" / "step-6.ckpt")).tensors
    assert pb["params"] == pc["params"] and pb["v"] == pc["v"]


def test_memory_budget_counts_one_block_of_activations():
    """The planner before training (alpha.train.budget) knows what checkpointing keeps."""
    from alpha.train import budget

    cfg = ModelConfig(n_layer=12, n_head=4, n_embd=256, block_size=256, vocab_size=4096)
    plain = budget.estimate(cfg, 16)
    ckpt = budget.estimate(cfg, 16, checkpointing=True)
    assert ckpt.weights_bytes == plain.weights_bytes
    assert ckpt.activation_bytes < 0.4 * plain.activation_bytes


def test_two_mpi_ranks_with_checkpointing_match_without(tmp_path):
    """Under mpirun each block's gradient bucket is reduced right after its recompute's backward
    (tiny buckets: one per parameter or so); the losses are those of the same run without
    checkpointing, bit for bit."""
    from test_dist import MPIRUN, TEXT, TINY, alpha_cmd, mpirun_cmd, need_mpi, run
    from test_dist import losses as dist_losses

    need_mpi()
    assert MPIRUN
    (tmp_path / "data.txt").write_text(TEXT)
    got = {}
    for name, extra in (("plain", []), ("ckpt", ["--activation-checkpointing"])):
        r = run(mpirun_cmd(2, *alpha_cmd("train", "--data", "data.txt", *TINY, "--iters", "4",
                                         "--run-dir", name, "--distributed", *extra)),
                cwd=tmp_path, ALPHA_DIST_BUCKET_MB="0.004")
        assert r.returncode == 0, r.stdout + r.stderr
        got[name] = dist_losses(str(tmp_path / name))
    assert sorted(got["plain"]) == [1, 2, 3, 4]
    assert got["plain"] == got["ckpt"]
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["train"]["activation_checkpointing"] is True
