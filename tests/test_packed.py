"""The packed loader (--packed): every window once per epoch in a seeded shuffled order, a new
order each epoch, exact resume mid-epoch, the epoch count in the metrics. Tokens that are their own
positions make coverage a set comparison."""

from __future__ import annotations

import pytest

from alpha.core.errors import DataError
from alpha.core.rng import Rng
from alpha.train import checkpoint as ckpt_format
from alpha.train.sampler import BatchSampler
from alpha.train.trainer import Trainer

from test_trainer import TEXT, rows, tiny

N, B, T = 1003, 4, 10  # 100 windows of 10 (+1 target), 25 batches an epoch; 2 spare positions


def test_every_position_once_per_epoch_new_order_each_epoch():
    s = BatchSampler(list(range(N)), B, T, Rng(5), mode="packed")
    W = s.windows_per_epoch
    assert W == 100
    targets = []
    for _ in range(W // B):
        targets.extend(s.next_batch()[1])
    o = s.offset
    assert 0 <= o <= N - 1 - W * T
    assert sorted(targets) == list(range(o + 1, o + W * T + 1))  # each target exactly once
    assert s.epoch == 0 and s.epochs == 1.0
    # the second epoch: every window once again, in another order
    order1 = list(s.order)
    s.next_batch()
    assert s.epoch == 1 and s.epochs == 1 + B / W
    assert list(s.order) != order1 and sorted(s.order) == list(range(W))
    # another seed draws another order; the same seed the same one
    a = BatchSampler(list(range(N)), B, T, Rng(5), mode="packed")
    b = BatchSampler(list(range(N)), B, T, Rng(6), mode="packed")
    assert a.next_batch() != b.next_batch()
    a2 = BatchSampler(list(range(N)), B, T, Rng(5), mode="packed")
    a2.next_batch()
    assert a.next_batch() == a2.next_batch()


def test_x_and_y_are_windows_of_the_tokens():
    s = BatchSampler(list(range(N)), B, T, Rng(1), mode="packed")
    x, y = s.next_batch()
    for r in range(B):
        row_x, row_y = list(x[r * T:(r + 1) * T]), list(y[r * T:(r + 1) * T])
        assert row_x == list(range(row_x[0], row_x[0] + T))
        assert row_y == [v + 1 for v in row_x]
        assert (row_x[0] - s.offset) % T == 0


@pytest.mark.parametrize("drawn", [0, 1, 12, 25, 26, 60])
def test_resume_mid_epoch_draws_the_same_batches(drawn):
    """A sampler restored from state() after `drawn` batches (before, inside, and across an epoch
    boundary) continues exactly as the original."""
    s = BatchSampler(list(range(N)), B, T, Rng(9), mode="packed")
    for _ in range(drawn):
        s.next_batch()
    state = s.state()
    twin = BatchSampler(list(range(N)), B, T, Rng(9), mode="packed")
    twin.restore(state)
    for _ in range(45):
        assert s.next_batch() == twin.next_batch()
    assert s.state() == twin.state()


def test_restore_refuses_another_mode():
    s = BatchSampler(list(range(N)), B, T, Rng(9), mode="packed")
    s.next_batch()
    with pytest.raises(DataError, match="mode"):
        BatchSampler(list(range(N)), B, T, Rng(9)).restore(s.state())


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


def test_packed_training_resumes_bit_exactly_mid_epoch(data_file, tmp_path):
    """--packed with an epoch of about 12 steps: the run crosses an epoch boundary; resuming from
    step 7 (mid-epoch) reproduces steps 8..14 bit for bit, epoch column included."""
    cfg = tiny(data_file, tmp_path / "a", iters=14, batch_size=8, packed=True,
               checkpoint_interval=7, eval_interval=0, warmup_iters=2)
    full = Trainer(cfg, out=None)
    W = full.sampler.windows_per_epoch
    full.train()
    a = rows(tmp_path / "a" / "metrics.jsonl")
    assert [r["epoch"] for r in a] == pytest.approx([8 * i / W for i in range(1, 15)])
    assert a[-1]["epoch"] > 1.0  # crossed into the second epoch
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-7.ckpt"))
    assert ck.header["data"]["mode"] == "packed" and 0 < ck.header["data"]["index"] < W
    Trainer(cfg, resume=ck, run_dir=str(tmp_path / "b"), out=None).train()
    b = rows(tmp_path / "b" / "metrics.jsonl")
    assert [(r["loss"], r["epoch"]) for r in b] == [(r["loss"], r["epoch"]) for r in a[7:]]
    pa = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-14.ckpt")).tensors
    pb = ckpt_format.load(str(tmp_path / "b" / "checkpoints" / "step-14.ckpt")).tensors
    assert pa["params"] == pb["params"]
