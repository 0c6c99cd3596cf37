"""Import and export on the standard library alone (no Hugging Face peer needed): round trips,
HF's names and Conv1D layout, shards, OpenAI's naming, bias-free models, --init-from cropping,
and the checkpoint pieces they rely on. The peers' view: tests/test_interop_hf.py."""

from __future__ import annotations

import json
import os
import random
from array import array

import pytest

from alpha.core.config import ModelConfig, RunConfig, SampleConfig, TrainConfig
from alpha.core.errors import ConfigError, InteropError
from alpha.interop import safetensors as st
from alpha.interop.export import export_checkpoint
from alpha.interop.hf_import import checkpoint_header, import_model, read_model
from alpha.interop.init_from import start_from
from alpha.model.params import num_params, param_offsets
from alpha.tokenizers.gpt2 import BYTE_TO_CHAR, EOT, GPT2Tokenizer
from alpha.train import checkpoint as ckpt_format

CFG = ModelConfig(vocab_size=260, n_layer=2, n_head=2, n_embd=16, block_size=8)


def _tokenizer(vocab_size=260):
    return GPT2Tokenizer(list(BYTE_TO_CHAR.values()) + [EOT], [], vocab_size=vocab_size)


def _checkpoint(path, cfg=CFG, seed=0):
    rng = random.Random(seed)
    n = num_params(cfg)
    params = array("f", (rng.gauss(0, 1) for _ in range(n)))
    ckpt_format.save(str(path), checkpoint_header(cfg, _tokenizer(cfg.vocab_size), {}),
                     {"params": (params, (n,), "f32")})
    return params


def test_export_writes_hf_names_and_conv1d_layout_and_imports_back(tmp_path):
    params = _checkpoint(tmp_path / "a.ckpt")
    result = export_checkpoint(str(tmp_path / "a.ckpt"), str(tmp_path / "hf"))
    names = sorted(os.path.basename(f) for f in result.files)
    assert names == ["config.json", "generation_config.json", "merges.txt", "model.safetensors",
                     "tokenizer_config.json", "vocab.json"]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["n_positions"] == 8
    assert config["eos_token_id"] == 256 and config["activation_function"] == "gelu_new"
    with st.SafetensorsFile(str(tmp_path / "hf" / "model.safetensors")) as f:
        assert f.metadata == {"format": "pt"}
        assert len(f.names()) == 4 + 12 * 2  # wte, wpe, ln_f w/b + 12 per block; tied head
        assert f.info("transformer.h.1.attn.c_attn.weight").shape == (16, 48)  # (in, out)
        assert f.info("transformer.h.0.mlp.c_proj.weight").shape == (64, 16)
        off, shape = param_offsets(CFG)["h.1.attn.c_attn.weight"]
        assert f.get("transformer.h.1.attn.c_attn.weight") == params[off: off + 16 * 48]

    src, size = import_model(str(tmp_path / "hf"), str(tmp_path / "b.ckpt"))
    assert src.config == CFG and src.tokenizer.kind == "gpt2" and src.n_params == len(params)
    ck = ckpt_format.load(str(tmp_path / "b.ckpt"))
    assert ck.size == size and ck.tensors["params"] == params and ck.step == 0
    assert RunConfig.from_dict(ck.header["config"]).model == CFG
    assert ck.header["tokenizer"]["vocab_size"] == 260


def test_mapped_checkpoint_load_gives_the_same_values(tmp_path):
    params = _checkpoint(tmp_path / "a.ckpt")
    ck = ckpt_format.load(str(tmp_path / "a.ckpt"), mapped=True)
    view = ck.tensors["params"]
    assert isinstance(view, memoryview) and view.format == "f"
    assert view.tolist() == params.tolist()


def test_bias_free_untied_model_exports_zero_biases(tmp_path):
    cfg = ModelConfig(vocab_size=260, n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False,
                      tie_embeddings=False, activation="relu", ffn_dim=24)
    params = _checkpoint(tmp_path / "a.ckpt", cfg)
    result = export_checkpoint(str(tmp_path / "a.ckpt"), str(tmp_path / "hf"))
    assert any("exported as zeros" in n for n in result.notes)
    with st.SafetensorsFile(str(tmp_path / "hf" / "model.safetensors")) as f:
        assert f.get("transformer.h.0.mlp.c_fc.bias") == array("f", [0.0]) * 24
        assert f.get("transformer.ln_f.bias") == array("f", [0.0]) * 16
        off, _ = param_offsets(cfg)["lm_head.weight"]
        assert f.get("lm_head.weight") == params[off: off + 260 * 16]
    imported = read_model(str(tmp_path / "hf"))
    assert imported.config == ModelConfig(**{**cfg.__dict__, "bias": True})


def test_sharded_folder_and_openai_names_import(tmp_path):
    params = _checkpoint(tmp_path / "a.ckpt")
    export_checkpoint(str(tmp_path / "a.ckpt"), str(tmp_path / "hf"))
    tensors, _ = st.read(str(tmp_path / "hf" / "model.safetensors"))
    with st.SafetensorsFile(str(tmp_path / "hf" / "model.safetensors")) as f:
        shapes = {n: f.info(n).shape for n in f.names()}
    # shards: the same tensors over two files and an index, as save_pretrained writes them
    shard = tmp_path / "sharded"
    shard.mkdir()
    names = sorted(tensors)
    weight_map = {}
    for k, part in enumerate((names[:10], names[10:])):
        file = f"model-0000{k + 1}-of-00002.safetensors"
        st.write(str(shard / file), {n: (tensors[n], shapes[n], "F32") for n in part},
                 metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    (shard / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for name in ("config.json", "vocab.json", "merges.txt"):
        (shard / name).write_bytes((tmp_path / "hf" / name).read_bytes())
    assert read_model(str(shard)).params == params

    # OpenAI's names, with the mask buffers, BF16, no config.json: sizes from the shapes
    openai = tmp_path / "openai"
    openai.mkdir()
    blob = {n.removeprefix("transformer."): (tensors[n], shapes[n], "BF16") for n in names}
    blob.update({f"h.{i}.attn.bias": ([1.0] * 64, (1, 1, 8, 8), "F32") for i in range(2)})
    st.write(str(openai / "model.safetensors"), blob)
    with pytest.raises(InteropError, match="cannot tell the number of heads of a 16-wide"):
        read_model(str(openai / "model.safetensors"), str(tmp_path / "hf"))
    got = read_model(str(openai / "model.safetensors"), str(tmp_path / "hf"), n_head=2)
    assert got.config == CFG
    assert sorted(got.source["skipped"]) == ["h.0.attn.bias", "h.1.attn.bias"]
    assert max(abs(a - b) for a, b in zip(got.params, params)) <= 2 ** -8 * max(map(abs, params))


def test_wrong_tensors_are_named(tmp_path):
    _checkpoint(tmp_path / "a.ckpt")
    export_checkpoint(str(tmp_path / "a.ckpt"), str(tmp_path / "hf"))
    path = str(tmp_path / "hf" / "model.safetensors")
    tensors, _ = st.read(path)
    with st.SafetensorsFile(path) as f:
        shapes = {n: f.info(n).shape for n in f.names()}

    def rewrite(changes: dict, drop=()):
        blob = {n: (tensors[n], shapes[n], "F32") for n in tensors if n not in drop}
        blob.update(changes)
        st.write(path, blob, metadata={"format": "pt"})

    w = "transformer.h.0.attn.c_attn.weight"
    rewrite({w: (tensors[w], (48, 16), "F32")})  # nn.Linear's (out, in): not GPT-2's layout
    with pytest.raises(InteropError, match=r"'transformer.h.0.attn.c_attn.weight' has shape "
                                           r"\[48, 16\], the config needs \[16, 48\]"):
        read_model(str(tmp_path / "hf"))
    rewrite({}, drop=[w])
    with pytest.raises(InteropError, match=r"tensor 'transformer.h.0.attn.c_attn.weight' is "
                                           "missing"):
        read_model(str(tmp_path / "hf"))
    rewrite({"transformer.h.0.attn.rotary": ([0.0], (1,), "F32")})
    with pytest.raises(InteropError, match="'transformer.h.0.attn.rotary' is not part of a "
                                           "GPT-2 model"):
        read_model(str(tmp_path / "hf"))
    os.remove(path)
    with pytest.raises(InteropError, match="has no model.safetensors"):
        read_model(str(tmp_path / "hf"))


def test_init_from_keeps_the_model_and_crops_the_context(tmp_path):
    params = _checkpoint(tmp_path / "a.ckpt")
    base = RunConfig("text", ModelConfig(), TrainConfig(), SampleConfig())
    config, ck = start_from(str(tmp_path / "a.ckpt"), base, {"dropout": 0.1})
    assert config.model == ModelConfig(**{**CFG.__dict__, "dropout": 0.1})
    assert ck.tensors["params"] == params
    config, ck = start_from(str(tmp_path / "a.ckpt"), base, {"block_size": 4})
    assert config.model.block_size == 4
    small = param_offsets(config.model)
    big = param_offsets(CFG)
    for name, (off, shape) in small.items():
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        src = big[name][0]
        assert ck.tensors["params"][off: off + n] == params[src: src + n], name
    assert len(ck.tensors["params"]) == num_params(config.model)
    with pytest.raises(ConfigError, match="block_size 16 is longer than the model's context"):
        start_from(str(tmp_path / "a.ckpt"), base, {"block_size": 16})
    with pytest.raises(ConfigError, match="its model has n_embd=16, which cannot change to 32"):
        start_from(str(tmp_path / "a.ckpt"), base, {"n_embd": 32})


def test_fuzzed_config_and_index_import_or_fail_in_one_line(tmp_path):
    from test_fuzz import expect_typed, mutate_bytes, mutate_json

    _checkpoint(tmp_path / "a.ckpt")
    export_checkpoint(str(tmp_path / "a.ckpt"), str(tmp_path / "hf"))
    config_path = tmp_path / "hf" / "config.json"
    config = json.loads(config_path.read_text())
    raw = config_path.read_bytes()
    rng = random.Random(8)
    loaded = 0
    for i in range(150):
        if i % 3 == 0:
            config_path.write_bytes(mutate_bytes(raw, rng))
        else:
            config_path.write_text(json.dumps(mutate_json(config, rng)))
        if expect_typed(read_model, str(tmp_path / "hf")) is not None:
            loaded += 1
    assert loaded > 10
    config_path.write_bytes(raw)
    index = tmp_path / "hf" / "model.safetensors.index.json"
    valid = {"weight_map": {"transformer.wte.weight": "model.safetensors"}}
    for _ in range(60):
        index.write_text(json.dumps(mutate_json(valid, rng)))
        expect_typed(read_model, str(tmp_path / "hf"))
