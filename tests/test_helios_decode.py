"""helios's replayed decode step (`decode_step`, alpha/helios/replay.py) on lavapipe: greedy tokens
equal to the op-by-op cached forward on helios and to the CPU backend's, rows of different
lengths in any slots, batch-invariant bits, no per-token recording, the model options it takes,
the ones it declines, and the greedy `argmax_rows`. The kernels themselves are spirv-validated
by tests/test_spirv.py."""

from __future__ import annotations

from test_helios import _py

SCRIPT = """
import sys
sys.path.insert(0, "tests")
from model_checks import perturbed
from alpha.core.config import ModelConfig
from alpha.core.rng import Rng
from alpha.model.gpt import GPT
from alpha.model.kvcache import KVCache
from alpha.tensor import get_backend

hel, cpu = get_backend("helios"), get_backend("cpu")
# slot -> prompt: three lengths, one past the attention's first round of keys (64 at hs 32)
PROMPTS = {2: [(i * 37) % 90 for i in range(70)], 0: [7, 2], 1: [4, 4, 4]}


def decode(model, steps, order=(2, 0, 1), tokens=6):
    be, V = model.backend, model.cfg.vocab_size
    model.step_decode = steps
    cache = KVCache(model, 3)
    cur = {}
    for s in order:
        p = PROMPTS[s]
        lg = be.to_array(model.forward(be.from_array(p, (1, len(p)), "i32"), cache=cache,
                                       slots=[s], last_only=True))
        cur[s] = list(lg)
    toks, rows = [], []
    before = be.dev.dispatches if be.name == "helios" else 0
    for _ in range(tokens):
        nxt = [cur[s].index(max(cur[s])) for s in order]
        toks.append(nxt)
        logits = model.forward(be.from_array(nxt, (len(order), 1), "i32"), cache=cache,
                               slots=list(order), last_only=True)
        greedy = be.argmax_rows(logits)  # helios: computed by the replayed step itself
        lg = be.to_array(logits)
        cur = {s: list(lg[i * V:(i + 1) * V]) for i, s in enumerate(order)}
        assert greedy == [cur[s].index(max(cur[s])) for s in order], greedy
        rows.append(cur)
    recorded = (be.dev.dispatches - before) if be.name == "helios" else 0
    # the logits written after the step: argmax_rows reads them again (helios: the write record
    # drops the step's own argmax)
    be.binary(logits, "mul", logits, be.from_array([-1.0] * V, (V,), "f32"))
    assert be.argmax_rows(logits) == [cur[s].index(min(cur[s])) for s in order]
    return toks, rows, recorded


def models(cfg):
    ref = perturbed(cfg, dtype="f32", scale=0.3)
    state = ref.state_dict()
    out = []
    for be in (hel, cpu):
        m = GPT(cfg, be, Rng(0), init=False).eval()
        m.load_state_dict(state)
        out.append(m)
    return out


def check(cfg, replayed=True):
    mh, mc = models(cfg)
    t_op, r_op, n_op = decode(mh, False)
    t_rep, r_rep, n_rep = decode(mh, True)
    t_cpu, _, _ = decode(mc, True)
    # the CPU runs the step as one C call, but declines rmsnorm and qk_norm (its op-by-op
    # path ran)
    assert mc.step_decode is (cfg.norm == "layernorm" and not cfg.qk_norm), (cfg, mc.step_decode)
    assert mh.step_decode is replayed, (cfg, mh.step_decode)
    assert t_rep == t_op == t_cpu, (t_rep, t_op, t_cpu)
    assert len({t for row in t_rep for t in row}) > 3, t_rep  # not one repeated token
    worst = max(abs(a - b) for x, y in zip(r_rep, r_op) for s in x for a, b in zip(x[s], y[s]))
    assert worst < 2e-4, worst
    if replayed:
        assert n_rep == 0 < n_op, (n_rep, n_op)  # replayed: nothing recorded per token
        # batch invariance: slot 0's rows alone (M = 1) are the bits it had among three
        t_one, r_one, _ = decode(mh, True, order=(0,))
        assert [r[0] for r in r_one] == [r[0] for r in r_rep]
        # every decode() made a new cache: the steps recorded over freed ones were dropped
        assert len(hel._replays) <= 2, len(hel._replays)
    print(cfg.norm, cfg.activation, cfg.pos, "tokens", t_rep[:2], "max |diff|", worst)


inf = float("inf")
ties = hel.from_array([1, 3, 3, 0, -inf, -inf, -inf, -inf, 0, 0, 0, 0, -1, 5, 2, 5], (4, 4))
assert hel.argmax_rows(ties) == [1, 0, 0, 1]  # the lowest index among equal maxima
wide = [float((i * 7919) % 1000) for i in range(3 * 700)]
want = [max(range(700), key=lambda j, r=r: (wide[r * 700 + j], -j)) for r in range(3)]
assert hel.argmax_rows(hel.from_array(wide, (3, 700))) == want

base = dict(vocab_size=96, n_layer=2, n_head=2, n_embd=64, block_size=80)
check(ModelConfig(**base))
import alpha.helios.kernels.decode as kdec
staged_bytes = kdec.gemv_shared_bytes
kdec.gemv_shared_bytes = lambda *a: 1 << 30  # the norms computed as loaded, not staged
check(ModelConfig(**base, norm="rmsnorm", activation="relu2", attn_softcap=2.0,
                  logit_softcap=3.0, bias=False, tie_embeddings=False))
kdec.gemv_shared_bytes = staged_bytes
check(ModelConfig(**base, bias=False))  # layernorm without bias, staged
check(ModelConfig(**base, pos="rope", attn_softcap=2.0))  # q, k turned in the attention
check(ModelConfig(**base, activation="swiglu", ffn_dim=96))  # [gate | up] in one product
check(ModelConfig(**base, qk_norm=True), replayed=False)  # declined: the op-by-op path ran
print("OK")
"""


def test_replayed_decode_matches_op_by_op_and_cpu():
    r = _py(SCRIPT, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_argmax_rows_default_reads_back():
    """The front's default (a backend without `_argmax_rows`: the CPU) picks the lowest index
    among equal maxima, like sampling's greedy definition."""
    from alpha.model.sampling import sample_token
    from alpha.tensor import get_backend

    be = get_backend("cpu")
    rows = [[1.0, 3.0, 3.0, 0.0], [-2.0, -1.0, -3.0, -1.0], [0.5, 0.25, 0.5, 0.5]]
    x = be.from_array([v for r in rows for v in r], (3, 4))
    assert be.argmax_rows(x) == [sample_token(r, 0.0) for r in rows] == [1, 1, 0]
