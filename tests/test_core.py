"""alpha.core: config validation and resolution, config hashes, domains, and the Philox RNG."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from alpha.core import rng as R
from alpha.core.config import (
    ModelConfig, RunConfig, SampleConfig, TrainConfig, build, config_hash, resolve,
)
from alpha.core.domains import ASSISTANT, END_OF_TEXT, USER, all_domains, get_domain
from alpha.core.errors import AlphaError, ConfigError

# ---- configs ------------------------------------------------------------------------------


def test_defaults_construct():
    m = ModelConfig()
    assert m.head_dim == m.n_embd // m.n_head
    assert m.hidden_dim == 4 * m.n_embd
    assert ModelConfig(ffn_dim=100).hidden_dim == 100
    TrainConfig()
    SampleConfig()


def test_config_error_is_value_error_and_alpha_error():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, AlphaError)


def test_not_divisible_message_exact():
    with pytest.raises(ConfigError) as e:
        ModelConfig(n_embd=100, n_head=3)
    assert str(e.value) == "n_embd=100 is not divisible by n_head=3"


@pytest.mark.parametrize("cls,kwargs,fragment", [
    (ModelConfig, {"n_layer": 0}, "n_layer=0"),
    (ModelConfig, {"vocab_size": -5}, "vocab_size=-5"),
    (ModelConfig, {"activation": "tanh"}, "activation='tanh'"),
    (ModelConfig, {"dropout": 1.0}, "dropout=1.0"),
    (ModelConfig, {"ffn_dim": -1}, "ffn_dim=-1"),
    (ModelConfig, {"layernorm_eps": 0.0}, "layernorm_eps=0.0"),
    (TrainConfig, {"lr": 0.0}, "lr=0.0"),
    (TrainConfig, {"lr": 1e-3, "min_lr": 1e-2}, "min_lr=0.01"),
    (TrainConfig, {"batch_size": 0}, "batch_size=0"),
    (TrainConfig, {"beta2": 1.0}, "beta2=1.0"),
    (TrainConfig, {"backend": "gpu"}, "backend='gpu'"),
    (TrainConfig, {"tokenizer": "sentencepiece"}, "tokenizer='sentencepiece'"),
    (TrainConfig, {"grad_clip": -1.0}, "grad_clip=-1.0"),
    (TrainConfig, {"max_bad_steps": 0}, "max_bad_steps=0"),
    (SampleConfig, {"top_p": 0.0}, "top_p=0.0"),
    (SampleConfig, {"temperature": -1.0}, "temperature=-1.0"),
    (SampleConfig, {"top_k": -3}, "top_k=-3"),
])
def test_bad_values_name_field_and_value(cls, kwargs, fragment):
    with pytest.raises(ConfigError) as e:
        cls(**kwargs)
    assert fragment in str(e.value)


@pytest.mark.parametrize("cls,kwargs,fragment", [
    (ModelConfig, {"n_layer": "4"}, "n_layer='4' has type str, expected int"),
    (ModelConfig, {"n_layer": 4.0}, "n_layer=4.0 has type float, expected int"),
    (ModelConfig, {"n_layer": True}, "n_layer=True has type bool, expected int"),
    (ModelConfig, {"bias": 1}, "bias=1 has type int, expected bool"),
    (TrainConfig, {"lr": "fast"}, "lr='fast' has type str, expected float"),
    (SampleConfig, {"prompt": 3}, "prompt=3 has type int, expected str"),
])
def test_type_errors_name_field_value_and_types(cls, kwargs, fragment):
    with pytest.raises(ConfigError) as e:
        cls(**kwargs)
    assert fragment in str(e.value)


def test_int_for_float_is_accepted():
    t = TrainConfig(lr=1, min_lr=0)
    assert t.lr == 1.0 and isinstance(t.lr, float)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().n_layer = 8


def test_stop_list_becomes_tuple():
    assert SampleConfig(stop=["a", "b"]).stop == ("a", "b")


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError) as e:
        build(ModelConfig, {"n_layers": 4}, "model")
    assert "'n_layers'" in str(e.value) and "model" in str(e.value)
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"modle": {}})
    assert "'modle'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        resolve(cli={"train": {"learning_rate": 0.1}})
    assert "'learning_rate'" in str(e.value)


def test_section_named_in_nested_errors():
    with pytest.raises(ConfigError) as e:
        resolve(cli={"model": {"n_embd": 100, "n_head": 3}})
    assert str(e.value) == "model.n_embd=100 is not divisible by n_head=3"


def _write_json(tmp_path, obj, name="cfg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_merge_precedence_cli_file_domain_defaults(tmp_path):
    path = _write_json(tmp_path, {
        "domain": "code",
        "model": {"block_size": 64, "n_layer": 2},
        "train": {"batch_size": 8, "iters": 10},
        "sample": {"temperature": 0.9},
    })
    cfg = resolve(file_path=path, cli={"model": {"n_layer": 3}, "train": {"iters": 20}})
    assert cfg.domain == "code"  # from the file
    assert cfg.model.vocab_size == 4096  # domain
    assert cfg.model.block_size == 64  # file over domain (256)
    assert cfg.model.n_layer == 3  # CLI over file
    assert cfg.model.n_head == ModelConfig().n_head  # default
    assert cfg.train.batch_size == 8 and cfg.train.iters == 20
    assert cfg.sample.temperature == 0.9  # file over domain (0.6)
    assert resolve(domain="code").sample.temperature == 0.6  # domain over default
    assert resolve().model.vocab_size == ModelConfig().vocab_size  # text domain: defaults
    assert resolve(domain="text", file_path=path).domain == "text"  # argument over file


def test_resolve_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(file_path=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve(file_path=str(bad))
    with pytest.raises(ConfigError, match="'optimizer'"):
        resolve(file_path=_write_json(tmp_path, {"optimizer": {}}, "u.json"))
    with pytest.raises(ConfigError, match="unknown domain 'poetry'"):
        resolve(domain="poetry")


def test_run_config_round_trip():
    cfg = resolve(domain="chat", cli={"model": {"n_layer": 2}})
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hash == cfg.hash


def test_config_hash_stable_and_sensitive():
    d = {"model": {"n_layer": 4, "n_head": 4}, "train": {"lr": 0.001}}
    same = {"train": {"lr": 0.001}, "model": {"n_head": 4, "n_layer": 4}}  # key order differs
    assert config_hash(d) == config_hash(json.loads(json.dumps(d)))
    assert config_hash(d) == config_hash(same)
    assert config_hash(d) != config_hash({**d, "train": {"lr": 0.002}})
    h = config_hash(d)
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)
    a, b = resolve(domain="text"), resolve(domain="text")
    assert a.hash == b.hash
    assert a.hash != resolve(domain="text", cli={"train": {"seed": 1}}).hash
    assert config_hash(ModelConfig()) == config_hash(dataclasses.asdict(ModelConfig()))


# ---- domains -------------------------------------------------------------------------------


def test_domains():
    names = [d.name for d in all_domains()]
    assert {"text", "code", "chat"} <= set(names)
    chat = get_domain("chat")
    assert (USER, ASSISTANT, END_OF_TEXT) == ("<|user|>", "<|assistant|>", "<|end_of_text|>")
    for tok in ("<|user|>", "<|assistant|>", "<|end_of_text|>"):
        assert tok in chat.special_tokens
    assert "<|end_of_text|>" in get_domain("code").special_tokens
    assert get_domain("text").tokenizer == "char"
    assert chat.tokenizer == "bpe"
    with pytest.raises(ConfigError, match="unknown domain 'poetry'"):
        get_domain("poetry")


# ---- RNG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("counter,key,want", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter, key, want):
    """Random123's published known-answer vectors for philox4x32-10."""
    assert R.philox4x32(counter, key) == want


def test_words_layout_and_positions():
    key = R.stream_key(1, "data")
    assert R.words(key, 0, 4) == list(R.philox4x32((0, 0, 0, 0), key))
    assert R.words(key, 4, 4) == list(R.philox4x32((1, 0, 0, 0), key))
    assert R.words(key, 3, 6) == R.words(key, 0, 9)[3:]
    b = 2 ** 32 + 5  # block numbers past 32 bits use the counter's second word
    assert R.words(key, 4 * b, 4) == list(R.philox4x32((5, 1, 0, 0), key))


def test_streams_independent():
    rng = R.Rng(42)
    a, b = rng.init.words(64), rng.data.words(64)
    assert a != b and not set(a) & set(b)
    assert R.stream_key(42, "init") != R.stream_key(42, "data")
    assert R.stream_key(42, "init") != R.stream_key(43, "init")
    # drawing from one stream does not move another
    r1, r2 = R.Rng(7), R.Rng(7)
    r1.init.words(100)
    assert r1.data.words(10) == r2.data.words(10)


def test_state_save_restore_continues_identically():
    rng = R.Rng(1337)
    rng.data.randint(5, 100)
    rng.dropout.uniform(7)
    rng.init.normal(3)
    state = json.loads(json.dumps(rng.state()))  # JSON-safe
    expect = (rng.data.randint(10, 1000), rng.dropout.uniform(10), rng.init.normal(9),
              rng.sampling.random())
    again = R.Rng.from_state(state)
    got = (again.data.randint(10, 1000), again.dropout.uniform(10), again.init.normal(9),
           again.sampling.random())
    assert got == expect


def test_uniform_range_and_mean():
    u = R.Rng(1).stream("test").uniform(20000)
    assert min(u) >= 0.0 and max(u) < 1.0
    assert abs(sum(u) / len(u) - 0.5) < 0.01
    assert R.to_uniform(0xFFFFFFFF) < 1.0 and R.to_uniform(0) == 0.0


def test_normal_mean_std():
    z = R.Rng(2).stream("test").normal(20000)
    mean = sum(z) / len(z)
    std = math.sqrt(sum((v - mean) ** 2 for v in z) / len(z))
    assert abs(mean) < 0.03 and abs(std - 1.0) < 0.03
    s = R.Rng(3).stream("x")
    w = s.normal(5, mean=10.0, std=0.5)
    assert len(w) == 5 and s.position == 6  # an odd count uses 2*ceil(n/2) words
    assert all(5.0 < v < 15.0 for v in w)


def test_randint_range():
    s = R.Rng(4).stream("x")
    xs = s.randint(5000, 7)
    assert min(xs) == 0 and max(xs) == 6 and set(xs) == set(range(7))
    assert s.randint(50, 1) == [0] * 50
    with pytest.raises(ValueError, match="high > 0"):
        s.randint(3, 0)
