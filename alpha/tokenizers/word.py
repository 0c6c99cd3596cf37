"""Word tokenizer: whole words, digit runs, single punctuation characters and whitespace runs.

Ids: the vocabulary, then `<unk>`, then the other special tokens. The vocabulary holds the most
frequent characters (up to a quarter of it), then words and the other characters by frequency.
A word outside the vocabulary falls back to its characters; only a character outside the
vocabulary becomes `<unk>`. `decode` writes `<unk>` as "<unk>".
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import (
    DIGIT, LETTER, UNK, Tokenizer, check_specials, iter_texts, json_field, specials_from_json,
)

PATTERN = rf"{LETTER}+|{DIGIT}+|\s+|."
SPLIT_RE = re.compile(PATTERN, re.DOTALL)


class WordTokenizer(Tokenizer):
    kind = "word"

    def __init__(self, vocab: list[str], special_tokens=()):
        for w in vocab:
            if not isinstance(w, str) or not w:
                raise DataError(f"word tokenizer vocabulary entry {w!r} is not a non-empty string")
        if len(set(vocab)) != len(vocab):
            raise DataError("word tokenizer vocabulary has duplicate entries")
        n = len(vocab)
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
            expected = list(range(n, n + len(specials)))
            if sorted(specials.values()) != expected or UNK not in specials:
                raise DataError(f"word special token ids must be {n}..{n + len(specials) - 1} "
                                f"and include {UNK}")
        else:
            names = [UNK] + [s for s in check_specials(special_tokens) if s != UNK]
            specials = {tok: n + k for k, tok in enumerate(names)}
        super().__init__(specials)
        self.vocab = list(vocab)
        self.stoi = {w: i for i, w in enumerate(self.vocab)}
        self.unk_id = self.special_tokens[UNK]
        self._itos = self.vocab + [None] * len(specials)
        for tok, i in specials.items():
            self._itos[i] = tok

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def _encode_ordinary(self, text: str) -> list[int]:
        get = self.stoi.get
        unk = self.unk_id
        out: list[int] = []
        for piece in SPLIT_RE.findall(text):
            i = get(piece)
            if i is not None:
                out.append(i)
            else:
                out.extend([get(c, unk) for c in piece])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        itos = self._itos
        n = len(itos)
        out = []
        for i in ids:
            if not 0 <= i < n:
                self._check_id(i)
            out.append(itos[i])
        return "".join(out)

    def _to_json_fields(self) -> dict:
        return {"pattern": PATTERN, "vocab": list(self.vocab)}

    @classmethod
    def _from_json(cls, d: dict) -> "WordTokenizer":
        if json_field(d, "pattern", str) != PATTERN:
            raise DataError("word tokenizer JSON uses a different pattern than this version of "
                            "Alpha; rebuild it with `alpha tokenizer build`")
        return cls(json_field(d, "vocab", list), specials_from_json(d))

    @classmethod
    def train(cls, data, vocab_size: int, special_tokens=()) -> "WordTokenizer":
        """Keep the characters, then the most frequent words, so the total is `vocab_size`."""
        specials = [UNK] + [s for s in check_specials(special_tokens) if s != UNK]
        if not isinstance(vocab_size, int) or vocab_size < len(specials) + 1:
            raise ConfigError(f"word vocab_size={vocab_size} must leave room beside "
                              f"{len(specials)} special tokens")
        splitter = Tokenizer({s: k for k, s in enumerate(specials)})
        words: Counter = Counter()
        for text in iter_texts(data):
            for part, is_special in splitter.split_specials(text):
                if not is_special:
                    words.update(SPLIT_RE.findall(part))
        chars: Counter = Counter()
        for w, f in words.items():
            for c in w:
                chars[c] += f
        budget = vocab_size - len(specials)
        # The most frequent characters first (at most a quarter of the budget), then words and
        # the remaining characters together, most frequent first.
        ranked_chars = sorted(chars, key=lambda c: (-chars[c], c))
        vocab = ranked_chars[: max(1, budget // 4)]
        rest = [(-f, w) for w, f in words.items() if len(w) > 1]
        rest += [(-chars[c], c) for c in ranked_chars[len(vocab):]]
        rest.sort()
        vocab += [w for _, w in rest[: budget - len(vocab)]]
        return cls(vocab, specials)
