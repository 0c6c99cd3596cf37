"""The 16-bit KV cache (`KVCache(kv_dtype="f16")`, `serve --kv-dtype f16`): its rounding is IEEE
fp16's (Python's struct 'e' is the reference, for the build's F16C path and the portable one);
decode and prefill logits over it equal the f32 cached forward with K and V rounded to fp16 by
struct; a request's tokens do not depend on what else runs; the helios backend declines it."""

from __future__ import annotations

import math
import struct
from array import array

import pytest

from alpha.core.config import ModelConfig
from alpha.core.errors import ConfigError
from alpha.core.rng import Rng, Stream
from alpha.model import GPT, KVCache
from alpha.model.kvcache import serving_kv_dtype
from alpha.model.engine import Engine, SamplingParams
from alpha.tensor import get_backend
from alpha.tensor.cpu import CPUBackend

CPU = get_backend("cpu")


def _half(x: float) -> float:
    return struct.unpack("<e", struct.pack("<e", x))[0]


def _half_bits(x: float) -> int:
    return struct.unpack("<H", struct.pack("<e", x))[0]


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_rounding_is_ieee_fp16_on_both_paths():
    """Ties to even, subnormals, the overflow edge and signed zero, as struct 'e' rounds them."""
    vals = [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, -65519.0, 6.1e-5, 2.0 ** -14, 2.0 ** -24,
            2.0 ** -25, 2.0 ** -25 * 1.0001, 1.5 * 2.0 ** -24, 2.5 * 2.0 ** -24, 3 * 2.0 ** -26]
    vals += [1 + k * 2.0 ** -11 for k in range(1, 8)]  # halfway cases of 1's neighbours
    vals += [(1024 + k + 0.5) * 2.0 ** -10 * 2.0 ** e for k in range(4) for e in (-13, 0, 5)]
    st = Stream((9, 9))
    vals += [z * 10.0 ** (i % 9 - 6) for i, z in enumerate(st.normal(3000))]
    vals = [_f32(v) for v in vals]  # the f32 values the cache receives
    x = array("f", vals + [1e6, -1e6, math.inf])
    n = len(x)
    for portable in (0, 1):
        out = array("H", bytes(2 * n))
        CPU.k.f16_from_f32(out.buffer_info()[0], x.buffer_info()[0], n, portable)
        assert list(out[:len(vals)]) == [_half_bits(v) for v in vals], portable
        assert list(out[len(vals):]) == [0x7C00, 0xFC00, 0x7C00]  # overflow: infinity
        back = array("f", bytes(4 * n))
        CPU.k.f16_to_f32(back.buffer_info()[0], out.buffer_info()[0], n, portable)
        assert list(back[:len(vals)]) == [_half(v) for v in vals], portable
    assert CPU.k.f16_native() in (0, 1)


def _model(pos="learned", act="gelu", n_head=4, n_layer=2):
    cfg = ModelConfig(vocab_size=97, n_layer=n_layer, n_head=n_head, n_embd=64, block_size=32,
                      activation=act, pos=pos)
    m = GPT(cfg, CPU, Rng(3)).eval()
    noise = Stream((3, 3)).normal(m.n_params)  # weights big enough that every layer matters
    CPU.copy(m.params, CPU.from_array([v + 0.2 * z for v, z in zip(m.params.to_array(), noise)],
                                      (m.n_params,)))
    return m


class _RoundingCPU(CPUBackend):
    """The reference: the CPU's op-by-op kv_attention after rounding the whole cache span it is
    given (k and v, in place) to fp16 with struct: an f32 cache that holds fp16 values."""

    def _kv_attention(self, out, q, k, v, n_head, start, softcap=0.0):
        for t in (k, v):
            rounded = self.from_array([_half(x) for x in self.to_array(t)], t.shape)
            self.copy(t, rounded)
        super()._kv_attention(out, q, k, v, n_head, start, softcap)


@pytest.mark.parametrize("pos,act", [("learned", "gelu"), ("rope", "swiglu")])
def test_logits_equal_the_f32_forward_over_fp16_rounded_kv(pos, act):
    """Prefill (3 prompts of different lengths, in one step) then 4 decode steps: the f16 cache's
    logits equal the f32 cache's op-by-op forward whose K, V are rounded by struct, to f32
    rounding; the plain f32 cache's differ (so this test can fail)."""
    m16 = _model(pos, act)
    ref = GPT(m16.cfg, _RoundingCPU(), Rng(3)).eval()
    ref.load_state_dict(m16.state_dict())
    ref.fused_decode = ref.step_decode = ref.step_prefill = False  # op by op: kv_attention
    m32 = GPT(m16.cfg, CPU, Rng(3)).eval()
    m32.load_state_dict(m16.state_dict())
    caches = [KVCache(m16, 3, kv_dtype="f16"), KVCache(ref, 3), KVCache(m32, 3)]
    assert caches[0].layers[0].dtype == "u16" and caches[1].layers[0].dtype == "f32"
    assert caches[0].nbytes() < caches[1].nbytes()
    st = Stream((5, 5))
    V = m16.cfg.vocab_size

    def same(a, b, what):
        worst = max(abs(x - y) / (1.0 + abs(y)) for x, y in zip(a, b))
        assert worst < 1e-5, (what, worst)

    def run(step, ids, slots, shape):
        outs = []
        for model, cache in zip((m16, ref, m32), caches):
            t = CPU.from_array(ids, shape, "i32") if model is not ref else \
                ref.backend.from_array(ids, shape, "i32")
            outs.append(list(model.forward(t, cache=cache, slots=slots,
                                           last_only=True).to_array()))
        same(outs[0], outs[1], step)
        return max(abs(x - y) for x, y in zip(outs[0], outs[2]))

    diff = 0.0
    for s, n in enumerate((7, 3)):  # slots 0, 1 prefilled alone; slot 2 later
        diff = max(diff, run(f"prefill {s}", st.randint(n, V), [s], (1, n)))
    diff = max(diff, run("prefill 2", st.randint(5, V), [2], (1, 5)))
    diff = max(diff, run("prefill 0+2", st.randint(2 * 4, V), [0, 2], (2, 4)))
    for k in range(4):
        diff = max(diff, run(f"decode {k}", st.randint(3, V), [2, 0, 1], (3, 1)))
    assert diff > 1e-4  # fp16 K and V change the logits: the comparison above means something
    assert caches[0].lengths == caches[1].lengths == [15, 7, 13]


def test_engine_tokens_with_f16_do_not_depend_on_the_batch():
    m = _model()
    eng = Engine(m, max_batch=8, max_queue=16, prefill_chunk=6, kv_dtype="f16")
    try:
        st = Stream((6, 6))
        prompts = [st.randint(2 + 3 * i % 9, m.cfg.vocab_size) for i in range(8)]
        params = [SamplingParams(max_tokens=12, temperature=0.8, seed=i) for i in range(8)]

        def tokens(handle):
            return [v.id for _, kind, v in handle if kind == "token"]
        alone = [tokens(eng.submit([prompts[i]], params[i])) for i in range(8)]
        handles = [eng.submit([prompts[i]], params[i]) for i in range(8)]  # all in one batch
        assert [tokens(h) for h in handles] == alone
        assert all(len(a) == 12 for a in alone)
    finally:
        eng.close()


def test_serving_default_is_f16_where_the_model_can_take_it():
    """`serve --kv-dtype auto` (its default): f16 on the CPU for what its whole-step ops run,
    f32 for options they decline (rmsnorm, qk_norm) and on a backend without an f16 cache."""
    base = dict(vocab_size=97, n_layer=1, n_head=4, n_embd=64, block_size=32)
    for extra, want in (({}, "f16"), ({"pos": "rope", "attn_softcap": 20.0}, "f16"),
                        ({"logit_softcap": 15.0}, "f16"), ({"norm": "rmsnorm"}, "f32"),
                        ({"qk_norm": True}, "f32")):
        m = GPT(ModelConfig(**base, **extra), CPU, Rng(1)).eval()
        assert serving_kv_dtype(m) == want, extra
    ref = GPT(ModelConfig(**base), get_backend("reference"), Rng(1)).eval()
    assert serving_kv_dtype(ref) == "f32"
    eng = Engine(GPT(ModelConfig(**base, norm="rmsnorm"), CPU, Rng(1)), max_batch=2,
                 kv_dtype="auto")
    try:
        assert eng.cache.kv_dtype == "f32"
        h = eng.submit([[1, 2, 3]], SamplingParams(max_tokens=3, temperature=0))
        assert [kind for _, kind, _ in h] == ["token"] * 3 + ["done"]
    finally:
        eng.close()


def test_f16_cache_refuses_what_cannot_read_it():
    m = _model()
    with pytest.raises(ConfigError, match="not one of"):
        KVCache(m, 1, kv_dtype="bf16")
    cache = KVCache(m, 1, kv_dtype="f16")
    ids = CPU.from_array([1, 2, 3], (1, 3), "i32")
    with pytest.raises(ConfigError, match="f16 KV cache needs"):  # all logits: op by op
        m.forward(ids, cache=cache, last_only=False)
    qk = GPT(ModelConfig(vocab_size=97, n_layer=1, n_head=4, n_embd=64, block_size=32,
                         qk_norm=True), CPU, Rng(1)).eval()
    with pytest.raises(ConfigError, match="f16 KV cache needs"):  # decode_step declines qk_norm
        qk.forward(ids, cache=KVCache(qk, 1, kv_dtype="f16"), last_only=True)
