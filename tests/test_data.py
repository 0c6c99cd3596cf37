"""Token caches, the train/val split and the batch sampler."""

from __future__ import annotations

import os
from array import array

import pytest

import alpha.train.data as data
from alpha.core.errors import DataError
from alpha.core.rng import Rng
from alpha.tokenizers import CharTokenizer, train_tokenizer
from alpha.train.data import (
    HEADER_SIZE, BatchSampler, CacheHeader, TokenFile, cache_path_for, load_data,
    open_token_cache,
)

EOT = "<|end_of_text|>"
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "def main(argv=None):\n    if argv:\n        return 1\n\n    return 0  # done\n"
    "漢字かな 🎉 naïve café\n" + EOT + "\nAll:\nSpeak, speak.\n"
) * 30


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    return str(path)


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer("bpe", TEXT, 350, [EOT])


def tokens_of(tf: TokenFile) -> list[int]:
    return list(tf.tokens)


# ---- the token cache ---------------------------------------------------------------------------


def test_cache_matches_whole_text_encoding(text_file, bpe):
    tf = open_token_cache(text_file, bpe, progress=False)
    assert tf.built and tf.dtype == "u16" and tf.itemsize == 2
    assert tokens_of(tf) == bpe.encode(TEXT)
    assert os.path.getsize(tf.path) == HEADER_SIZE + 2 * tf.count
    assert tf.path == cache_path_for(text_file, bpe)
    tf.close()


@pytest.mark.parametrize("kind,size", [("bpe", 350), ("char", 0), ("word", 120)])
def test_streaming_equals_whole_text(tmp_path, monkeypatch, kind, size):
    tok = train_tokenizer(kind, TEXT, size, [EOT])
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    monkeypatch.setattr(data, "READ_BYTES", 37)  # tiny chunks: cuts inside UTF-8 characters too
    tf = open_token_cache(str(path), tok, cache_dir=str(tmp_path / "cache"), progress=False)
    assert tokens_of(tf) == tok.encode(TEXT)
    tf.close()


def test_streaming_without_newlines(tmp_path, monkeypatch, bpe):
    text = "word,word;word " * 200 + "x" * 300
    path = tmp_path / "flat.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(data, "READ_BYTES", 50)
    tf = open_token_cache(str(path), bpe, progress=False)
    assert tokens_of(tf) == bpe.encode(text)
    tf.close()


def test_cache_reused_then_rebuilt_on_change(text_file, bpe):
    tf = open_token_cache(text_file, bpe, progress=False)
    first = os.stat(tf.path)
    tf.close()
    # unchanged text and tokenizer: the same file, not rewritten
    tf = open_token_cache(text_file, bpe, progress=False)
    again = os.stat(tf.path)
    assert not tf.built
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    tf.close()
    # touched (new mtime) but same content: reused after a content-hash check
    st = os.stat(text_file)
    os.utime(text_file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    tf = open_token_cache(text_file, bpe, progress=False)
    assert not tf.built and os.stat(tf.path).st_ino == first.st_ino
    tf.close()
    # same size, different content, new mtime: rebuilt
    changed = TEXT.replace("speak", "SPEAK")
    with open(text_file, "wb") as f:
        f.write(changed.encode("utf-8"))
    os.utime(text_file, ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    tf = open_token_cache(text_file, bpe, progress=False)
    assert tf.built and tokens_of(tf) == bpe.encode(changed)
    tf.close()
    # another tokenizer: another cache file, built once
    char = train_tokenizer("char", TEXT, 0, [EOT])
    tc = open_token_cache(text_file, char, progress=False)
    assert tc.built and tc.path != tf.path and tokens_of(tc) == char.encode(changed)
    tc.close()
    assert not open_token_cache(text_file, char, progress=False).built


def test_corrupt_cache_is_rebuilt(text_file, bpe):
    tf = open_token_cache(text_file, bpe, progress=False)
    path = tf.path
    tf.close()
    with open(path, "r+b") as f:
        f.truncate(HEADER_SIZE + 3)
    assert CacheHeader.read(path) is None
    tf = open_token_cache(text_file, bpe, progress=False)
    assert tf.built and tokens_of(tf) == bpe.encode(TEXT)
    tf.close()


def test_u32_cache_for_big_vocabularies(tmp_path):
    chars = [chr(c) for c in range(0x100, 0x100 + 70000) if not 0xD800 <= c <= 0xDFFF]
    tok = CharTokenizer(chars)
    assert tok.vocab_size > 65536
    text = "".join(chars[-50:]) + "ab" + chars[0]
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    tf = open_token_cache(str(path), tok, progress=False)
    assert tf.dtype == "u32" and tokens_of(tf) == tok.encode(text)
    assert max(tokens_of(tf)) > 65535
    tf.close()


def test_progress_callback(text_file, bpe, monkeypatch):
    monkeypatch.setattr(data, "READ_BYTES", 1000)
    seen = []
    open_token_cache(text_file, bpe, progress=lambda done, total, s: seen.append((done, total)))
    size = os.path.getsize(text_file)
    assert seen and seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# ---- errors ----------------------------------------------------------------------------------


def test_data_errors_name_the_file(tmp_path, bpe):
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="not found.*missing.txt"):
        load_data(missing, bpe, 8)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt is empty"):
        load_data(str(empty), bpe, 8)
    short = tmp_path / "short.txt"
    short.write_text("hello there")
    with pytest.raises(DataError, match=r"short.txt has \d+ tokens.*block_size\+1=65"):
        load_data(str(short), bpe, 64)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ok \xff\xfe bad")
    with pytest.raises(DataError, match="binary.txt is not UTF-8"):
        load_data(str(binary), bpe, 2)
    long = _write(tmp_path, "long.txt", TEXT)
    with pytest.raises(DataError, match="validation file .*short.txt has"):
        load_data(str(long), bpe, 64, val_path=str(short))


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- split -----------------------------------------------------------------------------------


def test_split_last_ten_percent(text_file, bpe):
    splits = load_data(text_file, bpe, 16, progress=False)
    all_ids = bpe.encode(TEXT)
    n_val = max(len(all_ids) // 10, 17)
    assert list(splits.val) == all_ids[-n_val:]
    assert list(splits.train) == all_ids[:-n_val]
    assert splits.val_source == "tail" and "train tokens" in splits.describe()
    splits.close()


def test_split_small_data_keeps_block_plus_one(tmp_path, bpe):
    path = _write(tmp_path, "small.txt", TEXT[:400])
    n = len(bpe.encode(TEXT[:400]))
    block = n // 2 - 1
    splits = load_data(str(path), bpe, block, progress=False)
    assert len(splits.val) == block + 1 and len(splits.train) == n - block - 1
    splits.close()


def test_split_with_val_file(tmp_path, text_file, bpe):
    val = _write(tmp_path, "val.txt", "All:\nSpeak, speak.\n" * 20)
    splits = load_data(text_file, bpe, 8, val_path=str(val), progress=False)
    assert list(splits.train) == bpe.encode(TEXT)
    assert list(splits.val) == bpe.encode("All:\nSpeak, speak.\n" * 20)
    assert splits.val_source == "file"
    splits.close()


# ---- the sampler ------------------------------------------------------------------------------


def _draw(sampler, n):
    return [sampler.next_batch() for _ in range(n)]


def test_batches_are_windows_shifted_by_one():
    tokens = array("H", range(1000))
    s = BatchSampler(tokens, 4, 16, Rng(1))
    x, y = s.next_batch()
    assert x.typecode == "i" and len(x) == len(y) == 4 * 16
    for row in range(4):
        xs = x[row * 16:(row + 1) * 16]
        ys = y[row * 16:(row + 1) * 16]
        assert list(ys[:-1]) == list(xs[1:])
        assert list(xs) == list(range(xs[0], xs[0] + 16)) and ys[-1] == xs[-1] + 1
        assert 0 <= xs[0] and ys[-1] <= 999


def test_random_sampler_uses_the_data_stream_and_is_deterministic():
    tokens = list(range(5000))
    a = _draw(BatchSampler(tokens, 3, 8, Rng(7)), 5)
    b = _draw(BatchSampler(tokens, 3, 8, 7), 5)
    c = _draw(BatchSampler(tokens, 3, 8, Rng(8)), 5)
    assert a == b and a != c
    rng = Rng(7)
    starts = rng.stream("data").randint(3, 5000 - 8)
    assert [a[0][0][i * 8] for i in range(3)] == starts


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_resume_gives_exactly_the_same_batches(mode):
    tokens = memoryview(array("H", [(i * 7919) % 65521 for i in range(3000)]))
    rng = Rng(1337)
    s = BatchSampler(tokens, 4, 32, rng, mode=mode)
    _draw(s, 7)
    state = s.state()
    rng_state = rng.state()
    expected = _draw(s, 40)  # sequential: wraps around (3000 tokens = 23 batches)
    # a fresh process: new Rng, new sampler, restore
    s2 = BatchSampler(tokens, 4, 32, Rng(1337), mode=mode)
    s2.restore(state)
    assert _draw(s2, 40) == expected
    assert s2.state() == s.state()
    # restoring the Rng alone (what the checkpoint holds anyway) also resumes random sampling
    if mode == "random":
        s3 = BatchSampler(tokens, 4, 32, Rng.from_state(rng_state))
        assert _draw(s3, 40) == expected


def test_sequential_packs_and_wraps():
    tokens = list(range(100))
    s = BatchSampler(tokens, 2, 10, 0, mode="sequential")
    assert s.windows_per_epoch == 9
    xs = [s.next_batch()[0] for _ in range(5)]
    starts = [x[i * 10] for x in xs for i in range(2)]
    assert starts == [0, 10, 20, 30, 40, 50, 60, 70, 80, 0]
    assert s.epoch == 1


def test_sampler_errors():
    with pytest.raises(DataError, match="too few"):
        BatchSampler(list(range(10)), 2, 10)
    with pytest.raises(DataError, match="mode"):
        BatchSampler(list(range(100)), 2, 10, mode="shuffle")
    s = BatchSampler(list(range(100)), 2, 10)
    with pytest.raises(DataError, match="batch_size"):
        BatchSampler(list(range(100)), 3, 10).restore(s.state())
    with pytest.raises(DataError, match="n_tokens"):
        BatchSampler(list(range(101)), 2, 10).restore(s.state())
