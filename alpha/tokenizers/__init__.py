"""Tokenizers: byte-level BPE, char and word, behind one interface, saved as JSON artifacts.

    tok = train_tokenizer("bpe", text, vocab_size=4096, special_tokens=["<|end_of_text|>"])
    ids = tok.encode("hello<|end_of_text|>")      # list[int]
    tok.decode(ids) == "hello<|end_of_text|>"
    tok.save("tok.json"); tok = load("tok.json")  # atomic write; identical encodings
    tok = train_from_file("bpe", "corpus.txt", 4096, log=print)  # bounded sample for big files
"""

from __future__ import annotations

import codecs
import os
from typing import Callable

from alpha.core.errors import ConfigError, DataError
from alpha.core.files import check_text_file, parse_json, read_json
from alpha.tokenizers.base import FORMAT, UNK, VERSION, Tokenizer  # noqa: F401
from alpha.tokenizers.bpe import BPETokenizer
from alpha.tokenizers.char import CharTokenizer
from alpha.tokenizers.gpt2 import GPT2Tokenizer
from alpha.tokenizers.word import WordTokenizer

KINDS: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer,
    "bpe": BPETokenizer,
    "word": WordTokenizer,
    "gpt2": GPT2Tokenizer,  # loaded from GPT-2's files (alpha.tokenizers.gpt2), never trained
}
# Bytes of a file that BPE and word training read at most (the first N MB, cut at a newline).
SAMPLE_BYTES = {"bpe": 8_000_000, "word": 32_000_000, "char": 0, "gpt2": 0}  # 0 = the whole file
READ_CHUNK = 1 << 22


def tokenizer_class(kind: str) -> type[Tokenizer]:
    try:
        return KINDS[kind]
    except (KeyError, TypeError):  # TypeError: a list or dict where a name belongs
        raise ConfigError(f"unknown tokenizer kind {kind!r} (known: {', '.join(KINDS)})") from None


def train_tokenizer(kind: str, data, vocab_size: int, special_tokens=()) -> Tokenizer:
    """Train a tokenizer of `kind` on `data` (a str or an iterable of str)."""
    return tokenizer_class(kind).train(data, vocab_size, special_tokens)


def from_json(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON artifact (a dict)."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DataError(f"not an Alpha tokenizer (expected \"format\": \"{FORMAT}\")")
    if d.get("version") != VERSION:
        raise DataError(f"tokenizer format version {d.get('version')!r} is not supported "
                        f"(this Alpha reads version {VERSION})")
    tok = tokenizer_class(d.get("kind"))._from_json(d)
    if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
        raise DataError(f"tokenizer JSON says vocab_size={d['vocab_size']} but describes "
                        f"{tok.vocab_size} tokens")
    return tok


def from_json_str(text: str) -> Tokenizer:
    return from_json(parse_json(text, "tokenizer JSON"))


def load(path: str) -> Tokenizer:
    """Read a tokenizer artifact written by `Tokenizer.save`, or GPT-2's tokenizer files from a
    folder (vocab.json + merges.txt, encoder.json + vocab.bpe, or tokenizer.json)."""
    if os.path.isdir(path):
        from alpha.tokenizers.gpt2 import load_folder

        return load_folder(path)
    d = read_json(path, "tokenizer file")
    try:
        return from_json(d)
    except DataError as e:
        raise DataError(f"tokenizer file {path}: {e}") from None


def read_text_sample(path: str, max_bytes: int = 0) -> tuple[str, int, int]:
    """(text, bytes read, file size): the whole file, or its first `max_bytes` bytes cut back to
    the last newline (or to a whole character when there is none). Newlines are kept as written."""
    size = check_text_file(path)
    limit = size if not max_bytes or max_bytes >= size else max_bytes
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    parts = []
    done = 0
    try:
        with open(path, "rb") as f:
            while done < limit:
                block = f.read(min(READ_CHUNK, limit - done))
                if not block:
                    break
                done += len(block)
                parts.append(decoder.decode(block, final=done >= size))
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path} is not UTF-8 text (byte {done - READ_CHUNK + e.start}"
                        f" or near it)") from None
    text = "".join(parts)
    if done < size:
        nl = text.rfind("\n")
        if nl > 0:
            text = text[: nl + 1]
    return text, done, size


def train_from_file(kind: str, path: str, vocab_size: int, special_tokens=(),
                    max_bytes: int | None = None,
                    log: Callable[[str], None] | None = None) -> Tokenizer:
    """Train on a text file. BPE and word training read a bounded sample (the first
    `max_bytes`, default SAMPLE_BYTES[kind]); char reads the whole file, so that every character
    in it gets an id. `log` receives one line saying what was read."""
    cls = tokenizer_class(kind)
    if max_bytes is None:
        max_bytes = SAMPLE_BYTES[kind]
    if kind == "char":
        # Char training streams the whole file: no character the model will see becomes <unk>.
        size = check_text_file(path)
        tok = cls.train(_iter_file(path), vocab_size, special_tokens)
        if log:
            log(f"char tokenizer: {tok.vocab_size} tokens from all {size / 1e6:.1f} MB of {path}")
        return tok
    text, read, size = read_text_sample(path, max_bytes)
    if log:
        if read < size:
            log(f"{kind} tokenizer: training on the first {len(text.encode('utf-8')) / 1e6:.1f} MB "
                f"of {path} ({size / 1e6:.1f} MB); raise the sample with --max-train-mb")
        else:
            log(f"{kind} tokenizer: training on all {size / 1e6:.1f} MB of {path}")
    return cls.train(text, vocab_size, special_tokens)


def _iter_file(path: str):
    """The file's text in chunks of about READ_CHUNK bytes (no newline translation). A chunk may
    end mid-word: use only for character statistics."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_CHUNK)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError:
                raise DataError(f"data file {path} is not UTF-8 text") from None
            if text:
                yield text
            if not block:
                return
