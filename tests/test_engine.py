"""The serving engine: a sequence's logits are the same bits alone or batched with 31 others (fused
and op-by-op decode), its tokens the same whatever else runs, and prompts are prefilled in chunks."""

from __future__ import annotations

import math
import re
import threading
import time

import pytest

from alpha.core.config import ModelConfig
from alpha.core.rng import Rng, Stream
from alpha.model import GPT, KVCache
from alpha.model.engine import Engine, QueueFull, SamplingParams
from alpha.tensor import get_backend

CPU = get_backend("cpu")


def _model(act="gelu", bias=True, tied=True, n_head=5):
    # odd sizes: vector tails everywhere (C 40, heads of 8, hidden 160, vocab 301); n_head=4 is
    # C 64, heads of 16: one vector, what the CPU's whole-row attention needs
    cfg = ModelConfig(vocab_size=301, n_layer=2, n_head=n_head, n_embd=40 if n_head != 4 else 64,
                      block_size=40, activation=act, bias=bias, tie_embeddings=tied)
    m = GPT(cfg, CPU, Rng(7)).eval()
    noise = Stream((7, 7)).normal(m.n_params)  # weights big enough that every layer matters
    CPU.copy(m.params, CPU.from_array([v + 0.2 * z for v, z in zip(m.params.to_array(), noise)],
                                      (m.n_params,)))
    return m


@pytest.mark.parametrize("act,bias,tied,n_head", [("gelu", True, True, 5),
                                                   ("swiglu", False, False, 5),
                                                   ("gelu", True, False, 4)])
def test_decode_logits_are_batch_invariant_bitwise(act, bias, tied, n_head):
    """A row's logits are the same bits alone or among 31 (or 4) others, fused or op by op;
    n_head=4 (C 64) has heads of one vector, n_head=5 heads of 8 (scalar tails)."""
    m = _model(act, bias, tied, n_head)
    S, V = 32, m.cfg.vocab_size
    cache = KVCache(m, S)
    st = Stream((1, 2))
    for s in range(S):  # every slot at its own length
        n = 1 + s % 13
        m.forward(CPU.from_array(st.randint(n, V), (1, n), "i32"), cache=cache, slots=[s],
                  last_only=True)
    lengths = list(cache.lengths)
    toks = st.randint(S, V)

    def step(slots, fused):  # fused: the CPU's one-call step (decode_step); else op by op
        m.fused_decode = m.step_decode = fused
        for s in slots:
            cache.lengths[s] = lengths[s]
        ids = CPU.from_array([toks[s] for s in slots], (len(slots), 1), "i32")
        out = list(m.forward(ids, cache=cache, slots=slots, last_only=True).to_array())
        return {s: out[i * V:(i + 1) * V] for i, s in enumerate(slots)}

    for fused in (True, False):
        everyone = step(list(range(S)), fused)
        for s in (0, 5, 17, 31):
            assert step([s], fused)[s] == everyone[s], (fused, s)
        some = step([31, 2, 17, 9, 5], fused)  # any order, any subset
        assert all(some[s] == everyone[s] for s in some)
    assert m.fused_decode is m.step_decode is False  # (the last loop ran op by op)
    m.fused_decode = m.step_decode = True
    # the fused block and the op-by-op path agree bit for bit
    assert step(list(range(S)), True) == step(list(range(S)), False)


def _collect(handle):
    out = {}
    for i, kind, value in handle:
        out.setdefault(i, []).append(value.id if kind == "token" else value)
    return out


def test_engine_tokens_do_not_depend_on_the_batch():
    m = _model()
    eng = Engine(m, max_batch=32, max_queue=64, prefill_chunk=8)
    try:
        st = Stream((4, 4))
        prompts = [st.randint(1 + 3 * i % 14, m.cfg.vocab_size) for i in range(32)]
        params = [SamplingParams(max_tokens=25, temperature=0.8, seed=i,
                                 top_k=7 if i % 4 == 1 else 0, top_p=0.9 if i % 4 == 2 else 1.0,
                                 frequency_penalty=0.5 if i % 4 == 3 else 0.0)
                  for i in range(32)]
        alone = [_collect(eng.submit([prompts[i]], params[i])) for i in range(32)]
        together = [None] * 32

        def run(i):
            together[i] = _collect(eng.submit([prompts[i]], params[i]))
        threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert together == alone
        assert all(len(a[0]) == 26 and a[0][-1] == "length" for a in alone)
        # n choices draw from their own streams; choice 0 is the n=1 sequence
        two = _collect(eng.submit([prompts[3]], params[3], n=2))
        assert two[0] == alone[3][0] and two[1] != two[0]
        # greedy ignores the seed; a stop token ends with "stop" and is not emitted
        g1 = _collect(eng.submit([prompts[0]], SamplingParams(max_tokens=10, temperature=0,
                                                              seed=1)))
        g2 = _collect(eng.submit([prompts[0]], SamplingParams(max_tokens=10, temperature=0,
                                                              seed=2)))
        assert g1 == g2
        stop = g1[0][4]
        g3 = _collect(eng.submit([prompts[0]], SamplingParams(max_tokens=10, temperature=0,
                                                              stop_tokens=(stop,))))
        assert g3[0] == g1[0][:g1[0].index(stop)] + ["stop"]
        # the context ends generation with "length"
        long = _collect(eng.submit([prompts[0][:1] * 38], SamplingParams(temperature=0)))
        assert len(long[0]) == 1 + 40 - 38 + 1 and long[0][-1] == "length"
    finally:
        eng.close()


def test_prefill_chunks_and_queue_limit():
    m = _model()
    eng = Engine(m, max_batch=1, max_queue=1, prefill_chunk=4)
    try:
        st = Stream((5, 5))
        prompt = st.randint(30, m.cfg.vocab_size)
        p = SamplingParams(max_tokens=6, temperature=0.5, seed=3)
        a = _collect(eng.submit([prompt], p))
        eng2 = Engine(m, max_batch=4, prefill_chunk=64)  # one chunk: the same tokens
        try:
            assert _collect(eng2.submit([prompt], p)) == a
        finally:
            eng2.close()
        # one slot, one queue place: a third request is refused
        long = SamplingParams(temperature=0.5, seed=1)
        h1 = eng.submit([prompt[:2]], long)
        h2 = eng.submit([prompt[:2]], long)
        with pytest.raises(QueueFull):
            eng.submit([prompt[:2]], long)
        h1.cancel()
        h2.cancel()
    finally:
        eng.close()


def test_a_wave_of_prompts_is_prefilled_together_and_a_late_one_a_chunk_a_step():
    """Prompts that outnumber the running sequences share a step (one chunk each, here all four
    in the first step); a long prompt that arrives while they decode holds them back by one
    chunk per step, as before."""
    m = _model()
    steps = []
    eng = Engine(m, max_batch=8, prefill_chunk=4,
                 observer=lambda ev, **v: steps.append((v["batch"], v["prefill_tokens"]))
                 if ev == "step" else None)
    try:
        st = Stream((9, 9))
        wave = [st.randint(4, m.cfg.vocab_size) for _ in range(4)]
        h = eng.submit(wave, SamplingParams(max_tokens=30, temperature=0.5, seed=2))
        for _ in range(4 * 2):  # every sequence has sampled its first token
            assert h.get(timeout=10)[1] == "token"
        assert steps[0] == (4, 16), steps  # all four prompts in one forward, then decoding
        seen = len(steps)
        late = eng.submit([st.randint(12, m.cfg.vocab_size)],
                          SamplingParams(max_tokens=1, temperature=0, seed=1))
        assert [kind for _, kind, _ in late] == ["token", "done"]
        deadline = time.monotonic() + 5  # the last chunk's step is reported after its token
        while sum(tokens for _, tokens in steps[seen:]) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        prefills = [tokens for _, tokens in steps[seen:] if tokens]
        assert prefills == [4, 4, 4], steps[seen:]  # 1 prompt beside 4 running: a chunk a step
        h.cancel()
    finally:
        eng.close()


def test_prefill_logits_do_not_depend_on_batch_or_chunks():
    """A prompt's prefill logits are the same bits alone, batched with other prompts of its
    length (the engine's grouped prefill), or cut into chunks (products are `matmul_rows`)."""
    m = _model()
    V = m.cfg.vocab_size
    st = Stream((6, 6))
    prompts = [st.randint(12, V) for _ in range(5)]
    cache = KVCache(m, 5)

    def prefill(slots, cuts=(0, 12)):
        for s in slots:
            cache.reset(s)
        for a, b in zip(cuts, cuts[1:]):
            ids = CPU.from_array([t for s in slots for t in prompts[s][a:b]], (len(slots), b - a),
                                 "i32")
            out = list(m.forward(ids, cache=cache, slots=slots, last_only=True).to_array())
        return {s: out[i * V:(i + 1) * V] for i, s in enumerate(slots)}

    alone = {s: prefill([s])[s] for s in range(5)}
    assert prefill([3, 0, 4, 1, 2]) == alone
    assert prefill([2, 4], cuts=(0, 5, 8, 12)) == {s: alone[s] for s in (2, 4)}


@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_rows_rows_are_bitwise_those_of_one_row(trans_b):
    """Any row count (the 8-row tiles, the 4-row groups, column tails) gives each row the bits of
    the same row alone, and the float64 product within float32 rounding."""
    st = Stream((8, 8))
    M, K, N = 37, 45, 301
    a = st.normal(M * K)
    b = st.normal(K * N)
    A = CPU.from_array(a, (M, K))
    B = CPU.from_array(b, (N, K) if trans_b else (K, N))
    out = CPU.empty((M, N))
    CPU.matmul_rows(out, A, B, trans_b=trans_b)
    got = out.to_array()
    for m in (0, 5, 8, 17, 36):
        one = CPU.empty((1, N))
        CPU.matmul_rows(one, CPU.from_array(a[m * K:(m + 1) * K], (1, K)), B, trans_b=trans_b)
        assert one.to_array() == got[m * N:(m + 1) * N], m
    for m in (0, 36):
        for n in (0, 47, 48, 300):
            want = math.fsum(a[m * K + k] * (b[n * K + k] if trans_b else b[k * N + n])
                             for k in range(K))
            assert abs(got[m * N + n] - want) <= 1e-4 * (1 + abs(want))


def test_packed_weights_give_matmul_rows_bits():
    """decode_step's weights packed in panels (alpha_pack_panels; 48-column panels, the last one
    narrower) give every row count the bits of matmul_rows on the weights as they are."""
    from alpha.tensor.cpu_kernels import ptr

    st = Stream((9, 9))
    for M, K, N in ((1, 45, 301), (3, 45, 301), (4, 64, 48), (8, 64, 100), (9, 37, 16),
                    (33, 45, 301)):
        A = CPU.from_array(st.normal(M * K), (M, K))
        B = CPU.from_array(st.normal(K * N), (K, N))
        want = CPU.empty((M, N))
        CPU.matmul_rows(want, A, B)
        packed, got = CPU.empty((K * N,)), CPU.empty((M, N))
        CPU.k.alpha_pack_panels(ptr(packed), ptr(B), N, K, N)
        assert packed.to_array() != B.to_array() or N <= 48  # reordered: a real packing
        CPU.k.alpha_sgemm_rows_packed(M, N, K, ptr(A), K, 1, ptr(packed), ptr(got), N)
        assert got.to_array() == want.to_array(), (M, K, N)


def test_engine_profile_splits_each_wave(monkeypatch):
    """ALPHA_ENGINE_PROFILE=1: one line per wave (engine busy -> idle) with its steps, tokens and
    the engine thread's time split, the decode forward split further by the C counters."""
    monkeypatch.setenv("ALPHA_ENGINE_PROFILE", "1")
    eng = Engine(_model(), max_batch=4, prefill_chunk=16)
    lines = []
    eng.profile.log = lines.append
    try:
        p = SamplingParams(max_tokens=5, temperature=0.5, seed=3)
        handles = [eng.submit([[1, 2, 3]], p), eng.submit([[4, 5]], p)]
        assert all(len(_collect(h)[0]) == 6 for h in handles)  # 5 tokens, then "length"
        for _ in range(200):  # the line comes once the engine finds nothing to do
            if lines:
                break
            threading.Event().wait(0.01)
    finally:
        eng.close()
    assert len(lines) == 1, lines
    line = lines[0]
    assert "10 tokens" in line and "mean batch" in line, line
    shares = [float(x) for x in re.findall(r"(\d+)%", line)]
    parts = dict(zip(("between", "prefill", "forward", "products", "attention", "other", "head",
                      "sample", "emit"), shares))
    assert len(shares) == 9 and parts["forward"] > 0 and parts["products"] > 0, line
    top = [parts[k] for k in ("between", "prefill", "forward", "sample", "emit")]
    assert 95 <= sum(top) <= 105, line  # the phases cover the wave (each rounded)


def test_step_ops_check_their_ids():
    """decode_step and prefill_step refuse a token id outside the vocabulary (ValueError) before
    touching the cache."""
    m = _model()
    cache = KVCache(m, 2)
    with pytest.raises(ValueError, match="outside"):
        m.forward(CPU.from_array([1, 999], (1, 2), "i32"), cache=cache, slots=[0], last_only=True)
    with pytest.raises(ValueError, match="outside"):
        m.forward(CPU.from_array([999], (1, 1), "i32"), cache=cache, slots=[1], last_only=True)
    assert cache.lengths == [0, 0] and m.step_decode and m.step_prefill


def test_dropped_models_free_their_packed_step_weights():
    """The CPU's decode_step keeps each model's weights packed in panels (csrc/matmul_small.c)
    while the model serves; models loaded and unloaded one after another (the server's LRU) must
    not pile up: the memory held returns to what one loaded model holds."""
    cfg = ModelConfig(vocab_size=97, n_layer=2, n_head=4, n_embd=64, block_size=32)

    def serve_once():
        m = GPT(cfg, CPU, Rng(1)).eval()
        eng = Engine(m, max_batch=2, kv_dtype="f16")
        h = eng.submit([[1, 2, 3]], SamplingParams(max_tokens=2, temperature=0))
        assert [kind for _, kind, _ in h] == ["token", "token", "done"]
        eng.close()

    serve_once()
    base = CPU.memory_stats()["in_use"]
    one_model = GPT(cfg, CPU, Rng(1)).n_params * 4
    for _ in range(6):
        serve_once()
    assert CPU.memory_stats()["in_use"] - base < one_model  # not six models' packed copies


def test_tokens_are_announced_every_step_or_every_second_step_in_big_batches():
    """The "emitted" observer event (which wakes the server's stream pump) covers every sampled
    row: once per step for small batches, once per two steps from COALESCE_BATCH running
    sequences on (two tokens per socket write), and at once when the engine runs out of work."""
    from alpha.model.engine import COALESCE_BATCH

    m = _model()
    for n in (1, COALESCE_BATCH):
        counts = []
        eng = Engine(m, max_batch=n, prefill_chunk=64 * n,
                     observer=lambda ev, **v: counts.append(v["count"]) if ev == "emitted" else 0)
        try:
            h = eng.submit([[1, 2, 3]], SamplingParams(max_tokens=7, temperature=0), n=n)
            assert sum(kind == "token" for _, kind, _ in h) == 7 * n  # n sequences at once
            deadline = time.monotonic() + 5
            while sum(counts) < 7 * n and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            eng.close()
        assert sum(counts) == 7 * n, counts  # every row sampled, announced once
        if n == 1:
            assert counts == [1] * 7
        else:
            assert max(counts) == 2 * n and len(counts) < 7, counts  # two steps' rows at a time
