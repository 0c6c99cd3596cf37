"""GPT-2's tokenizer: OpenAI's byte-level BPE, read from `vocab.json` + `merges.txt` (Hugging Face)
or `encoder.json` + `vocab.bpe` (OpenAI), encoding exactly as GPT-2 does.

    tok = GPT2Tokenizer.from_files("gpt2/vocab.json", "gpt2/merges.txt")
    tok = load_folder("gpt2/")              # vocab.json + merges.txt, encoder.json + vocab.bpe,
                                            # or a byte-level BPE tokenizer.json
    tok.encode("Hello world<|endoftext|>")  # [15496, 995, 50256] with GPT-2's files

How GPT-2 encodes a string:
1. Special tokens (`<|endoftext|>`) are matched first and become their ids (Tokenizer.encode).
2. The rest is pre-tokenized by GPT-2's pattern

       's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

   Python's `re` has no `\\p{...}`, and its `\\s` is not Unicode's White_Space (it also matches
   U+001C..U+001F), so the classes are spelled out: letters (general category L*, exactly what
   `str.isalpha` accepts), numbers (category N*) and White_Space, all from `unicodedata`.
3. Each piece's UTF-8 bytes are mapped to printable characters by GPT-2's `bytes_to_unicode`
   table (byte-level: every byte has a token), and BPE merges the pair of lowest rank, all its
   occurrences left to right, until no ranked pair is left. The symbols' ids are the result.

Decoding maps tokens back to bytes and decodes UTF-8, replacing invalid sequences with U+FFFD.

What this is not: a trainer. GPT-2's tokenizer is loaded, never learned here (train Alpha's own
`bpe` kind, or a GPT-2-format BPE with Hugging Face `tokenizers`). Characters assigned in a newer
Unicode version than this Python's `unicodedata` count as neither letters nor numbers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from itertools import chain
from typing import Iterable

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import Tokenizer, json_field, specials_from_json

EOT = "<|endoftext|>"
CACHE_LIMIT = 262_144  # pre-tokenized pieces remembered by encode (forgotten when full)
# Unicode White_Space: what Oniguruma's (Hugging Face tokenizers') and `regex`'s \s match.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes map to themselves, the other 68
    bytes to U+0100 onwards, so every token is a printable string."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
# str.translate tables: Latin-1 text (one char per byte) <-> GPT-2's byte characters
_TO_BYTE_CHARS = {b: c for b, c in BYTE_TO_CHAR.items()}
_FROM_BYTE_CHARS = {ord(c): b for b, c in BYTE_TO_CHAR.items()}

_pattern_cache: list = []
# Chunks for the encode cache: a run of non-space characters with at most one leading space, or a
# run of whitespace cut as GPT-2 cuts it (all but its last character when a non-space follows).
# No GPT-2 piece crosses a chunk's edge and none depends on what lies outside the chunk, so
# encoding chunk by chunk gives GPT-2's ids.
_CHUNK_RE = re.compile(f" ?[^{WHITESPACE}]+|[{WHITESPACE}]+(?![^{WHITESPACE}])|[{WHITESPACE}]+")


def _char_class(chars: Iterable[str]) -> str:
    """A regex character-class body of the given characters, as \\U escaped ranges."""
    cps = sorted(set(map(ord, chars)))
    out, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append(f"\\U{cps[i]:08x}" if i == j else f"\\U{cps[i]:08x}-\\U{cps[j]:08x}")
        i = j + 1
    return "".join(out)


def pattern() -> re.Pattern:
    """GPT-2's pre-tokenizing pattern for Python's `re` (built once per process, ~0.2 s)."""
    if not _pattern_cache:
        everything = "".join(map(chr, range(sys.maxunicode + 1)))
        letters = _char_class(filter(str.isalpha, everything))  # exactly categories Lu..Lo
        numbers = _char_class(c for c in filter(str.isnumeric, everything)
                              if unicodedata.category(c)[0] == "N")
        L, N, S = f"[{letters}]", f"[{numbers}]", f"[{WHITESPACE}]"
        src = (f"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?[^{WHITESPACE}{letters}{numbers}]+"
               f"|{S}+(?![^{WHITESPACE}])|{S}+")
        _pattern_cache.append(re.compile(src))
    return _pattern_cache[0]


def pretokenize(text: str) -> list[str]:
    """GPT-2's pieces of `text` (their concatenation is `text`)."""
    return pattern().findall(text)


class GPT2Tokenizer(Tokenizer):
    kind = "gpt2"

    def __init__(self, vocab: list[str], merges: list[tuple[str, str]], special_tokens=None,
                 vocab_size: int = 0):
        """`vocab`: the tokens (GPT-2's byte characters) in id order; `merges`: the pairs in rank
        order; `special_tokens`: {token: id} (default: `<|endoftext|>` when the vocabulary holds
        it); `vocab_size`: the model's vocabulary when it is padded past the tokenizer's."""
        self.vocab = list(vocab)
        self.ids = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            seen = set()
            dup = next(t for t in self.vocab if t in seen or seen.add(t))
            raise DataError(f"GPT-2 vocabulary lists the token {dup!r} twice")
        if special_tokens is None:
            special_tokens = {EOT: self.ids[EOT]} if EOT in self.ids else {}
        n = max([len(self.vocab), *[i + 1 for i in special_tokens.values()]])
        if vocab_size and vocab_size < n:
            raise DataError(f"GPT-2 tokenizer: vocab_size {vocab_size} is smaller than its "
                            f"{n} tokens")
        self._vocab_size = max(vocab_size, n)
        super().__init__(special_tokens)
        self.merges = [(a, b) for a, b in merges]
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, (a, b) in enumerate(self.merges):
            for part in (a, b, a + b):
                if part not in self.ids:
                    raise DataError(f"GPT-2 merge {rank + 1} ({a} {b}) makes or uses {part!r}, "
                                    "which is not in the vocabulary")
            self.ranks.setdefault((a, b), rank)
        missing = [c for c in BYTE_TO_CHAR.values() if c not in self.ids]
        if missing:
            raise DataError(f"GPT-2 vocabulary lacks {len(missing)} of the 256 byte tokens "
                            f"(first: {missing[0]!r}); it is not a byte-level BPE")
        self._cache: dict[str, tuple[int, ...]] = {}  # chunk -> ids
        self._pieces: dict[str, tuple[int, ...]] = {}  # GPT-2 piece -> ids
        self._split = pattern().findall

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    # ---- encode / decode ---------------------------------------------------------------------
    def _encode_ordinary(self, text: str) -> list[int]:
        # Chunks, not GPT-2's pieces, are the unit of the cache: the chunk pattern is several
        # times faster than GPT-2's, and a chunk ("word," with its leading space) is one lookup.
        chunks = _CHUNK_RE.findall(text)
        cache = self._cache
        missing = set(chunks).difference(cache)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                # A fresh dict, not clear(): another thread may be reading the old one.
                cache = self._cache = {}
                missing = set(chunks)
            split, piece_ids = self._split, self._piece_ids
            for chunk in missing:
                cache[chunk] = tuple(chain.from_iterable(map(piece_ids, split(chunk))))
        return list(chain.from_iterable(map(cache.__getitem__, chunks)))

    def _piece_ids(self, piece: str) -> tuple[int, ...]:
        ids = self._pieces.get(piece)
        if ids is None:
            if len(self._pieces) >= CACHE_LIMIT:
                self._pieces = {}
            ids = self._pieces[piece] = self._encode_piece(piece)
        return ids

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        word = list(_byte_chars(piece))
        ranks = self.ranks
        while len(word) > 1:
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            a, b = best
            merged, i, n = [], 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == a and word[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(map(self.ids.__getitem__, word))

    def decode(self, ids: Iterable[int]) -> str:
        vocab, n = self.vocab, len(self.vocab)
        parts: list[str] = []
        for i in ids:
            if 0 <= i < n:
                parts.append(vocab[i])
            elif i in self.special_by_id:
                parts.append(_byte_chars(self.special_by_id[i]))
            elif not 0 <= i < self._vocab_size:  # padding ids past the files' tokens: nothing
                self._check_id(i)
        raw = "".join(parts).translate(_FROM_BYTE_CHARS).encode("latin-1")
        return raw.decode("utf-8", "replace")

    def token_bytes(self, i: int) -> bytes:
        """The bytes of token `i` (for inspection)."""
        if i in self.special_by_id:
            return self.special_by_id[i].encode("utf-8")
        if 0 <= i < len(self.vocab):
            return self.vocab[i].translate(_FROM_BYTE_CHARS).encode("latin-1")
        self._check_id(i)

    # ---- streaming cuts ----------------------------------------------------------------------
    def safe_cut(self, text: str, min_pos: int = 1) -> int:
        """As Tokenizer.safe_cut, but only at a newline or before a single space between two
        non-space characters: GPT-2's contractions ('s, 't...) join a symbol to the letters after
        it, so the base class's cuts between character classes are not safe here."""
        n = len(text) - max(max((len(s) for s in self.special_tokens), default=0) - 1, 1)
        if n < 2:
            return 0
        first = max(min_pos - 1, 1)
        p = text.rfind("\n", first, n - 1)
        if p >= first and not text[p - 1].isspace() and not text[p + 1].isspace() \
                and self._outside_special(text, p + 1):
            return p + 1
        for cut in range(n - 1, max(min_pos, 1, n - 65536) - 1, -1):
            if text[cut] == " " and not text[cut - 1].isspace() and not text[cut + 1].isspace() \
                    and self._outside_special(text, cut):
                return cut
        return 0

    # ---- files -------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_path: str, merges_path: str, vocab_size: int = 0) -> "GPT2Tokenizer":
        """Read Hugging Face's `vocab.json` + `merges.txt` or OpenAI's `encoder.json` +
        `vocab.bpe` (the same formats under other names)."""
        vocab = _read_vocab(vocab_path)
        merges = _read_merges(merges_path)
        return cls(vocab, merges, vocab_size=vocab_size)

    def save_files(self, folder: str) -> list[str]:
        """Write `vocab.json` and `merges.txt` (Hugging Face's names) into `folder`, atomically;
        returns their paths."""
        from alpha.core.atomic import atomic_write

        os.makedirs(folder, exist_ok=True)
        vocab_path = os.path.join(folder, "vocab.json")
        merges_path = os.path.join(folder, "merges.txt")
        ids = {tok: i for i, tok in enumerate(self.vocab)}
        atomic_write(vocab_path, json.dumps(ids, ensure_ascii=False))
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in self.merges]
        atomic_write(merges_path, "\n".join(lines) + "\n")
        return [vocab_path, merges_path]

    # ---- JSON --------------------------------------------------------------------------------
    def _to_json_fields(self) -> dict:
        return {"vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]}

    @classmethod
    def _from_json(cls, d: dict) -> "GPT2Tokenizer":
        vocab = json_field(d, "vocab", list)
        merges = json_field(d, "merges", list)
        if not all(isinstance(t, str) for t in vocab):
            raise DataError("GPT-2 tokenizer JSON: vocab must be a list of strings")
        pairs = [_merge_line(m, k + 1, "tokenizer JSON") for k, m in enumerate(merges)]
        size = d.get("vocab_size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DataError(f"GPT-2 tokenizer JSON: vocab_size {size!r} is not a count")
        return cls(vocab, pairs, specials_from_json(d), size)

    @classmethod
    def train(cls, data, vocab_size: int, special_tokens=()) -> "GPT2Tokenizer":
        raise ConfigError("GPT-2's tokenizer is loaded from vocab.json + merges.txt, not trained; "
                          "train a `bpe` tokenizer instead")


def _byte_chars(text: str) -> str:
    """`text` as GPT-2's byte characters (what a token of that text holds)."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1").translate(_TO_BYTE_CHARS)


def _merge_line(line, number: int, where: str) -> tuple[str, str]:
    if isinstance(line, list) and len(line) == 2 and all(isinstance(x, str) for x in line):
        return line[0], line[1]  # tokenizer.json's newer [left, right] form
    if not isinstance(line, str):
        raise DataError(f"{where}: merge {number} is not a string")
    parts = line.split(" ")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise DataError(f"{where}: merge {number} {line!r} is not two tokens separated by a space")
    return parts[0], parts[1]


def _read_vocab(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(f"GPT-2 vocabulary not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            ids = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"GPT-2 vocabulary {path} is not valid JSON: {e}") from None
    return vocab_list(ids, path)


def vocab_list(ids, where: str) -> list[str]:
    """{token: id} with ids 0..n-1 -> the tokens in id order."""
    if not isinstance(ids, dict) or not ids:
        raise DataError(f"{where}: the vocabulary must be a non-empty JSON object of token: id")
    vocab: list = [None] * len(ids)
    for tok, i in ids.items():
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(ids) \
                or vocab[i] is not None:
            raise DataError(f"{where}: token {tok!r} has id {i!r}; ids must be 0..{len(ids) - 1}, "
                            "each used once")
        vocab[i] = tok
    return vocab


def _read_merges(path: str) -> list[tuple[str, str]]:
    if not os.path.isfile(path):
        raise DataError(f"GPT-2 merges file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError:
        raise DataError(f"GPT-2 merges file {path} is not UTF-8 text") from None
    merges = []
    for number, line in enumerate(lines, 1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        merges.append(_merge_line(line, number, path))
    return merges


# ---- folders ----------------------------------------------------------------------------------

FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


def has_files(folder: str) -> bool:
    """Does `folder` hold a GPT-2 tokenizer we can read?"""
    return any(os.path.isfile(os.path.join(folder, v)) and os.path.isfile(os.path.join(folder, m))
               for v, m in FILE_PAIRS) or os.path.isfile(os.path.join(folder, "tokenizer.json"))


def load_folder(folder: str, vocab_size: int = 0) -> GPT2Tokenizer:
    """The GPT-2 tokenizer in `folder`: vocab.json + merges.txt, encoder.json + vocab.bpe, or a
    byte-level BPE `tokenizer.json` (Hugging Face `tokenizers`)."""
    for v, m in FILE_PAIRS:
        vp, mp = os.path.join(folder, v), os.path.join(folder, m)
        if os.path.isfile(vp) and os.path.isfile(mp):
            return GPT2Tokenizer.from_files(vp, mp, vocab_size)
    tj = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(tj):
        return from_tokenizer_json(tj, vocab_size)
    raise DataError(f"no GPT-2 tokenizer in folder {folder} (looked for vocab.json + "
                    "merges.txt, encoder.json + vocab.bpe, tokenizer.json)")


def from_tokenizer_json(path: str, vocab_size: int = 0) -> GPT2Tokenizer:
    """A Hugging Face `tokenizer.json`, accepted only when it encodes as GPT-2 does: a BPE model
    with a ByteLevel pre-tokenizer (GPT-2's pattern, no prefix space) and nothing else."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    model = d.get("model") or {}
    pre = d.get("pre_tokenizer") or {}
    if model.get("type") != "BPE":
        raise DataError(f"{path}: model type {model.get('type')!r} is not GPT-2's BPE")
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or \
            not pre.get("use_regex", True):
        raise DataError(f"{path}: the pre-tokenizer is not GPT-2's (ByteLevel with its pattern "
                        "and no prefix space), so Alpha cannot encode as it does")
    if d.get("normalizer"):
        raise DataError(f"{path}: a normalizer ({d['normalizer'].get('type')}) is not GPT-2's")
    vocab = vocab_list(model.get("vocab"), path)
    merges = [_merge_line(m, k + 1, path) for k, m in enumerate(model.get("merges") or [])]
    specials = {}
    for added in d.get("added_tokens") or []:
        if added.get("special") and isinstance(added.get("id"), int):
            specials[added["content"]] = added["id"]
    if EOT in vocab and EOT not in specials:
        specials[EOT] = vocab.index(EOT)
    return GPT2Tokenizer(vocab, merges, specials, vocab_size)
