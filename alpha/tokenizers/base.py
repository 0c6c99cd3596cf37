"""What every tokenizer shares: special tokens, the JSON artifact, atomic save, safe chunk cuts.

A tokenizer maps text to ids and back. Special tokens (`<|user|>`, `<|end_of_text|>`, `<unk>`...)
are matched in the text first, longest first, and get ids of their own; ordinary text between
them is encoded by the subclass (`_encode_ordinary`), so nothing a subclass does (a BPE merge, a
word) ever crosses a special token.

The artifact is one JSON object that fully describes the tokenizer:

    {"format": "alpha.tokenizer", "version": 1, "kind": "bpe" | "char" | "word",
     "vocab_size": N, "special_tokens": {"<|user|>": 4093, ...}, ...kind-specific fields}

What this is not: a general Unicode normaliser. Text is tokenized exactly as given (no NFC, no
newline translation), so decode(encode(s)) == s.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable

from alpha.core.atomic import atomic_write
from alpha.core.errors import ConfigError, DataError

FORMAT = "alpha.tokenizer"
CUT_WINDOW = 1 << 20  # safe_cut looks for a newline cut in this many final characters
VERSION = 1
UNK = "<unk>"

# Character classes of the pre-splitter, shared by the BPE and word tokenizers and by `safe_cut`.
LETTER = r"[^\W\d_]"  # any Unicode letter (a word character that is not a digit nor `_`)
DIGIT = r"\d"
OTHER = r"(?:[^\s\w]|_)"  # punctuation, symbols, marks, `_`, controls that are not whitespace


_CLASS_RES = ((re.compile(r"\s"), 0), (re.compile(LETTER), 1), (re.compile(DIGIT), 2))


def char_class(c: str) -> int:
    """0 whitespace, 1 letter, 2 digit, 3 anything else: the pre-splitter's classes, decided by
    the same regular expressions it uses."""
    for pattern, cls in _CLASS_RES:
        if pattern.match(c):
            return cls
    return 3


class Tokenizer:
    """The common interface. Subclasses set `kind` and implement `_encode_ordinary`, `decode`,
    `vocab_size`, `_to_json_fields`, `_from_json` and `train`."""

    kind = ""

    def __init__(self, special_tokens: dict[str, int]):
        for tok in special_tokens:
            if not isinstance(tok, str) or not tok:
                raise ConfigError(f"special token {tok!r} must be a non-empty string")
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self.special_by_id: dict[int, str] = {i: s for s, i in self.special_tokens.items()}
        if self.special_tokens:
            alts = sorted(self.special_tokens, key=lambda s: (-len(s), s))
            self._special_re = re.compile("(" + "|".join(re.escape(s) for s in alts) + ")")
        else:
            self._special_re = None
        self._fingerprint = ""

    # ---- the interface ----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids. With `allow_special` (the default) special tokens written in the text
        become their ids; without, they are encoded as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        if not allow_special or self._special_re is None:
            return self._encode_ordinary(text)
        out: list[int] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self._encode_ordinary(part))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def _encode_ordinary(self, text: str) -> list[int]:
        raise NotImplementedError

    def special_id(self, token: str) -> int:
        """The id of a special token; ConfigError naming the known ones if it has none."""
        try:
            return self.special_tokens[token]
        except KeyError:
            known = ", ".join(self.special_tokens) or "none"
            raise ConfigError(
                f"{self.kind} tokenizer has no special token {token!r} (known: {known})"
            ) from None

    def split_specials(self, text: str) -> list[tuple[str, bool]]:
        """[(piece, is_special), ...] covering `text` in order (empty pieces dropped)."""
        if self._special_re is None:
            return [(text, False)] if text else []
        out = []
        for i, part in enumerate(self._special_re.split(text)):
            if part:
                out.append((part, bool(i % 2)))
        return out

    def _check_id(self, i: int) -> None:
        raise DataError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")

    # ---- chunked (streaming) encoding ------------------------------------------------------
    def safe_cut(self, text: str, min_pos: int = 1) -> int:
        """A position p >= min_pos, as late as it finds, such that encoding text[:p] and
        text[p:] separately gives the same ids as encoding `text` whole, whatever text follows;
        0 when there is none.

        Safe cuts (for every pre-splitter here: each piece is a run of one class, a whitespace
        piece never ends just before a non-space character unless that character starts the
        next piece, and a leading space only joins the run right after it):
        1. after a newline that sits between two non-whitespace characters (preferred: keeps
           lines whole; looked for in the last CUT_WINDOW characters);
        2. before a single space that sits between two non-whitespace characters;
        3. between two non-whitespace characters of different classes (letter, digit, other);
        never inside a special token, and never where a special token could begin before the
        cut and end in text not seen yet."""
        # Cuts stay below n: clear of the last (longest special - 1) characters, and with one
        # character seen after a cut before a space.
        n = len(text) - max(max((len(s) for s in self.special_tokens), default=0) - 1, 1)
        if n < 2:
            return 0
        first = max(min_pos - 1, 1, n - CUT_WINDOW)
        p = text.rfind("\n", first, n - 1)
        while p >= first:
            cut = p + 1
            if not text[p - 1].isspace() and not text[cut].isspace() and self._outside_special(
                    text, cut):
                return cut
            p = text.rfind("\n", first, p)
        for cut in range(n - 1, max(min_pos, 1, n - 65536) - 1, -1):
            a, b = text[cut - 1], text[cut]
            if a.isspace():
                continue
            if b == " ":
                ok = not text[cut + 1].isspace()
            else:
                ok = not b.isspace() and char_class(a) != char_class(b)
            if ok and self._outside_special(text, cut):
                return cut
        return 0

    def _outside_special(self, text: str, cut: int) -> bool:
        for s in self.special_tokens:
            k = len(s)
            if k < 2:
                continue
            window = text[max(0, cut - k + 1): cut + k - 1]
            start = window.find(s)
            base = max(0, cut - k + 1)
            while start >= 0:
                if base + start < cut < base + start + k:
                    return False
                start = window.find(s, start + 1)
        return True

    # ---- the JSON artifact -------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "special_tokens": dict(self.special_tokens),
            **self._to_json_fields(),
        }

    def _to_json_fields(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_json(cls, d: dict) -> "Tokenizer":
        raise NotImplementedError

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=True, sort_keys=True,
                          separators=(",", ":"))

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON: equal fingerprints mean equal encodings."""
        if not self._fingerprint:
            self._fingerprint = hashlib.sha256(self.to_json_str().encode("utf-8")).hexdigest()
        return self._fingerprint

    def save(self, path: str) -> None:
        """Write the JSON artifact atomically (temporary file, fsync, rename)."""
        # ASCII JSON: a vocabulary entry that is not valid UTF-8 on its own (a lone surrogate
        # from a Python string) still round-trips.
        text = json.dumps(self.to_json(), ensure_ascii=True, sort_keys=True)
        atomic_write(path, (text + "\n").encode("ascii"))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"specials={len(self.special_tokens)})")


# ---- helpers shared by the kinds -------------------------------------------------------------


def check_specials(special_tokens) -> list[str]:
    """Validate a list of special tokens: non-empty strings, no duplicates; keeps the order."""
    if isinstance(special_tokens, str):
        raise ConfigError("special_tokens must be a list of strings, not one string")
    out: list[str] = []
    for tok in special_tokens or ():
        if not isinstance(tok, str) or not tok:
            raise ConfigError(f"special token {tok!r} must be a non-empty string")
        if tok not in out:
            out.append(tok)
    return out


def iter_texts(data) -> Iterable[str]:
    """Training input: one str, or an iterable of str (e.g. lines or file chunks)."""
    if isinstance(data, str):
        yield data
        return
    for item in data:
        if not isinstance(item, str):
            raise ConfigError(f"training text must be str, got {type(item).__name__}")
        yield item


def json_field(d: dict, key: str, kind: type, where: str = "tokenizer JSON"):
    if key not in d:
        raise DataError(f"{where} lacks the field {key!r}")
    value = d[key]
    if not isinstance(value, kind):
        raise DataError(f"{where} field {key!r} has type {type(value).__name__}")
    return value


def specials_from_json(d: dict) -> dict[str, int]:
    specials = json_field(d, "special_tokens", dict)
    out = {}
    for tok, i in specials.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise DataError(f"tokenizer JSON: special token {tok!r} has a bad id {i!r}")
        out[tok] = i
    return out
