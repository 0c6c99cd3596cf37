"""The normalisation and head options of the GPT (`norm="rmsnorm"`, `qk_norm`, `logit_softcap`,
the `relu2` activation): the forward against a naive float64 model written from the definitions,
gradients against finite differences, the CPU backend against the float64 reference, the KV-cache
inference against the full forward, the parameter table, and the defaults left GPT-2's."""

from __future__ import annotations

import math

import pytest

from alpha.core.config import ModelConfig
from alpha.core.errors import ConfigError
from alpha.core.rng import Rng, Stream
from alpha.model import GPT, InferenceEngine
from alpha.model.params import decay_ranges, param_offsets, param_table
from alpha.tensor import get_backend
from model_checks import assert_backends_agree, assert_grads_match_fd, naive_logits, perturbed

REF = get_backend("reference")
CPU = get_backend("cpu")
ALL = dict(norm="rmsnorm", qk_norm=True, logit_softcap=2.5, activation="relu2")


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=6)
    base.update(kw)
    return ModelConfig(**base)


def batch(be, B=2, T=5, V=11):
    s = Stream((9, 9))
    ids, tg = s.randint(B * T, V), s.randint(B * T, V)
    return (be.from_array(ids, (B, T), "i32"), be.from_array(tg, (B, T), "i32"),
            [ids[b * T:(b + 1) * T] for b in range(B)], tg)


# ---- the forward against the naive float64 GPT (tests/model_checks.py) --------------------------

@pytest.mark.parametrize("opts", [ALL, dict(norm="rmsnorm", bias=False),
                                  dict(qk_norm=True, tie_embeddings=False),
                                  dict(logit_softcap=0.7, n_layer=2)])
def test_forward_matches_naive_float64(opts):
    cfg = tiny(**opts)
    m = perturbed(cfg).eval()
    ids, tg, ids_list, tg_list = batch(REF)
    logits, loss = m.forward(ids, tg)
    P = {k: list(v) for k, v in m.state_dict().items()}
    flat = [v for b in naive_logits(cfg, P, ids_list) for t in b for v in t]
    got = list(logits.to_array())
    assert len(got) == len(flat)
    assert all(abs(a - b) < 1e-12 for a, b in zip(got, flat))
    if cfg.logit_softcap:
        assert max(abs(v) for v in got) < cfg.logit_softcap
    rows = [flat[i * 11:(i + 1) * 11] for i in range(10)]
    ce = sum(math.log(sum(math.exp(v) for v in r)) - r[t] for r, t in zip(rows, tg_list)) / 10
    assert abs(loss.item() - ce) < 1e-12


# ---- gradients ----------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [ALL, dict(ALL, bias=False, tie_embeddings=False),
                                  dict(ALL, pos="rope")])
def test_model_gradients_match_finite_differences(opts):
    cfg = tiny(**opts)
    m = perturbed(cfg, seed=5)
    ids, tg, _, _ = batch(REF)
    assert_grads_match_fd(m, ids, tg, Stream((13, 2)))


def test_cpu_matches_reference_with_options():
    cfg = tiny(**ALL, n_layer=2)
    ref = perturbed(cfg, dtype="f32", scale=0.2)
    fast = GPT(cfg, CPU, init=False)
    fast.load_state_dict(ref.state_dict())
    assert_backends_agree(ref, fast, batch)


# ---- the parameter table and the config ---------------------------------------------------------

def test_parameter_table_with_options():
    cfg = tiny(norm="rmsnorm", qk_norm=True, n_layer=2)  # bias=True: linears keep theirs
    names = [n for n, _ in param_table(cfg)]
    assert not any(n.startswith("ln_f.bias") or ".ln_" in n and n.endswith(".bias")
                   for n in names)
    assert "h.0.attn.c_attn.bias" in names and "h.1.mlp.c_proj.bias" in names
    offsets = param_offsets(cfg)
    start = decay_ranges(cfg)["no_decay"][0]
    for i in range(2):
        for which in ("q", "k"):
            off, shape = offsets[f"h.{i}.attn.{which}_norm.weight"]
            assert shape == (cfg.head_dim,) and off >= start  # no weight decay
    m = GPT(cfg, REF, Rng(3))
    for name, t in m.parameters().items():
        if "norm" in name or ".ln_" in name or name.startswith("ln_"):
            assert set(t.to_array()) == {1.0}, name


def test_defaults_are_gpt2_and_options_are_checked():
    cfg = ModelConfig()
    assert (cfg.norm, cfg.qk_norm, cfg.logit_softcap) == ("layernorm", False, 0.0)
    with pytest.raises(ConfigError, match="norm"):
        ModelConfig(norm="batchnorm")
    with pytest.raises(ConfigError, match="logit_softcap"):
        ModelConfig(logit_softcap=-1.0)
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(activation="relu3")


# ---- inference: the KV-cache forward computes the training forward's function ------------------

@pytest.mark.parametrize("opts", [ALL, dict(qk_norm=True, bias=False, tie_embeddings=False),
                                  dict(ALL, pos="rope")])  # qk-norm then rope, k cached turned
def test_engine_matches_training_forward(opts):
    cfg = tiny(**opts, n_layer=2)
    m = perturbed(cfg).eval()
    B, T, V = 2, 6, 11
    ids = Stream((3, 3)).randint(B * T, V)
    rows = [ids[b * T:(b + 1) * T] for b in range(B)]
    want = list(m.forward(REF.from_array(ids, (B, T), "i32"))[0].to_array())

    eng = InferenceEngine(m, batch_size=B)
    got = list(eng.prefill(rows, all_logits=True).to_array())
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-12
    eng.reset()
    for t in range(T):
        got = eng.forward([[rows[b][t]] for b in range(B)]).to_array()
        exp = [want[(b * T + t) * V + v] for b in range(B) for v in range(V)]
        assert max(abs(a - b) for a, b in zip(got, exp)) < 1e-12


@pytest.mark.parametrize("opts,fused", [(dict(norm="rmsnorm"), False),
                                        (dict(qk_norm=True), False),
                                        (dict(logit_softcap=3.0, activation="relu2"), True)])
def test_cpu_decode_with_options(opts, fused):
    """On CPU the fused block supports relu2 (and the soft-cap is outside the block) and declines
    rmsnorm and qk-norm; either way decode gives the full forward's logits, and a batch of two
    gives each row the bits it gets alone."""
    cfg = tiny(**opts, n_layer=2, n_embd=16, vocab_size=20, block_size=8)
    m = perturbed(cfg, CPU, "f32", scale=0.1).eval()
    toks = Stream((5, 6)).randint(16, cfg.vocab_size)
    want = list(m.forward(CPU.from_array(toks[:8], (1, 8), "i32"))[0].to_array())
    eng = InferenceEngine(m)
    got = list(eng.prefill([toks[:3]]).to_array())
    for t in toks[3:8]:
        got += list(eng.decode(t).to_array())
    assert eng.fused == fused
    V = cfg.vocab_size
    assert max(abs(a - b) for a, b in zip(got, want[2 * V:])) < 1e-5
    # two rows in one batch: each the bits of its own run
    pair = InferenceEngine(m, batch_size=2)
    pair.prefill([toks[:3], toks[8:11]])
    solo = InferenceEngine(m)
    solo.prefill([toks[:3]])
    for t, u in zip(toks[3:8], toks[11:16]):
        both = list(pair.forward([[t], [u]]).to_array())
        assert both[:V] == list(solo.decode(t).to_array())


# ---- helios (lavapipe) against the CPU backend --------------------------------------------------

HELIOS_RUN = """
    import json
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng, Stream
    from alpha.model import GPT, InferenceEngine
    from alpha.tensor import get_backend
    import alpha.helios  # noqa: F401  (registers the backend)

    cfg = ModelConfig(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8,
                      norm="rmsnorm", qk_norm=True, logit_softcap=2.0, activation="relu2")
    cpu, gpu = get_backend("cpu"), get_backend("helios")
    src = GPT(cfg, cpu, Rng(4))
    s = Stream((4, 4))
    cpu.copy(src.params, cpu.from_array([v + 0.1 * z for v, z in
                                         zip(src.params.to_array(), s.normal(src.n_params))],
                                        (src.n_params,)))
    ids, tg = s.randint(16, 13), s.randint(16, 13)
    out = {}
    for name, be in (("cpu", cpu), ("helios", gpu)):
        m = GPT(cfg, be, init=False)
        m.load_state_dict(src.state_dict())
        logits, loss = m.forward(be.from_array(ids, (2, 8), "i32"),
                                 be.from_array(tg, (2, 8), "i32"))
        logits, loss = list(be.to_array(logits)), be.to_array(loss)[0]
        m.backward()
        m.eval()
        eng = InferenceEngine(m)
        dec = list(be.to_array(eng.prefill([ids[:4]])))
        for t in ids[4:8]:
            dec += list(be.to_array(eng.decode(t)))
        out[name] = {"logits": logits, "loss": loss, "grads": list(be.to_array(m.grads)),
                     "decode": dec}
    print(json.dumps(out))
"""


def test_helios_matches_cpu_with_options():
    """Training forward, loss and every gradient, and the cached decode, with all four options
    on: helios (lavapipe) against the CPU backend from the same weights."""
    from test_helios import _py

    r = _py(HELIOS_RUN, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    import json

    runs = json.loads(r.stdout.strip().splitlines()[-1])
    a, b = runs["cpu"], runs["helios"]
    assert abs(a["loss"] - b["loss"]) < 1e-5
    assert max(abs(x - y) for x, y in zip(a["logits"], b["logits"])) < 1e-4
    top = max(abs(x) for x in a["grads"])
    assert max(abs(x - y) for x, y in zip(a["grads"], b["grads"])) < 1e-4 * (1 + top)
    V = 13
    full = a["logits"][3 * V:8 * V]  # row 0, positions 3..7
    for dec in (a["decode"], b["decode"]):
        assert max(abs(x - y) for x, y in zip(dec, full)) < 1e-4


# ---- training: saved in the config and checkpoint, exact resume, `alpha sample` ----------------

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12


def test_resume_is_bit_exact_with_options(tmp_path):
    import json

    from alpha.core.config import resolve
    from alpha.train import checkpoint as ckpt_format
    from alpha.train.trainer import Trainer

    data = tmp_path / "data.txt"
    data.write_text(TEXT)

    def cfg(run_dir):
        t = {"data": str(data), "batch_size": 2, "iters": 6, "eval_interval": 3,
             "eval_iters": 2, "sample_interval": 0, "checkpoint_interval": 3,
             "warmup_iters": 2, "lr": 3e-3, "run_dir": str(run_dir), "seed": 7}
        model = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, **ALL}
        return resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})

    full = Trainer(cfg(tmp_path / "a"), out=None).train()
    assert full.status == "completed" and full.step == 6
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["model"]
    assert {k: saved[k] for k in ALL} == ALL
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-3.ckpt"))
    resumed = Trainer(cfg(tmp_path / "a"), resume=ck, run_dir=str(tmp_path / "b"),
                      out=None).train()

    def losses(d):
        with open(d / "metrics.jsonl") as f:
            return [json.loads(line)["loss"] for line in f if line.strip()]

    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 6 and a[3:] == b  # bit for bit
    assert full.val_loss == resumed.val_loss
    pa = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-6.ckpt"))
    pb = ckpt_format.load(str(tmp_path / "b" / "checkpoints" / "step-6.ckpt"))
    assert pa.tensors["params"] == pb.tensors["params"]


def test_cli_trains_and_samples_with_options(tmp_path):
    from test_cli import TINY, alpha, one_line_error

    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    run_dir = tmp_path / "run"
    r = alpha("train", "--data", str(data), *TINY, "--iters", "2", "--eval-interval", "2",
              "--checkpoint-interval", "2", "--run-dir", str(run_dir), "--norm", "rmsnorm",
              "--qk-norm", "--logit-softcap", "30", "--activation", "relu2")
    assert r.returncode == 0, r.stderr
    r = alpha("sample", "--run", str(run_dir), "--prompt", "First", "--max-tokens", "8",
              "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("First") and len(r.stdout) > len("First")
    one_line_error(alpha("train", "--data", str(data), "--norm", "batchnorm"), "--norm")
    one_line_error(alpha("train", "--data", str(data), "--logit-softcap", "-1"),
                   "logit_softcap")


def test_hf_export_refuses_each_option():
    """GPT-2 has none of these: export refuses them, naming the setting."""
    from alpha.core.errors import InteropError
    from alpha.interop.compat import not_gpt2
    from alpha.interop.hf_gpt2 import check_exportable

    assert not_gpt2(ModelConfig()) is None
    for opts, name in ((dict(norm="rmsnorm"), "norm=rmsnorm"), (dict(qk_norm=True), "qk_norm"),
                       (dict(logit_softcap=30.0), "logit_softcap=30.0"),
                       (dict(activation="relu2"), "activation=relu2")):
        assert name in not_gpt2(ModelConfig(**opts))
        with pytest.raises(InteropError, match=name):
            check_exportable(ModelConfig(**opts))
