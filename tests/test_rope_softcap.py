"""Rotary positions (`pos="rope"`) and the attention softcap (`attn_softcap`): the ops against
float64 definitions and finite differences, the convention against Hugging Face LLaMA's
`apply_rotary_pos_emb` (torch), and the model: gradients, CPU vs reference, cached inference
(rows at different positions) equal to the full forward, and the GPT-2 export refusing it.
(The ops on CPU and helios against the reference: `check_rope` and `check_attention_softcap` in
tests/backend_suite.py; helios's model and the trainer: test_helios.py, test_trainer.py.)"""

from __future__ import annotations

import math
from array import array

import pytest

from alpha.core.config import ModelConfig
from alpha.core.errors import ConfigError
from alpha.core.rng import Stream
from alpha.interop.compat import not_gpt2
from alpha.model import GPT, KVCache
from alpha.model.params import param_table
from alpha.model.rope import tables
from alpha.tensor import get_backend
from conftest import require_peer
from model_checks import assert_grads_match_fd, decode_on_every_path, perturbed

REF = get_backend("reference")
CPU = get_backend("cpu")


def rand(n, lo=-1.0, hi=1.0, seed=0):
    s = Stream((seed, 41))
    return [lo + (hi - lo) * u for u in s.uniform(n)]


def f64(values, shape):
    return REF.from_array(array("d", values), shape, "f64")


def numeric(loss, x, h=1e-6):
    out = []
    for i in range(len(x)):
        old = x[i]
        x[i] = old + h
        lp = loss()
        x[i] = old - h
        lm = loss()
        x[i] = old
        out.append((lp - lm) / (2 * h))
    return out


def assert_close(got, want, rtol, atol, what=""):
    got, want = list(got), list(want)
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
        assert abs(a - b) <= atol + rtol * abs(b), f"{what}[{i}]: {a} vs {b}"


# ---- the ops in float64 --------------------------------------------------------------------------

@pytest.mark.parametrize("cap", [0.4, 3.0])
def test_softcap_attention_grads_match_finite_differences(cap):
    B, T, C, nh = 2, 4, 6, 2
    qkv = rand(B * T * 3 * C, -1.5, 1.5, seed=1)
    g = rand(B * T * C, seed=2)

    def forward():
        out, lse = REF.zeros((B, T, C), "f64"), REF.zeros((B, nh, T), "f64")
        REF.attention_forward(out, lse, f64(qkv, (B, T, 3 * C)), nh, cap)
        return out, lse

    out, lse = forward()
    dqkv = REF.zeros((B, T, 3 * C), "f64")
    REF.attention_backward(dqkv, f64(g, (B, T, C)), f64(qkv, (B, T, 3 * C)), out, lse, nh, cap)
    loss = lambda: sum(a * b for a, b in zip(g, forward()[0].to_array()))  # noqa: E731
    assert_close(dqkv.to_array(), numeric(loss, qkv), 1e-5, 1e-7, "softcap dqkv")


def test_softcap_definition_and_limit():
    """One query over two keys: the weights are softmax(c tanh(s / c)); a huge cap is GPT-2."""
    hs = 4
    q, k0, k1 = [0.9, -0.4, 1.3, 0.2], [1.1, 0.3, 0.8, -0.7], [-0.5, 1.2, -0.9, 0.4]
    v0, v1 = [1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]
    rows = [[0.0] * hs + k0 + v0, q + k1 + v1]  # position 1 sees keys 0 and 1
    qkv = f64([x for r in rows for x in r], (1, 2, 3 * hs))
    for cap in (0.3, 1e9):
        s = [sum(a * b for a, b in zip(q, kk)) / math.sqrt(hs) for kk in (k0, k1)]
        s = [cap * math.tanh(x / cap) for x in s]
        w = [math.exp(x) / sum(math.exp(y) for y in s) for x in s]
        out, lse = REF.zeros((1, 2, hs), "f64"), REF.zeros((1, 1, 2), "f64")
        REF.attention_forward(out, lse, qkv, 1, cap)
        want = [w[0] * a + w[1] * b for a, b in zip(v0, v1)]
        assert_close(list(out.to_array())[hs:], want, 1e-12, 1e-12, f"cap {cap}")
    plain = REF.zeros((1, 2, hs), "f64")
    REF.attention_forward(plain, REF.zeros((1, 1, 2), "f64"), qkv, 1)
    assert_close(out.to_array(), plain.to_array(), 1e-9, 1e-9, "cap 1e9 vs off")


def test_rope_grads_are_the_transpose_and_match_finite_differences():
    B, T, C, nh, L = 2, 3, 8, 2, 5
    cos, sin = (f64(list(a), (L, 2)) for a in tables(L, 4, 100.0))
    x = rand(B * T * 3 * C, seed=3)
    g = rand(B * T * 3 * C, seed=4)
    pos = REF.from_array([4, 0, 2, 1, 3, 3], (B, T), "i32")

    def forward():
        out = REF.zeros((B, T, 3 * C), "f64")
        REF.rope_forward(out, f64(x, (B, T, 3 * C)), pos, cos, sin, nh)
        return out

    dx = REF.zeros((B, T, 3 * C), "f64")
    REF.rope_backward(dx, f64(g, (B, T, 3 * C)), pos, cos, sin, nh)
    loss = lambda: sum(a * b for a, b in zip(g, forward().to_array()))  # noqa: E731
    assert_close(dx.to_array(), numeric(loss, x), 1e-6, 1e-8, "rope dx")
    # a rotation: lengths kept, v untouched, position 0 is the identity
    y = list(forward().to_array())
    for n in range(B * T):
        row, yrow = x[n * 3 * C:(n + 1) * 3 * C], y[n * 3 * C:(n + 1) * 3 * C]
        assert yrow[2 * C:] == row[2 * C:]
        for h0 in range(0, 2 * C, 4):
            for i in range(2):
                r0 = row[h0 + i] ** 2 + row[h0 + i + 2] ** 2
                r1 = yrow[h0 + i] ** 2 + yrow[h0 + i + 2] ** 2
                assert abs(r0 - r1) < 1e-6
    assert y[3 * C:6 * C] == x[3 * C:6 * C]  # row (0, 1) sits at position 0


def test_rope_matches_hugging_face_llama():
    """The convention is LLaMA's (HF `rotate_half`, half-split pairs) with the same theta."""
    try:
        import torch
        from transformers.models.llama import modeling_llama as ml
    except ImportError:
        require_peer(False, "torch + transformers (tools/install-test-deps.sh)")
    B, T, C, nh, theta = 1, 6, 16, 2, 500.0
    hs = C // nh
    x = rand(B * T * 3 * C, seed=5)
    cos, sin = (f64(list(a), (T, hs // 2)) for a in tables(T, hs, theta))
    out = REF.zeros((B, T, 3 * C), "f64")
    REF.rope_forward(out, f64(x, (B, T, 3 * C)), REF.from_array(range(T), (T,), "i32"), cos,
                     sin, nh)
    got = torch.tensor(list(out.to_array()), dtype=torch.float64).view(B, T, 3, nh, hs)
    xt = torch.tensor(x, dtype=torch.float64).view(B, T, 3, nh, hs)
    q, k = xt[:, :, 0].transpose(1, 2), xt[:, :, 1].transpose(1, 2)  # (B, nh, T, hs)
    inv = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat([ang, ang], dim=-1)[None]  # HF's (B, T, hs) cos/sin layout
    qr, kr = ml.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
    assert torch.allclose(got[:, :, 0].transpose(1, 2), qr, atol=1e-6)  # f32 tables
    assert torch.allclose(got[:, :, 1].transpose(1, 2), kr, atol=1e-6)
    assert torch.equal(got[:, :, 2], xt[:, :, 2])


# ---- the model ------------------------------------------------------------------------------

def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=8, pos="rope",
                attn_softcap=1.5)
    base.update(kw)
    return ModelConfig(**base)


def test_config_table_budget_and_export_refusal():
    from alpha.train.budget import estimate

    assert "wpe" not in dict(param_table(tiny()))
    assert "wpe" in dict(param_table(tiny(pos="learned")))
    # the memory estimate counts rope's turned qkv (3C a position, each layer)
    rope, learned = estimate(tiny(), 4), estimate(tiny(pos="learned"), 4)
    assert rope.activation_bytes - learned.activation_bytes == 2 * 4 * 4 * 8 * 2 * 3 * 8
    assert not_gpt2(tiny(attn_softcap=0.0)).startswith("pos=rope")
    assert not_gpt2(tiny(pos="learned")).startswith("attn_softcap=1.5")
    assert not_gpt2(tiny(pos="learned", attn_softcap=0.0)) is None
    for bad in (dict(pos="alibi"), dict(n_embd=6, n_head=2), dict(attn_softcap=-1.0),
                dict(rope_theta=1.0)):
        with pytest.raises(ConfigError):
            tiny(**bad)


def test_model_gradients_match_finite_differences():
    cfg = tiny(n_layer=1)
    m = perturbed(cfg)
    s = Stream((9, 1))
    ids = REF.from_array(s.randint(10, 11), (2, 5), "i32")
    tg = REF.from_array(s.randint(10, 11), (2, 5), "i32")
    assert_grads_match_fd(m, ids, tg, Stream((13, 2)))


def test_positions_matter_and_cpu_matches_reference():
    cfg = tiny()
    ref = perturbed(cfg, REF, "f32", scale=0.2)
    fast = GPT(cfg, CPU, init=False)
    fast.load_state_dict(ref.state_dict())
    s = Stream((4, 4))
    ids, tg = s.randint(12, 11), s.randint(12, 11)
    results = []
    for m, be in ((ref, REF), (fast, CPU)):
        logits, loss = m.forward(be.from_array(ids, (2, 6), "i32"), be.from_array(tg, (2, 6),
                                                                                    "i32"))
        m.backward()
        results.append((list(logits.to_array()), loss.item(), list(m.grads.to_array())))
    (l0, s0, g0), (l1, s1, g1) = results
    assert_close(l1, l0, 0, 1e-4, "logits")
    assert abs(s0 - s1) < 1e-5
    top = max(abs(a) for a in g0)
    assert_close(g1, g0, 0, 1e-4 * (1 + top), "grads")
    # without wpe only rope tells the order apart: causal attention over an unordered set of
    # keys would give the last position of [2, 7, 4] and [7, 2, 4] the same logits
    logits, _ = ref.eval().forward(REF.from_array([2, 7, 4, 7, 2, 4], (2, 3), "i32"))
    row = list(logits.to_array())
    assert max(abs(a - b) for a, b in zip(row[22:33], row[55:66])) > 1e-3


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_cached_inference_equals_the_full_forward(backend):
    """Rows at different positions (their own `starts`): each row's logits equal the full
    forward of its sequence (f64 reference: to 1e-12; CPU f32, decoding through its fused
    block: to f32 rounding)."""
    be = get_backend(backend)
    cfg = tiny(n_embd=16, n_head=2, vocab_size=13)
    dtype = "f64" if backend == "reference" else "f32"
    m = perturbed(cfg, be, dtype).eval()
    tol = 1e-12 if backend == "reference" else 2e-4
    seqs = [Stream((6, 6)).randint(7, 13), Stream((7, 7)).randint(7, 13)]
    full = []
    for seq in seqs:
        logits, _ = m.forward(be.from_array(seq, (1, 7), "i32"))
        full.append(list(logits.to_array()))
    cache = KVCache(m, slots=2)
    m.forward(be.from_array(seqs[0][:2], (1, 2), "i32"), cache=cache, slots=[0])
    m.forward(be.from_array(seqs[1][:5], (1, 5), "i32"), cache=cache, slots=[1])
    lens = [2, 5]
    while lens[0] < 7:
        active = [s for s in (0, 1) if lens[s] < 7]
        ids = be.from_array([seqs[s][lens[s]] for s in active], (len(active), 1), "i32")
        out = list(m.forward(ids, cache=cache, slots=active, last_only=True).to_array())
        for r, s in enumerate(active):
            want = full[s][lens[s] * 13:(lens[s] + 1) * 13]
            assert_close(out[r * 13:(r + 1) * 13], want, 0, tol, f"slot {s} pos {lens[s]}")
            lens[s] += 1
    assert m.fused_decode == (backend == "cpu")  # the reference has no fused block


def test_helios_model_matches_cpu_and_its_cache():
    """helios (lavapipe) against the CPU on a rope + softcap model: logits, loss and every
    gradient; its cached decode equals its full forward; bf16 attention (materialised scores)
    with the cap against the f32 kernels."""
    from test_helios import _py

    r = _py("""
        import json
        from alpha.core.config import ModelConfig
        from alpha.core.rng import Rng, Stream
        from alpha.model import GPT, InferenceEngine
        from alpha.tensor import get_backend

        cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8,
                          pos="rope", attn_softcap=1.5)
        cpu, gpu = get_backend("cpu"), get_backend("helios")
        a = GPT(cfg, cpu, Rng(5))
        s = Stream((5, 77))
        cpu.copy(a.params, cpu.from_array([v + 0.2 * z for v, z in zip(
            a.params.to_array(), s.normal(a.n_params))], (a.n_params,), "f32"))
        b = GPT(cfg, gpu, init=False)
        b.load_state_dict(a.state_dict())
        ids, tg = s.randint(14, 13), s.randint(14, 13)
        out = {}
        for name, m, be in (("cpu", a, cpu), ("gpu", b, gpu)):
            logits, loss = m.forward(be.from_array(ids, (2, 7), "i32"),
                                     be.from_array(tg, (2, 7), "i32"))
            m.backward()
            out[name] = [list(logits.to_array()), loss.item(), list(m.grads.to_array())]
        b.eval()
        full = list(b.forward(gpu.from_array(ids[:7], (1, 7), "i32"))[0].to_array())
        eng = InferenceEngine(b)
        rows = [list(eng.prefill([ids[:3]]).to_array())]
        rows += [list(eng.decode(t).to_array()) for t in ids[3:7]]
        out["cached"] = [v for r in rows for v in r]
        out["full"] = full[2 * 13:]
        # the bf16 path's cap against the f32 kernels
        B, T, C, nh = 2, 16, 32, 2
        qkv = gpu.from_array(Stream((8, 8)).normal(B * T * 3 * C), (B, T, 3 * C), "f32")
        dout = gpu.from_array(Stream((9, 9)).normal(B * T * C), (B, T, C), "f32")
        for name, be in (("f32", gpu), ("bf16", gpu.with_matmul_dtype("bf16"))):
            o, lse = be.zeros((B, T, C)), be.zeros((B, nh, T))
            be.attention_forward(o, lse, qkv, nh, 0.8)
            d = be.zeros((B, T, 3 * C))
            be.attention_backward(d, dout, qkv, o, lse, nh, 0.8)
            out[name] = [list(o.to_array()), list(d.to_array())]
        print(json.dumps(out))
    """, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import json

    out = json.loads(r.stdout.strip().splitlines()[-1])
    (l0, s0, g0), (l1, s1, g1) = out["cpu"], out["gpu"]
    assert_close(l1, l0, 0, 1e-4, "logits")
    assert abs(s0 - s1) < 1e-5
    assert_close(g1, g0, 0, 1e-4 * (1 + max(abs(a) for a in g0)), "grads")
    assert_close(out["cached"], out["full"], 0, 1e-4, "helios cached vs full")
    for i in range(2):  # bf16 rounds q, k, v, P and dS: a loose bound
        assert_close(out["bf16"][i], out["f32"][i], 0, 0.05, "bf16 vs f32 softcap")


def test_cli_trains_samples_serves_and_refuses_export(tmp_path):
    """`--pos rope --attn-softcap` from the command line: saved in config.json and the checkpoint,
    `alpha sample` and `alpha serve` load the model, `alpha export` refuses it in one line."""
    import json

    from serve_helpers import Server
    from test_cli import TEXT, TINY, alpha, one_line_error

    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    run = tmp_path / "outputs" / "rope"
    r = alpha("train", "--data", str(data), *TINY, "--iters", "2", "--eval-interval", "0",
              "--sample-interval", "0", "--pos", "rope", "--rope-theta", "500",
              "--attn-softcap", "5", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    model = json.loads((run / "config.json").read_text())["model"]
    assert (model["pos"], model["rope_theta"], model["attn_softcap"]) == ("rope", 500.0, 5.0)
    ckpt = run / "checkpoints" / "step-2.ckpt"
    r = alpha("sample", "--checkpoint", str(ckpt), "--prompt", "ROMEO:", "--max-tokens", "8",
              "--seed", "1")
    assert r.returncode == 0 and r.stdout.startswith("ROMEO:"), r.stderr
    one_line_error(alpha("export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "hf")),
                   "pos=rope")
    assert not (tmp_path / "hf").exists()
    one_line_error(alpha("train", "--data", str(data), "--pos", "alibi"), "--pos")
    srv = Server(str(tmp_path / "outputs"))
    try:
        status, _, body = srv.request("POST", "/v1/completions",
                                      {"model": "rope", "prompt": "ROMEO:", "max_tokens": 6,
                                       "temperature": 0})
        assert status == 200 and body["choices"][0]["text"], body
    finally:
        assert srv.stop() == 0


def test_activation_checkpointing_recomputes_rope_and_softcap_exactly():
    """A recomputed block (activation checkpointing) turns q, k and caps the scores again: the
    losses, gradients and dropout stream are the same bits as without."""
    from ckpt_helpers import step_both_ways

    out = step_both_ways(CPU, tiny(dropout=0.1))
    assert out[False] == out[True]


def test_cpu_fused_decode_with_rope_and_softcap_is_bit_identical():
    """The CPU's one-call block (`block_decode`) and step (`decode_step`) turn q, k and cap the
    scores themselves: batched decode of sequences at different positions gives the op-by-op
    path's exact bits, with 1 and 2 threads, and the fused ops are used (not declined)."""
    cfg = tiny(n_embd=48, n_head=3, vocab_size=40, block_size=12)
    m = GPT(cfg, CPU, init=False).eval()
    m.load_state_dict(perturbed(cfg).state_dict())
    toks = Stream((5, 5)).randint(20, cfg.vocab_size)

    def run():
        cache = KVCache(m, slots=2)
        m.forward(CPU.from_array(toks[:2], (1, 2), "i32"), cache=cache, slots=[0])
        m.forward(CPU.from_array(toks[2:7], (1, 5), "i32"), cache=cache, slots=[1])
        rows = []
        for t in range(7, 12):  # both sequences, one new token each, at positions 2.. and 5..
            ids = CPU.from_array(toks[2 * t - 7:2 * t - 5], (2, 1), "i32")
            rows.append(list(m.forward(ids, cache=cache, slots=[0, 1],
                                       last_only=True).to_array()))
        one = KVCache(m, slots=1)  # and batch 1 (M = 1 takes kv_attention, not the rows)
        for t in toks[12:16]:
            rows.append(list(m.forward(CPU.from_array([t], (1, 1), "i32"), cache=one,
                                       last_only=True).to_array()))
        return rows
    runs = decode_on_every_path(m, run)
    assert runs[0] == runs[1] == runs[2] == runs[3]
