"""GPT-2's tokenizer on its own (alpha.tokenizers.gpt2): the pre-tokenizing pattern, byte-level
BPE, files, the JSON artifact and streaming cuts. The comparison with Hugging Face's
GPT2TokenizerFast on 10,000 lines lives in tests/test_interop_hf.py."""

from __future__ import annotations

import json
import random
import sys
import unicodedata

import pytest

from alpha.core.errors import AlphaError, ConfigError, DataError
from alpha.tokenizers import from_json, from_json_str
from alpha.tokenizers import gpt2
from alpha.tokenizers.gpt2 import BYTE_TO_CHAR, EOT, GPT2Tokenizer, pretokenize


def test_letter_and_number_classes_match_unicodedata():
    """The pattern's \\p{L} and \\p{N}, built the fast way, are exactly categories L* and N*."""
    p = gpt2.pattern().pattern
    letters = p[p.index(" ?[") + 3: p.index("]+")]
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    cat = unicodedata.category
    want_l = gpt2._char_class(c for c in everything if cat(c)[0] == "L")
    want_n = gpt2._char_class(c for c in everything if cat(c)[0] == "N")
    assert letters == want_l
    assert f" ?[{want_n}]+" in p


@pytest.mark.parametrize("text, pieces", [
    ("Hello world", ["Hello", " world"]),
    ("I'm here, they're not. It'S", ["I", "'m", " here", ",", " they", "'re", " not", ".", " It",
                                     "'", "S"]),
    ("  hi", [" ", " hi"]),
    ("a\n\nb", ["a", "\n", "\n", "b"]),
    ("end  \n", ["end", "  \n"]),
    ("x 2023 ½² ⅫⅫ", ["x", " 2023", " ½²", " ⅫⅫ"]),
    ("naïve café", ["naïve", " café"]),
    ("e\u0301!", ["e", "\u0301!"]),  # a combining mark is neither letter nor number
    ("a\x1cb", ["a", "\x1c", "b"]),  # U+001C is str.isspace() but not Unicode White_Space
    ("a\u3000b\u00a0c", ["a", "\u3000", "b", "\u00a0", "c"]),
    ("👋🏽 hi", ["👋🏽", " hi"]),
    ("中文 字", ["中文", " 字"]),
])
def test_pretokenize_as_gpt2(text, pieces):
    assert pretokenize(text) == pieces
    assert "".join(pretokenize(text)) == text


def _tiny(merges=(("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("e", "ll"), ("a", "a"))):
    vocab = list(BYTE_TO_CHAR.values())
    for a, b in merges:
        vocab.append(a + b)
    vocab.append(EOT)
    return GPT2Tokenizer(vocab, list(merges))


def _naive(tok: GPT2Tokenizer, text: str) -> list[int]:
    """Pattern + BPE piece by piece, without the chunk cache: the definition."""
    out = []
    for part, special in tok.split_specials(text):
        if special:
            out.append(tok.special_tokens[part])
        else:
            for piece in pretokenize(part):
                out.extend(tok._encode_piece(piece))
    return out


def test_bpe_merges_lowest_rank_first():
    tok = _tiny()
    ids = tok.encode(" the hello aaa<|endoftext|>")
    words = [tok.decode([i]) for i in ids]
    assert words == [" the", " ", "he", "ll", "o", " ", "aa", "a", EOT]  # "h e" ranks first
    assert ids[-1] == tok.special_tokens[EOT] == tok.vocab_size - 1
    assert tok.encode("<|endoftext|>", allow_special=False) != [tok.special_tokens[EOT]]


def _random_text(rng: random.Random, n: int) -> str:
    alphabet = (list("ab 's'tdll\n\t'") + ["  ", "   ", "\r\n", "\u00a0", "\u3000", "\x1c", "\x85",
                "é", "e\u0301", "中", "👋🏽", "1", "²", "½", "!!", "<|endoftext|>", "\u2028"])
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_chunked_encoding_equals_the_definition():
    tok = _tiny()
    rng = random.Random(5)
    for _ in range(300):
        text = _random_text(rng, rng.randint(0, 40))
        ids = tok.encode(text)
        assert ids == _naive(tok, text), repr(text)
        assert tok.decode(ids) == text


def test_safe_cut_keeps_the_encoding():
    tok = _tiny()
    rng = random.Random(9)
    cuts = 0
    for _ in range(300):
        text = _random_text(rng, rng.randint(2, 60))
        cut = tok.safe_cut(text)
        if cut:
            cuts += 1
            assert tok.encode(text[:cut]) + tok.encode(text[cut:]) == tok.encode(text), \
                (text, cut)
    assert cuts > 50
    # the base class would cut between "'" and "s"; GPT-2 joins them ('s)
    assert tok.safe_cut("it's") == 0


def test_decode_replaces_broken_utf8_and_rejects_unknown_ids():
    tok = _tiny()
    ids = tok.encode("é")
    assert len(ids) == 2 and tok.decode(ids[:1]) == "\ufffd"
    assert tok.token_bytes(ids[0]) == "é".encode()[:1]
    with pytest.raises(DataError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    padded = GPT2Tokenizer(tok.vocab, tok.merges, vocab_size=tok.vocab_size + 5)
    assert padded.vocab_size == tok.vocab_size + 5
    assert padded.decode([ids[0], tok.vocab_size + 2, ids[1]]) == "é"  # padding ids: nothing


def test_files_round_trip_and_openai_names(tmp_path):
    tok = _tiny()
    vocab_path, merges_path = tok.save_files(str(tmp_path / "hf"))
    assert open(merges_path, encoding="utf-8").readline() == "#version: 0.2\n"
    again = gpt2.load_folder(str(tmp_path / "hf"))
    assert again.vocab == tok.vocab and again.merges == tok.merges
    assert again.special_tokens == {EOT: len(tok.vocab) - 1}
    # OpenAI's names for the same files
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / "encoder.json").write_bytes(open(vocab_path, "rb").read())
    (tmp_path / "openai" / "vocab.bpe").write_bytes(open(merges_path, "rb").read())
    text = " the hello, world 'll"
    assert gpt2.load_folder(str(tmp_path / "openai")).encode(text) == tok.encode(text)
    assert gpt2.has_files(str(tmp_path / "openai")) and not gpt2.has_files(str(tmp_path))
    from alpha.tokenizers import load  # what `alpha tokenizer encode --tokenizer DIR` reads

    assert load(str(tmp_path / "openai")).encode(text) == tok.encode(text)


def test_json_artifact_round_trip():
    tok = _tiny()
    d = tok.to_json()
    assert d["kind"] == "gpt2" and d["vocab_size"] == tok.vocab_size
    again = from_json(json.loads(json.dumps(d)))
    assert isinstance(again, GPT2Tokenizer)
    assert again.fingerprint() == tok.fingerprint()
    assert from_json_str(tok.to_json_str()).encode("x the<|endoftext|>") == \
        tok.encode("x the<|endoftext|>")


def test_bad_files_are_data_errors(tmp_path):
    tok = _tiny()
    tok.save_files(str(tmp_path))
    merges = tmp_path / "merges.txt"
    merges.write_text("#version: 0.2\nĠ t\nq zz\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"merge 2 \(q zz\) makes or uses 'zz'"):
        gpt2.load_folder(str(tmp_path))
    merges.write_text("a b c\n", encoding="utf-8")
    with pytest.raises(DataError, match="not two tokens"):
        gpt2.load_folder(str(tmp_path))
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 5}', encoding="utf-8")
    with pytest.raises(DataError, match="ids must be 0..1"):
        gpt2.load_folder(str(tmp_path))
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 1}', encoding="utf-8")
    merges.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="lacks 254 of the 256 byte tokens"):
        gpt2.load_folder(str(tmp_path))
    with pytest.raises(DataError, match="no GPT-2 tokenizer"):
        gpt2.load_folder(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="not trained"):
        GPT2Tokenizer.train("text", 300)
    assert issubclass(DataError, AlphaError)


def test_fuzzed_artifacts_and_files_load_or_fail_in_one_line(tmp_path):
    """Mutated JSON artifacts and vocab.json/merges.txt files: a tokenizer that works, or an
    AlphaError of one line; never another exception."""
    from test_fuzz import expect_typed, mutate_bytes, mutate_json

    from alpha import tokenizers

    tok = _tiny()
    rng = random.Random(4)
    valid = tok.to_json()
    raw = tok.to_json_str().encode()
    path = tmp_path / "tok.json"
    loaded = 0
    for i in range(150):
        if i % 3 == 0:
            path.write_bytes(mutate_bytes(raw, rng))
        else:
            path.write_text(json.dumps(mutate_json(valid, rng)), encoding="utf-8")
        got = expect_typed(tokenizers.load, str(path))
        if got is not None:
            loaded += 1
            ids = got.encode("the hello<|endoftext|> é")
            assert all(isinstance(t, int) and 0 <= t < got.vocab_size for t in ids)
            assert isinstance(got.decode(ids), str)
    assert loaded > 10
    folder = tmp_path / "files"
    vocab_path, merges_path = tok.save_files(str(folder))
    files = {p: open(p, "rb").read() for p in (vocab_path, merges_path)}
    for i in range(100):
        target = (vocab_path, merges_path)[i % 2]
        with open(target, "wb") as f:
            f.write(mutate_bytes(files[target], rng))
        got = expect_typed(gpt2.load_folder, str(folder))
        if got is not None:
            assert got.decode(got.encode("the hello")) == "the hello"
        with open(target, "wb") as f:
            f.write(files[target])
