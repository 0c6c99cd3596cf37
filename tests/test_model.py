"""The GPT: parameter table and count, init statistics, whole-model gradients against finite
differences (float64, reference backend) for every activation / bias / head variant, the forward
against a naive float64 re-implementation, dropout determinism, state dicts, cpu vs reference."""

from __future__ import annotations

import itertools
import math

import pytest

from alpha.core.config import ModelConfig
from alpha.core.errors import CheckpointError
from alpha.core.rng import Rng, Stream
from alpha.model import GPT, decay_ranges, num_params, param_offsets, param_table
from alpha.tensor import get_backend
from model_checks import assert_backends_agree, assert_grads_match_fd, naive_logits

REF = get_backend("reference")


CPU = get_backend("cpu")


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6)
    base.update(kw)
    return ModelConfig(**base)


def batch(backend, B=2, T=5, V=11, seed=0):
    s = Stream((seed, 1))
    ids = s.randint(B * T, V)
    tg = s.randint(B * T, V)
    return (backend.from_array(ids, (B, T), "i32"), backend.from_array(tg, (B, T), "i32"),
            [ids[b * T:(b + 1) * T] for b in range(B)], tg)


# ---- the parameter table ----------------------------------------------------------------------

def test_gpt2_small_parameter_count():
    cfg = ModelConfig(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024)
    assert num_params(cfg) == 124_439_808  # GPT-2 small, as published
    untied = ModelConfig(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024,
                         tie_embeddings=False)
    assert num_params(untied) == 124_439_808 + 50257 * 768


@pytest.mark.parametrize("act,bias,tied", itertools.product(
    ["gelu", "swiglu"], [True, False], [True, False]))
def test_table_layout_and_decay_ranges(act, bias, tied):
    cfg = tiny(activation=act, bias=bias, tie_embeddings=tied, ffn_dim=12)
    table = param_table(cfg)
    names = [n for n, _ in table]
    assert len(names) == len(set(names))
    assert ("lm_head.weight" in names) == (not tied)
    assert any(n.endswith(".bias") for n in names) == bias
    C, H = 8, 12
    fc = dict(table)["h.0.mlp.c_fc.weight"]
    assert fc == (C, 2 * H if act == "swiglu" else H)
    assert dict(table)["h.1.mlp.c_proj.weight"] == (H, C)
    assert dict(table)["h.0.attn.c_attn.weight"] == (C, 3 * C)
    r = decay_ranges(cfg)
    offsets = param_offsets(cfg)
    assert r["decay"][0] == 0 and r["decay"][1] == r["no_decay"][0]
    assert r["no_decay"][1] == num_params(cfg) == sum(math.prod(s) for _, s in table)
    for name, (off, shape) in offsets.items():
        decayed = off < r["decay"][1]
        want = len(shape) == 2 and name not in ("wte", "wpe")
        assert decayed == want, name
        assert off + math.prod(shape) <= r["decay"][1] or off >= r["decay"][1]


def test_model_views_share_flat_buffers():
    m = GPT(tiny(), REF, Rng(0), dtype="f64")
    assert m.num_params() == num_params(m.cfg) == m.params.numel == m.grads.numel
    views = m.parameters()
    assert list(views) == [n for n, _ in m.table]
    REF.fill(m.params, 0.5)
    assert set(views["h.1.mlp.c_fc.weight"].to_array()) == {0.5}
    groups = m.param_groups()
    assert [g[2] for g in groups] == [True, False]
    assert sum(g[0].numel for g in groups) == m.num_params()


def test_init_statistics():
    try:
        be = get_backend("cpu")
        be.rng_normal(be.empty((4,)), (1, 2), 0)
        cfg = ModelConfig(vocab_size=512, n_layer=4, n_head=4, n_embd=64, block_size=64)
    except Exception:  # noqa: BLE001 — the cpu backend may not be there yet
        be = REF
        cfg = ModelConfig(vocab_size=256, n_layer=4, n_head=2, n_embd=32, block_size=32)
    m = GPT(cfg, be, Rng(7))
    for name, t in m.parameters().items():
        vals = list(t.to_array())
        n = len(vals)
        if name.endswith(".bias"):
            assert set(vals) == {0.0}, name
            continue
        if "ln_" in name:
            assert set(vals) == {1.0}, name
            continue
        std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
        mean = sum(vals) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / n)
        assert abs(mean) < 5 * std / math.sqrt(n), (name, mean)
        assert abs(sd / std - 1) < 6 / math.sqrt(2 * n) + 0.01, (name, sd, std)
    # the same seed gives the same weights; another seed does not
    again = GPT(cfg, be, Rng(7))
    assert list(again.params.to_array()) == list(m.params.to_array())
    other = GPT(cfg, be, Rng(8))
    assert list(other.params.to_array()) != list(m.params.to_array())


# ---- gradients ------------------------------------------------------------------------------

VARIANTS = list(itertools.product(["gelu", "relu", "silu", "swiglu"], [True, False], [True, False]))


@pytest.mark.parametrize("act,bias,tied", VARIANTS)
def test_model_gradients_match_finite_differences(act, bias, tied):
    cfg = tiny(activation=act, bias=bias, tie_embeddings=tied, n_layer=2 if act == "gelu" else 1)
    m = GPT(cfg, REF, Rng(11), dtype="f64")
    # larger weights than GPT-2's init so every path carries a visible gradient
    s = Stream((5, 5))
    REF.copy(m.params, REF.from_array(
        [v + 0.3 * z for v, z in zip(m.params.to_array(), s.normal(m.n_params))],
        (m.n_params,), "f64"))
    ids, tg, _, _ = batch(REF)
    assert_grads_match_fd(m, ids, tg, Stream((13, 1)))


def test_gradients_accumulate_until_zero_grad():
    m = GPT(tiny(), REF, Rng(1), dtype="f64")
    ids, tg, _, _ = batch(REF)
    m.forward(ids, tg)
    m.backward()
    g1 = list(m.grads.to_array())
    m.forward(ids, tg)
    m.backward()
    g2 = list(m.grads.to_array())
    assert all(abs(b - 2 * a) < 1e-12 for a, b in zip(g1, g2))
    m.zero_grad()
    assert set(m.grads.to_array()) == {0.0}
    with pytest.raises(RuntimeError):
        m.backward()  # nothing recorded since the last backward


# ---- the forward against a naive float64 GPT ----------------------------------------------------

@pytest.mark.parametrize("cfg", [
    tiny(),
    tiny(activation="swiglu", bias=False, tie_embeddings=False, ffn_dim=12),
])
def test_forward_matches_naive_float64(cfg):
    m = GPT(cfg, REF, Rng(2), dtype="f64").eval()
    ids, tg, ids_list, tg_list = batch(REF)
    logits, loss = m.forward(ids, tg)
    P = {k: list(v) for k, v in m.state_dict().items()}
    want = naive_logits(cfg, P, ids_list)
    got = list(logits.to_array())
    flat = [v for b in want for t in b for v in t]
    assert all(abs(a - b) < 1e-12 for a, b in zip(got, flat))  # (all: a NaN fails)
    rows = [flat[i * 11:(i + 1) * 11] for i in range(10)]
    ce = sum(math.log(sum(math.exp(v) for v in r)) - r[t] for r, t in zip(rows, tg_list)) / 10
    assert abs(loss.item() - ce) < 1e-12
    assert m.forward(ids)[1] is None


# ---- dropout --------------------------------------------------------------------------------

def test_dropout_masks_are_deterministic_from_the_seed():
    cfg = tiny(dropout=0.3)
    ids, tg, _, _ = batch(REF)
    a, b = GPT(cfg, REF, Rng(4), dtype="f64"), GPT(cfg, REF, Rng(4), dtype="f64")
    la1 = a.forward(ids, tg)[1].item()
    state = a.rng.state()
    la2 = a.forward(ids, tg)[1].item()
    assert b.forward(ids, tg)[1].item() == la1
    assert la2 != la1  # the dropout stream moved on
    a.rng = Rng.from_state(state)
    assert a.forward(ids, tg)[1].item() == la2  # resuming reproduces the masks
    # eval: no dropout, no stream use -> the dropout-free model's loss
    pos = a.rng.stream("dropout").position
    lev = a.eval().forward(ids, tg)[1].item()
    assert a.rng.stream("dropout").position == pos
    plain = GPT(tiny(), REF, Rng(4), dtype="f64").eval()
    assert abs(plain.forward(ids, tg)[1].item() - lev) < 1e-12


def test_dropout_gradients_match_finite_differences():
    cfg = tiny(dropout=0.25, n_layer=1)
    m = GPT(cfg, REF, Rng(9), dtype="f64")
    ids, tg, _, _ = batch(REF)
    st = m.rng.stream("dropout")
    start = st.position
    m.forward(ids, tg)
    m.backward()
    grads = list(m.grads.to_array())
    base = list(m.params.to_array())
    pick = Stream((2, 2))
    h = 1e-5
    for i in pick.randint(24, m.n_params):
        out = []
        for d in (h, -h):
            vals = list(base)
            vals[i] += d
            REF.copy(m.params, REF.from_array(vals, (m.n_params,), "f64"))
            st.position = start  # the same masks
            out.append(m.forward(ids, tg)[1].item())
        fd = (out[0] - out[1]) / (2 * h)
        assert abs(fd - grads[i]) <= 1e-6 * (1 + abs(fd)), (i, fd, grads[i])


# ---- state dicts ------------------------------------------------------------------------------

def test_state_dict_round_trip_and_errors():
    a = GPT(tiny(), REF, Rng(1))
    b = GPT(tiny(), REF, Rng(2))
    state = a.state_dict()
    assert list(state) == [n for n, _ in a.table]
    b.load_state_dict(state)
    assert list(b.params.to_array()) == list(a.params.to_array())
    bad = dict(state)
    bad.pop("wpe")
    with pytest.raises(CheckpointError, match="wpe"):
        b.load_state_dict(bad)
    bad = dict(state, extra=[1.0])
    with pytest.raises(CheckpointError, match="extra"):
        b.load_state_dict(bad)
    bad = dict(state, wpe=[0.0])
    with pytest.raises(CheckpointError, match="wpe"):
        b.load_state_dict(bad)


def test_sequence_longer_than_block_size_is_refused():
    m = GPT(tiny(block_size=4), REF, Rng(1))
    ids = REF.from_array([1] * 5, (1, 5), "i32")
    with pytest.raises(ValueError, match="block_size"):
        m.forward(ids)


# ---- cpu against reference ----------------------------------------------------------------------

@pytest.mark.parametrize("act,bias,tied", [("gelu", True, True), ("swiglu", False, False),
                                           ("relu", True, False), ("silu", False, True)])
def test_cpu_matches_reference(act, bias, tied):
    cpu = CPU
    cfg = tiny(activation=act, bias=bias, tie_embeddings=tied)
    ref = GPT(cfg, REF, Rng(3))
    s = Stream((8, 8))
    REF.copy(ref.params, REF.from_array(
        [v + 0.2 * z for v, z in zip(ref.params.to_array(), s.normal(ref.n_params))],
        (ref.n_params,)))
    fast = GPT(cfg, cpu, Rng(3), init=False)
    fast.load_state_dict(ref.state_dict())
    ref.load_state_dict(ref.state_dict())  # both start from the same f32 values
    assert_backends_agree(ref, fast, batch)
