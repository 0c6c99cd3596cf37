"""Tokenizers: exact round trips, special tokens, <unk>, JSON artifacts, the BPE trainer."""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter

import pytest

from alpha.core.errors import AlphaError, ConfigError, DataError
from alpha.tokenizers import BPETokenizer, from_json, load, train_from_file, train_tokenizer
from alpha.tokenizers.bpe import learn_merges, presplit

EOT, USER, ASSISTANT = "<|end_of_text|>", "<|user|>", "<|assistant|>"
SPECIALS = [USER, ASSISTANT, EOT]

NASTY = [
    "",
    "a",
    " ",
    "\n\n\n",
    "  leading and trailing  ",
    "tabs\tand\r\nwindows\rnewlines\x0b\x0c",
    "NUL\x00inside\x00\x00",
    "control \x01\x02\x1b[31mred\x1b[0m \x7f",
    "emoji 🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "CJK 漢字かなカナ 한국어 " + "中文没有空格的一长串文字" * 8,
    "combining e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353 zalgo",
    "RTL עברית العربية \u200f\u200e mixed",
    "zero width \u200b\u200c\u200d\ufeff bom",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∀x∈ℝ: x²≥0 ½ ⅞",
    "digits 0123456789 ١٢٣ ９８７",
    "snake_case __dunder__ a_b_c 3_000",
    "x" * 500,
    " " * 300 + "\n" * 100,
    "max \U0010ffff and \ue000 private",
    "specials " + USER + "hi" + ASSISTANT + "there" + EOT + EOT + "end",
    "glued" + EOT + "x" + USER + USER + "<|user" + "|>" + "<|us" + "<|end_of_text|",
    "def f(x):\n    return x  # comment\n\n\tif y:\n\t\tpass\n",
]


@pytest.fixture(scope="module")
def corpus() -> str:
    base = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
            "All:\nSpeak, speak.\n\ndef main(argv=None):\n    return 0  # done\n")
    return (base * 40) + "".join(NASTY) + (USER + "hello" + ASSISTANT + "hi there" + EOT) * 30


@pytest.fixture(scope="module")
def bpe(corpus) -> BPETokenizer:
    return train_tokenizer("bpe", corpus, 400, SPECIALS)


def random_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    ranges = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randrange(0, 40)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
            if rng.random() < 0.1:
                chars.append(rng.choice(SPECIALS + [" ", "\n", "  ", "<|"]))
        out.append("".join(chars))
    return out


# ---- BPE -------------------------------------------------------------------------------------


def test_bpe_round_trips_nasty_strings(bpe):
    for s in NASTY:
        assert bpe.decode(bpe.encode(s)) == s, repr(s)
        assert bpe.decode(bpe.encode(s, allow_special=False)) == s, repr(s)


def test_bpe_round_trips_random_unicode(bpe):
    for s in random_strings(300):
        ids = bpe.encode(s)
        assert all(0 <= i < bpe.vocab_size for i in ids)
        assert bpe.decode(ids) == s


def test_bpe_vocab_layout_and_size(bpe):
    assert bpe.vocab_size == 400
    assert len(bpe.merges) == 400 - 256 - 3
    assert [bpe.special_id(s) for s in SPECIALS] == [397, 398, 399]
    assert bpe.encode(EOT) == [399]
    with pytest.raises(ConfigError):
        bpe.special_id("<|nope|>")


def test_presplit_covers_text():
    for s in NASTY + random_strings(100, seed=3):
        assert "".join(presplit(s)) == s


def test_bpe_merges_never_cross_special_tokens():
    text = ("ab" + EOT + "cd" + EOT) * 200 + ("x" + USER + "y") * 200
    tok = train_tokenizer("bpe", text, 300, [EOT, USER])
    for i in range(256, 256 + len(tok.merges)):
        piece = tok.token_bytes(i)
        assert b"<|" not in piece and b"|>" not in piece, piece
        assert not piece.startswith(b">") and not piece.endswith(b"<"), piece
    ids = tok.encode("ab" + EOT + "cd")
    assert ids.count(tok.special_id(EOT)) == 1
    assert tok.decode(ids) == "ab" + EOT + "cd"
    # without specials allowed, the special's text is ordinary bytes
    plain = tok.encode(EOT, allow_special=False)
    assert tok.special_id(EOT) not in plain and tok.decode(plain) == EOT


def test_bpe_longest_special_wins():
    tok = BPETokenizer([], ["<a>", "<a><b>"])
    assert tok.encode("<a><b><a>") == [257, 256]


def test_bpe_decode_partial_utf8_uses_replacement(bpe):
    e_acute = "é".encode("utf-8")
    assert bpe.decode([e_acute[0]]) == "\ufffd"
    assert bpe.decode([e_acute[0], e_acute[1]]) == "é"
    assert bpe.decode([0xFF, ord("a")]) == "\ufffda"
    with pytest.raises(DataError):
        bpe.decode([bpe.vocab_size])


def naive_bpe(word_counts: dict, n_merges: int) -> list[tuple[int, int]]:
    """The textbook algorithm: recount every pair after every merge. Same tie-break rule."""
    words = {tuple(w.encode("utf-8")): f for w, f in word_counts.items()}
    merges = []
    for step in range(n_merges):
        counts = Counter()
        for w, f in words.items():
            for pair in zip(w, w[1:]):
                counts[pair] += f
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        new = 256 + step
        merged = {}
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + f
        words = merged
    return merges


def test_incremental_trainer_matches_naive(corpus):
    counts = Counter(presplit(corpus))
    assert learn_merges(counts, 150) == naive_bpe(counts, 150)
    tricky = Counter(presplit("aaaa aaa aa a abab ababab aaaaaaa bbbb " * 3))
    assert learn_merges(tricky, 30) == naive_bpe(tricky, 30)


def test_bpe_training_is_deterministic_and_stops_when_out_of_pairs(corpus):
    a = train_tokenizer("bpe", corpus, 350)
    pieces = re.split(r"(?<=\S\n)(?=\S)", corpus)  # cut after newlines between non-spaces
    assert len(pieces) > 10 and "".join(pieces) == corpus
    b = train_tokenizer("bpe", iter(pieces), 350)
    assert a.merges == b.merges  # a str and the same text in safely cut pieces agree
    assert train_tokenizer("bpe", corpus, 350).merges == a.merges
    tiny = train_tokenizer("bpe", "abab", 1000)
    assert tiny.merges == [(97, 98), (256, 256)]
    assert tiny.vocab_size == 258


def test_bpe_encoding_matches_training_segmentation(corpus):
    tok = train_tokenizer("bpe", corpus, 500)
    # every merge is reachable: encoding the bytes of a token gives that token
    for i in range(256, tok.vocab_size):
        piece = tok.token_bytes(i).decode("utf-8", "replace")
        if tok.token_bytes(i) == piece.encode("utf-8") and presplit(piece) == [piece]:
            assert tok.encode(piece) == [i], (i, piece)


def test_bpe_vocab_size_too_small():
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer("bpe", "abc", 257, [EOT, USER])


# ---- char ------------------------------------------------------------------------------------


def test_char_unknown_maps_to_unk_never_dropped():
    tok = train_tokenizer("char", "hello world\n", 0, [EOT])
    assert tok.chars == sorted(set("hello world\n"))
    unk = tok.special_id("<unk>")
    ids = tok.encode("hello, wörld" + EOT)
    assert len(ids) == len("hello, wörld") + 1
    assert ids.count(unk) == 2
    assert ids[-1] == tok.special_id(EOT)
    assert tok.decode(ids) == "hello<unk> w<unk>rld" + EOT
    assert tok.vocab_size == len(tok.chars) + 2


def test_char_round_trips_what_it_was_trained_on():
    text = "".join(NASTY)
    tok = train_tokenizer("char", text, 0, SPECIALS)
    for s in NASTY:
        assert tok.decode(tok.encode(s)) == s


def test_char_vocab_cap_keeps_most_frequent():
    tok = train_tokenizer("char", "aaaabbbcc d", 4)  # 3 chars + <unk>
    assert tok.chars == ["a", "b", "c"]
    assert tok.encode("d") == [tok.special_id("<unk>")]
    with pytest.raises(ConfigError):
        train_tokenizer("char", "abc", 1)


# ---- word ------------------------------------------------------------------------------------


def test_word_tokenizer(corpus):
    tok = train_tokenizer("word", corpus, 150, SPECIALS)
    assert tok.vocab_size == 150
    for s in ["First Citizen:\nBefore we proceed", "def main(argv=None):\n    return 0"]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert len(ids) < len(s) / 2  # whole words, not characters
    # an unknown word falls back to its characters; an unknown character becomes <unk>
    ids = tok.encode("Citizenry ☃")
    assert tok.decode(ids) == "Citizenry <unk>"
    assert ids[-1] == tok.special_id("<unk>")
    assert tok.encode(USER)[0] == tok.special_id(USER)


def test_word_round_trips_training_text():
    text = "".join(NASTY)
    tok = train_tokenizer("word", text, 100000, SPECIALS)
    for s in NASTY:
        assert tok.decode(tok.encode(s)) == s


# ---- JSON artifacts ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind,size", [("bpe", 420), ("char", 0), ("word", 200)])
def test_save_load_gives_identical_encodings(tmp_path, corpus, kind, size):
    tok = train_tokenizer(kind, corpus, size, SPECIALS)
    path = str(tmp_path / "tok.json")
    tok.save(path)
    assert os.listdir(tmp_path) == ["tok.json"]  # no temporary file left behind
    back = load(path)
    assert type(back) is type(tok)
    assert back.to_json() == tok.to_json()
    assert back.fingerprint() == tok.fingerprint()
    assert back.special_tokens == tok.special_tokens
    for s in NASTY + random_strings(50, seed=7):
        assert back.encode(s) == tok.encode(s)
    d = json.loads(open(path, encoding="utf-8").read())
    assert d["kind"] == kind and d["version"] == 1 and d["vocab_size"] == tok.vocab_size
    assert from_json(d).encode(corpus[:500]) == tok.encode(corpus[:500])


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load(str(bad))
    bad.write_text(json.dumps({"format": "alpha.tokenizer", "version": 99, "kind": "bpe"}))
    with pytest.raises(DataError, match="version"):
        load(str(bad))
    bad.write_text(json.dumps({"format": "alpha.tokenizer", "version": 1, "kind": "nope"}))
    with pytest.raises(ConfigError, match="unknown tokenizer kind"):
        load(str(bad))
    good = BPETokenizer([(97, 98)], [EOT]).to_json()
    good["merges"] = [[97, 300]]
    with pytest.raises(DataError, match="merge"):
        from_json(good)
    with pytest.raises(ConfigError):
        train_tokenizer("sentencepiece", "abc", 10)
    assert issubclass(DataError, AlphaError)


# ---- streaming cuts ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_safe_cut_keeps_encodings(corpus, kind):
    tok = train_tokenizer(kind, corpus, {"bpe": 400, "char": 0, "word": 300}[kind], SPECIALS)
    texts = [corpus[:3000], "".join(NASTY) * 2, "abc,def;ghi" * 50, "aaa  \n  bbb\n\nccc\nd" * 20,
             ("x" + EOT + "\ny") * 30, "the cat sat\n    on the  mat\n  " * 40,
             "a b  c   d 1 2 , . x" * 30, (" " + EOT + " " + USER + "q ") * 30]
    rng = random.Random(1)
    for text in texts:
        whole = tok.encode(text)
        for _ in range(60):
            k = rng.randrange(1, len(text) + 1)
            cut = tok.safe_cut(text[:k])
            if cut == 0:
                continue
            assert 0 < cut < k
            assert tok.encode(text[:cut]) + tok.encode(text[cut:]) == whole, (text[:cut][-20:],)


def test_safe_cut_every_prefix():
    text = "ab c\nd  e,f 12x\n\n g_h " + EOT + " i\n" + USER + "j k"
    for specials in ([], [EOT, USER]):
        for kind in ("bpe", "char", "word"):
            tok = train_tokenizer(kind, text * 3, {"bpe": 300, "char": 0, "word": 60}[kind],
                                  specials)
            whole = tok.encode(text)
            for k in range(1, len(text) + 1):
                cut = tok.safe_cut(text[:k])
                if cut:
                    assert cut < k
                    assert tok.encode(text[:cut]) + tok.encode(text[cut:]) == whole, (kind, k)


# ---- training from a file ------------------------------------------------------------------------


def test_train_from_file_bounded_sample(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("alpha beta\n" * 2000 + "gamma delta\n" * 2000, encoding="utf-8")
    lines = []
    tok = train_from_file("bpe", str(path), 300, max_bytes=10000, log=lines.append)
    assert "first" in lines[0] and "MB" in lines[0]
    assert tok.encode(" beta") == [tok.encode(" beta")[0]]  # learned from the sample
    assert len(tok.encode("gamma")) > 1  # never seen: the sample stopped before it
    char = train_from_file("char", str(path), 0)
    assert set(char.chars) == set("alphabetgmd \n")  # char reads the whole file
    with pytest.raises(DataError, match="not found"):
        train_from_file("bpe", str(tmp_path / "nope.txt"), 300)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        train_from_file("word", str(tmp_path / "empty.txt"), 300)


# ---- the CLI ---------------------------------------------------------------------------------


def test_cli_build_encode_decode(tmp_path, capsys):
    from alpha.cli.main import main

    data = tmp_path / "data.txt"
    data.write_text("hello world, hello there\n" * 50, encoding="utf-8")
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "build", "--kind", "bpe", "--vocab-size", "270", "--data",
                 str(data), "--out", str(out), "--domain", "chat"]) == 0
    assert "270 tokens" in capsys.readouterr().out
    tok = load(str(out))
    assert tok.vocab_size == 270 and USER in tok.special_tokens
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--text", "hello" + EOT]) == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert ids == tok.encode("hello" + EOT)
    assert main(["tokenizer", "decode", "--tokenizer", str(out),
                 "--ids", " ".join(map(str, ids))]) == 0
    assert capsys.readouterr().out == "hello" + EOT + "\n"
    # user mistakes: one line, exit code 2
    assert main(["tokenizer", "decode", "--tokenizer", str(out), "--ids", "1 x"]) == 2
    assert main(["tokenizer", "decode", "--tokenizer", str(out), "--ids", "300"]) == 2
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "no.json"),
                 "--text", "a"]) == 2
    assert main(["tokenizer", "build", "--kind", "bpe", "--vocab-size", "10", "--data",
                 str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "Traceback" not in err
