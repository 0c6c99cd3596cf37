"""The inference engine computes the training forward's function (prefill and token-by-token
decode, every activation, bias and head variant), and samples deterministically."""

from __future__ import annotations

import itertools
import math

import pytest

from alpha.core.config import ModelConfig
from alpha.core.rng import Rng, Stream
from alpha.model import GPT, InferenceEngine, sample_from_probs, sample_token
from alpha.tensor import get_backend

import model_checks
from model_checks import decode_on_every_path

REF = get_backend("reference")


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6)
    base.update(kw)
    return ModelConfig(**base)


def perturbed(cfg, backend=REF, dtype="f64", seed=1):
    """model_checks.perturbed, in eval mode."""
    return model_checks.perturbed(cfg, backend, dtype, seed).eval()


def close(a, b, tol):
    a, b = list(a), list(b)
    assert len(a) == len(b)
    worst = max((abs(x - y) for x, y in zip(a, b)), key=lambda d: math.inf if d != d else d)
    assert worst < tol, worst  # a NaN counts as the worst


@pytest.mark.parametrize("act,bias,tied", list(itertools.product(
    ["gelu", "relu", "silu", "swiglu"], [True, False], [True, False])))
def test_engine_matches_training_forward(act, bias, tied):
    cfg = tiny(activation=act, bias=bias, tie_embeddings=tied)
    m = perturbed(cfg)
    B, T, V = 2, 6, 11
    ids = Stream((3, 3)).randint(B * T, V)
    rows = [ids[b * T:(b + 1) * T] for b in range(B)]
    want = list(m.forward(REF.from_array(ids, (B, T), "i32"))[0].to_array())  # (B, T, V)

    eng = InferenceEngine(m, batch_size=B)
    close(eng.prefill(rows, all_logits=True).to_array(), want, 1e-12)  # prefill, all positions
    last = eng.prefill(rows)  # (B, V) of the last position
    close(last.to_array(), [want[(b * T + T - 1) * V + v] for b in range(B) for v in range(V)],
          1e-12)

    # one token at a time
    eng.reset()
    for t in range(T):
        got = eng.forward([[rows[b][t]] for b in range(B)]).to_array()
        close(got, [want[(b * T + t) * V + v] for b in range(B) for v in range(V)], 1e-12)

    # batch 1: prefill a prompt, then decode with the int fast path
    e1 = InferenceEngine(m)
    got = e1.prefill([rows[1][:3]]).to_array()
    close(got, want[(T + 2) * V:(T + 3) * V], 1e-12)
    for t in range(3, T):
        got = e1.decode(rows[1][t]).to_array()
        close(got, want[(T + t) * V:(T + t + 1) * V], 1e-12)
    with pytest.raises(ValueError, match="cache"):
        e1.decode(0)  # past max_len


def test_engine_f32_reference_and_cpu():
    """f32 through the engine stays within f32 rounding of the f64 forward."""
    cfg = tiny(activation="gelu")
    m64 = perturbed(cfg)
    want = list(m64.forward(REF.from_array([1, 2, 3, 4], (1, 4), "i32"))[0].to_array())
    for be in (REF, get_backend("cpu")):
        m = GPT(cfg, be, init=False).eval()
        m.load_state_dict(m64.state_dict())
        got = InferenceEngine(m).prefill([[1, 2, 3, 4]], all_logits=True).to_array()
        close(got, want, 1e-4)


@pytest.mark.parametrize("act,bias", list(itertools.product(
    ["gelu", "relu", "silu", "swiglu", "relu2"], [True, False])))
def test_cpu_fused_decode_is_bit_identical(act, bias):
    """The CPU backend's one-call block (`block_decode`) and one-call step (`decode_step`) give
    the op-by-op decode's exact bits, with 1 and 2 threads."""
    cpu = get_backend("cpu")
    cfg = tiny(activation=act, bias=bias, n_embd=48, n_head=3, vocab_size=40, block_size=12)
    m64 = perturbed(cfg)
    m = GPT(cfg, cpu, init=False).eval()
    m.load_state_dict(m64.state_dict())
    toks = Stream((5, 5)).randint(12, cfg.vocab_size)

    def run():
        eng = InferenceEngine(m)
        rows = [list(eng.prefill([toks[:3]]).to_array())]
        return rows + [list(eng.decode(t).to_array()) for t in toks[3:]]
    runs = decode_on_every_path(m, run)
    assert runs[0] == runs[1] == runs[2] == runs[3]


# ---- sampling -------------------------------------------------------------------------------

def test_sample_token_rules():
    logits = [0.0, 2.0, 1.0, 2.0, -1.0]
    assert sample_token(logits, 0.0) == 1  # greedy: the lowest id among ties
    assert sample_token(logits, 1.0, top_k=1, u=0.99) == 1
    assert sample_token(logits, 1.0, top_p=1e-9, u=0.99) == 1
    # top_k=2 keeps ids 1 and 3 (equal mass): u splits them at 0.5
    assert sample_token(logits, 1.0, top_k=2, u=0.49) == 1
    assert sample_token(logits, 1.0, top_k=2, u=0.51) == 3
    # full distribution: u walks the cumulative mass in id order
    p = [math.exp(v) for v in logits]
    z = sum(p)
    cum = [sum(p[:i + 1]) / z for i in range(5)]
    for i in range(5):
        lo = cum[i - 1] if i else 0.0
        assert sample_token(logits, 1.0, u=(lo + cum[i]) / 2) == i
    # top_p: the smallest most-likely prefix reaching the mass
    ps = sorted(p, reverse=True)
    assert sample_token(logits, 1.0, top_p=(ps[0] + ps[1]) / z - 1e-9, u=0.999) == 3
    assert sample_token(logits, 1.0, top_p=(ps[0] + ps[1]) / z + 1e-6, u=0.999) == 2
    # a high temperature flattens, a low one sharpens
    assert sample_token(logits, 100.0, u=0.1) == 0
    assert sample_token(logits, 0.01, u=0.1) == 1


def _greedy_by_forward(m, prompt, n):
    """Greedy continuation by re-running the training forward on the whole context."""
    ctx = list(prompt)
    out = []
    for _ in range(n):
        win = ctx[-m.cfg.block_size:]
        logits = m.forward(REF.from_array(win, (1, len(win)), "i32"))[0].to_array()
        row = list(logits)[(len(win) - 1) * m.cfg.vocab_size:]
        tok = row.index(max(row))
        out.append(tok)
        ctx.append(tok)
    return out


def test_generate_greedy_matches_forward():
    m = perturbed(tiny(block_size=8))
    eng = InferenceEngine(m)
    got = list(eng.generate([1, 2, 3], max_tokens=5, temperature=0.0))
    assert got == _greedy_by_forward(m, [1, 2, 3], 5)


def test_generate_seeded_stop_and_length():
    m = perturbed(tiny(block_size=8))
    eng = InferenceEngine(m)
    a = list(eng.generate([1, 2], max_tokens=12, temperature=1.0, seed=5))
    b = list(eng.generate([1, 2], max_tokens=12, temperature=1.0, seed=5))
    c = list(eng.generate([1, 2], max_tokens=12, temperature=1.0, seed=6))
    assert a == b and len(a) == 12  # runs past block_size: the window slides
    assert a != c
    # a run's sampling stream advances one word per token
    st = Rng(5).stream("sampling")
    assert list(eng.generate([1, 2], max_tokens=12, temperature=1.0, stream=st)) == a
    assert st.position == 12
    # stop tokens end generation (not yielded) and say why
    stop = a[3]
    gen = eng.generate([1, 2], max_tokens=12, temperature=1.0, seed=5, stop_tokens=[stop])
    out = []
    try:
        while True:
            out.append(next(gen))
    except StopIteration as e:
        why = e.value
    assert out == a[:a.index(stop)] and why == "stop"
    gen = eng.generate([1, 2], max_tokens=3, temperature=1.0, seed=5)
    assert [next(gen) for _ in range(3)] == a[:3]
    with pytest.raises(StopIteration) as e:
        next(gen)
    assert e.value.value == "length"
    assert list(eng.generate([1, 2], max_tokens=0)) == []
    # long prompts keep their last block_size tokens
    assert len(list(eng.generate(list(range(11)) * 2, max_tokens=2, temperature=0.0))) == 2
    with pytest.raises(ValueError):
        list(eng.generate([], max_tokens=2))
    with pytest.raises(ValueError):
        eng.decode(11)  # outside the vocabulary


def test_device_softmax_sampling_matches_sample_token():
    """Plain temperature sampling (softmax on the backend) picks what `sample_token` picks."""
    m = perturbed(tiny(block_size=8))
    got = list(InferenceEngine(m).generate([1, 2], max_tokens=6, temperature=0.7, seed=3))
    st = Rng(3).stream("sampling")
    ctx, want = [1, 2], []
    for _ in range(6):
        logits = list(m.forward(REF.from_array(ctx, (1, len(ctx)), "i32"))[0].to_array())
        tok = sample_token(logits[-11:], 0.7, u=st.random())
        want.append(tok)
        ctx.append(tok)
    assert got == want
    probs = [0.1, 0.0, 0.6, 0.3]
    assert [sample_from_probs(probs, u) for u in (0.0, 0.09, 0.11, 0.69, 0.71, 0.999)] == \
        [0, 0, 2, 2, 3, 3]
