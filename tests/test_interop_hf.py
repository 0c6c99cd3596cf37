"""Weights interop against the real peers: Hugging Face `transformers` (CPU PyTorch), `tokenizers`
and `safetensors`, installed for the tests by tools/install-test-deps.sh (never imported by Alpha).

- a random GPT2LMHeadModel saved with save_pretrained imports with the same logits (1e-4 relative)
  and the same 50 greedy tokens; OpenAI-named files (no `transformer.`, attn.bias buffers, F16)
  import too;
- Alpha checkpoints exported load with GPT2LMHeadModel.from_pretrained: same logits, same loss;
- a GPT-2-format BPE trained with `tokenizers` on tinyshakespeare: Alpha's ids equal
  GPT2TokenizerFast's on 10,000 lines of varied Unicode;
- safetensors files cross between the two implementations (F32, F16, BF16);
- `train --init-from`, `sample` and `eval` take the imported models; user mistakes exit 2.

No weights are downloaded: every model is made here, small and random. transformers is imported
once for the module (it is slow to import).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from array import array

import pytest

from alpha.cli.main import main
from conftest import require_peer

DATA = os.path.join(os.path.dirname(__file__), "data", "tinyshakespeare-256k.txt")
VOCAB = 1000  # the trained tokenizer's size, and the models' vocabulary


@pytest.fixture(scope="module")
def hf():
    """The peers, imported once: (torch, transformers, tokenizers, safetensors.torch)."""
    try:
        import safetensors.torch
        import tokenizers
        import torch
        import transformers
    except ImportError as e:
        require_peer(False, f"Hugging Face peers not installed ({e.name}); run "
                            "tools/install-test-deps.sh as root")
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers, tokenizers, safetensors.torch


@pytest.fixture(scope="module")
def tok_dir(hf, tmp_path_factory):
    """A GPT-2-format byte-level BPE trained with `tokenizers` on tinyshakespeare."""
    _, _, tokenizers, _ = hf
    folder = tmp_path_factory.mktemp("tok")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train([DATA], vocab_size=VOCAB, min_frequency=2, special_tokens=["<|endoftext|>"],
              show_progress=False)
    bpe.save_model(str(folder))
    return str(folder)


def _hf_model(hf, folder, seed=0, tok_dir=None, **config):
    torch, transformers, _, _ = hf
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64,
               initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    cfg.update(config)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()
    model.save_pretrained(str(folder))
    if tok_dir:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok_dir, name), folder)
    return model


def _ids(hf, B, T, seed=1):
    torch = hf[0]
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def _alpha_logits(model, ids):
    """Logits (B, T, V) of an Alpha ModelRunner on a torch id tensor, as a torch tensor."""
    import torch

    be = model.backend
    B, T = ids.shape
    x = be.from_array(ids.flatten().tolist(), (B, T), "i32")
    model.eval()
    logits, _ = model.forward(x)
    return torch.tensor(be.to_array(logits)).reshape(B, T, -1)


def _alpha_loss(model, ids):
    be = model.backend
    B, T = ids.shape
    x = be.from_array(ids[:, :-1].flatten().tolist(), (B, T - 1), "i32")
    y = be.from_array(ids[:, 1:].flatten().tolist(), (B, T - 1), "i32")
    model.eval()
    _, loss = model.forward(x, y)
    return float(loss.to_array()[0])


def _close(a, b, rel=1e-4):
    scale = float(b.abs().max())
    err = float((a - b).abs().max())
    assert err <= rel * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()  # what came before is not this command's
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---- Hugging Face -> Alpha ------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    {},  # GPT-2 as it is: gelu_new, tied head
    {"activation_function": "relu", "tie_word_embeddings": False, "n_inner": 96,
     "layer_norm_epsilon": 1e-6},
], ids=["gpt2", "relu-untied-n_inner"])
def test_hf_model_imports_with_the_same_logits_and_greedy_tokens(hf, tok_dir, tmp_path, capsys,
                                                                  config):
    torch = hf[0]
    from alpha.train import restore as session

    ref = _hf_model(hf, tmp_path / "hf", tok_dir=tok_dir, **config)
    ckpt = str(tmp_path / "imported.ckpt")
    rc, out, err = _run(capsys, "import", "--from", str(tmp_path / "hf"), "--out", ckpt)
    assert rc == 0, err
    assert "tokenizer gpt2" in out
    cfg, tokenizer, model, _ = session.load_for_inference(ckpt, "cpu")
    assert cfg.model.tie_embeddings == config.get("tie_word_embeddings", True)

    ids = _ids(hf, 4, 48)
    with torch.no_grad():
        want = ref(ids).logits
    _close(_alpha_logits(model, ids), want)

    prompt = ids[0, :8]
    with torch.no_grad():
        hf_tokens = ref.generate(prompt[None], max_new_tokens=50, min_new_tokens=50,
                                 do_sample=False, pad_token_id=0)[0, 8:].tolist()
    from alpha.model.inference import InferenceEngine

    engine = InferenceEngine(model)
    ours = list(engine.generate(prompt.tolist(), max_tokens=50, temperature=0.0))
    assert ours == hf_tokens


def test_openai_named_f16_file_imports(hf, tok_dir, tmp_path, capsys):
    """OpenAI's GPT-2 naming: no `transformer.` prefix, h.N.attn.bias mask buffers; F16; no
    config.json beside it (sizes from the shapes, heads = n_embd / 64)."""
    torch, _, _, st_torch = hf
    from alpha.train import restore as session

    ref = _hf_model(hf, tmp_path / "hf", n_embd=128, n_head=2, n_positions=32)
    ref = ref.half().float()  # the weights as F16 holds them
    state = {}
    for name, value in ref.state_dict().items():
        if name == "lm_head.weight":
            continue
        state[name.removeprefix("transformer.")] = value.half().contiguous()
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32).half()
    path = str(tmp_path / "openai" / "model.safetensors")
    os.makedirs(os.path.dirname(path))
    st_torch.save_file(state, path)
    ckpt = str(tmp_path / "gpt2.ckpt")
    rc, out, err = _run(capsys, "import", "--from", path, "--tokenizer", tok_dir, "--out", ckpt)
    assert rc == 0, err
    assert "2 layers, 2 heads, 128 wide, context 32" in out
    _, _, model, ck = session.load_for_inference(ckpt, "cpu")
    assert sorted(ck.header["imported_from"]["skipped"]) == ["h.0.attn.bias", "h.1.attn.bias"]
    ids = _ids(hf, 2, 32)
    with torch.no_grad():
        want = ref(ids).logits
    _close(_alpha_logits(model, ids), want)


# ---- Alpha -> Hugging Face ------------------------------------------------------------------


def test_exported_checkpoint_loads_in_transformers(hf, tmp_path, capsys, monkeypatch):
    """A trained Alpha model (char tokenizer; no biases, untied head, silu) exported, loaded with
    from_pretrained: same logits, same loss."""
    torch, transformers, _, _ = hf
    from alpha.train import checkpoint as ckfind, restore as session

    monkeypatch.chdir(tmp_path)
    text = open(DATA, encoding="utf-8").read()[:20000]
    (tmp_path / "d.txt").write_text(text, encoding="utf-8")
    rc, out, err = _run(capsys, "train", "--data", "d.txt", "--layers", "2", "--heads", "2",
                        "--dim", "32", "--block", "32", "--iters", "3", "--batch", "2",
                        "--no-bias", "--no-tie", "--activation", "silu", "--eval-interval",
                        "0", "--sample-interval", "0", "--run-dir", "run", "--quiet")
    assert rc == 0, err
    rc, out, err = _run(capsys, "export", "--run", "run", "--out", "exported")
    assert rc == 0, err
    assert "no tokenizer files written" in err and "exported as zeros" in err
    ref = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "exported")).eval()
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["activation_function"] == "silu" and config["tie_word_embeddings"] is False

    ckpt = ckfind.find("run")
    _, _, model, _ = session.load_for_inference(ckpt, "cpu")
    V = model.cfg.vocab_size
    ids = torch.randint(0, V, (3, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = ref(ids).logits
        want_loss = float(ref(ids, labels=ids).loss)  # HF shifts: 31 predictions per row
    _close(_alpha_logits(model, ids), want)
    assert _alpha_loss(model, ids) == pytest.approx(want_loss, rel=1e-5)


def test_round_trip_with_gpt2_tokenizer(hf, tok_dir, tmp_path, capsys):
    """HF -> Alpha -> HF: the same tensors bit for bit, and GPT2TokenizerFast loads the folder."""
    _, transformers, _, _ = hf
    from alpha.interop.safetensors import SafetensorsFile

    _hf_model(hf, tmp_path / "hf", tok_dir=tok_dir)
    ckpt = str(tmp_path / "m.ckpt")
    assert _run(capsys, "import", "--from", str(tmp_path / "hf"), "--out", ckpt)[0] == 0
    rc, out, err = _run(capsys, "export", "--checkpoint", ckpt, "--out", str(tmp_path / "out"))
    assert rc == 0, err
    a = SafetensorsFile(str(tmp_path / "hf" / "model.safetensors"))
    b = SafetensorsFile(str(tmp_path / "out" / "model.safetensors"))
    assert sorted(a.names()) == sorted(b.names()) and len(a.names()) == 28
    for name in a.names():
        assert b.info(name).shape == a.info(name).shape
        assert b.get(name) == a.get(name), name
    a.close()
    b.close()
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path / "out"))
    text = "To be, or not to be<|endoftext|>"
    from alpha.tokenizers import gpt2

    assert tok.encode(text) == gpt2.load_folder(str(tmp_path / "out")).encode(text)
    assert tok.eos_token == "<|endoftext|>"


# ---- train --init-from, sample, eval ----------------------------------------------------------


def test_init_from_hf_folder_fine_tunes_and_imported_models_sample_and_eval(
        hf, tok_dir, tmp_path, capsys, monkeypatch):
    from alpha.train import checkpoint as ckpt_format
    from alpha.train import checkpoint as ckfind

    monkeypatch.chdir(tmp_path)
    _hf_model(hf, tmp_path / "hf", tok_dir=tok_dir)
    (tmp_path / "d.txt").write_text(open(DATA, encoding="utf-8").read()[:30000], encoding="utf-8")
    rc, out, err = _run(capsys, "train", "--init-from", "hf", "--data", "d.txt", "--block", "32",
                        "--iters", "2", "--batch", "2", "--lr", "1e-6", "--min-lr", "0",
                        "--warmup", "0", "--eval-interval", "0", "--sample-interval", "0",
                        "--run-dir", "ft", "--quiet")
    assert rc == 0, err
    ck = ckpt_format.load(ckfind.find("ft"))
    model_cfg = ck.header["config"]["model"]
    assert (model_cfg["n_layer"], model_cfg["block_size"]) == (2, 32)
    assert model_cfg["vocab_size"] == VOCAB
    assert ck.header["tokenizer"]["kind"] == "gpt2"
    assert ck.step == 2 and ck.header["optimizer"]["step"] == 2  # a new run: fresh optimizer
    # the weights started from the source's (a tiny lr moves them by ~1e-6; a fresh init is far)
    from alpha.core.config import ModelConfig
    from alpha.interop.hf_import import read_model
    from alpha.model.params import param_offsets

    src = read_model("hf")
    off_src, shape = param_offsets(src.config)["wte"]
    off, _ = param_offsets(ModelConfig(**model_cfg))["wte"]
    n = shape[0] * shape[1]
    got, want = ck.tensors["params"][off: off + n], src.params[off_src: off_src + n]
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4

    rc, out, err = _run(capsys, "train", "--init-from", "hf", "--layers", "3", "--data", "d.txt")
    assert rc == 2 and "n_layer=2" in err and "\n" not in err.strip()

    # sample and eval the fine-tuned model like any other
    ckpt = ckfind.find("ft")
    rc, out, err = _run(capsys, "sample", "--checkpoint", ckpt, "--prompt", "ROMEO:",
                        "--max-tokens", "8", "--temperature", "0")
    assert rc == 0 and out.startswith("ROMEO:"), err
    rc, out, err = _run(capsys, "eval", "--checkpoint", ckpt, "--data", "d.txt", "--max-tokens",
                        "600")
    assert rc == 0 and "perplexity" in out, err


# ---- the GPT-2 tokenizer against GPT2TokenizerFast ------------------------------------------


def _varied_lines(n: int, seed: int = 13) -> list[str]:
    """Lines mixing Shakespeare with the cases GPT-2's pattern cares about."""
    rng = random.Random(seed)
    base = [line for line in open(DATA, encoding="utf-8").read().split("\n") if line]
    pieces = [
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "’s", "don't", "I'LL", "rock'n'roll",
        "👋", "👋🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🙂🙃", "中文字符", "日本語のテキスト", "한국어", "русский",
        "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย", "e\u0301", "n\u0303o", "a\u0308\u0304",
        "123", "4567890", "3.14159", "1,000,000", "٣٤٥", "１２３", "²³", "½¼", "ⅫⅣ", "①②",
        "  ", "   ", "\t", "\t\t ", " \u00a0", "\u3000", "\u2009", "\u200b", "\x0b", "\x0c",
        "\x1c", "\x1f", "\x85", "\u2028", "\r", "!!!", "...", "?!", "--", "$%^&", "@user", "#tag",
        "<|endoftext|>", "<|endoftext", "http://x.y/z?q=1", "snake_case", "CamelCase", "ÀÉÎõü",
        "ǅungla", "ꙮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🂡",
    ]
    lines = []
    for _ in range(n):
        words = rng.choice(base).split(" ")
        for _ in range(rng.randint(0, 4)):
            words.insert(rng.randint(0, len(words)), rng.choice(pieces))
        sep = rng.choice([" ", " ", " ", "", "  "])
        line = sep.join(words)
        if rng.random() < 0.2:
            line = rng.choice(["  ", " ", "\t"]) + line
        if rng.random() < 0.2:
            line += rng.choice(["  ", " ", "\n", " \n"])
        lines.append(line)
    return lines


def test_gpt2_tokenizer_matches_gpt2_tokenizer_fast(hf, tok_dir):
    _, transformers, _, _ = hf
    from alpha.tokenizers import gpt2

    ref = transformers.GPT2TokenizerFast.from_pretrained(tok_dir)
    ours = gpt2.load_folder(tok_dir)
    assert ours.vocab_size == len(ref) == VOCAB
    lines = _varied_lines(10_000)
    want = ref(lines)["input_ids"]
    got = [ours.encode(line) for line in lines]
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not bad, f"{len(bad)} lines differ, first: {lines[bad[0]]!r}"
    whole = "\n".join(lines)
    assert ours.encode(whole) == ref(whole)["input_ids"]
    for ids in want[:500]:
        assert ours.decode(ids) == ref.decode(ids)


# ---- safetensors between the two implementations --------------------------------------------


def test_safetensors_files_cross_between_implementations(hf, tmp_path):
    torch, _, _, st_torch = hf
    from alpha.interop import safetensors as st

    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
               "bf16": (torch.randn(2, 2, 3, generator=g) * 100).bfloat16(),
               "empty": torch.zeros(0, 4)}
    theirs = str(tmp_path / "theirs.safetensors")
    st_torch.save_file(tensors, theirs, metadata={"format": "pt"})
    with st.SafetensorsFile(theirs) as f:
        assert f.metadata == {"format": "pt"}
        for name, t in tensors.items():
            assert f.info(name).shape == tuple(t.shape)
            assert list(f.get(name)) == t.float().flatten().tolist(), name

    values = torch.randn(64, generator=g) * 10
    ours = str(tmp_path / "ours.safetensors")
    plain = array("f", values.tolist())
    st.write(ours, {"a": (plain, (8, 8), "F32"), "h": (plain, (64,), "F16"),
                    "b": (plain, (4, 16), "BF16")}, metadata={"who": "alpha"})
    loaded = st_torch.load_file(ours)
    assert torch.equal(loaded["a"], values.reshape(8, 8))
    assert torch.equal(loaded["h"], values.half())
    assert torch.equal(loaded["b"], values.bfloat16().reshape(4, 16))  # same rounding as torch


# ---- user mistakes: one line, exit 2 ----------------------------------------------------------


def test_user_mistakes_exit_2_with_one_line(hf, tok_dir, tmp_path, capsys):
    from alpha.interop.hf_import import checkpoint_header
    from alpha.core.config import ModelConfig
    from alpha.model.params import num_params
    from alpha.tokenizers import gpt2
    from alpha.train import checkpoint as ckpt_format

    def one_line_error(*argv, match):
        rc, out, err = _run(capsys, *argv)
        assert rc == 2, (argv, out, err)
        assert err.count("\n") == 1 and match in err, err

    one_line_error("import", "--from", str(tmp_path / "nope"), "--out", "x.ckpt",
                   match="no such file or folder")
    _hf_model(hf, tmp_path / "hf", tok_dir=tok_dir)
    one_line_error("import", "--from", str(tmp_path / "hf"), "--tokenizer", str(tmp_path),
                   "--out", str(tmp_path / "x.ckpt"), match="no GPT-2 tokenizer")
    weights = tmp_path / "hf" / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:-100])
    one_line_error("import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "x.ckpt"),
                   match="run past the end")
    weights.write_bytes(blob)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    one_line_error("import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "x.ckpt"),
                   match="model_type 'llama'")
    (tmp_path / "hf" / "config.json").write_text(
        json.dumps({**config, "activation_function": "gelu"}))
    one_line_error("import", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "x.ckpt"),
                   match="activation_function='gelu'")
    assert not os.path.exists(tmp_path / "x.ckpt")

    # SwiGLU has no HF GPT-2 form: refused, naming the setting
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=16,
                      activation="swiglu")
    n = num_params(cfg)
    ckpt_format.save(str(tmp_path / "swiglu.ckpt"),
                     checkpoint_header(cfg, gpt2.load_folder(tok_dir), {}),
                     {"params": (array("f", [0.0]) * n, (n,), "f32")})
    one_line_error("export", "--checkpoint", str(tmp_path / "swiglu.ckpt"), "--out",
                   str(tmp_path / "e"), match="cannot export as Hugging Face GPT-2: activation=swiglu")
    assert not os.path.exists(tmp_path / "e")
    one_line_error("train", "--resume", str(tmp_path / "swiglu.ckpt"),
                   match="holds weights only")
