"""Character tokenizer: one id per character seen in training, plus `<unk>` and special tokens.

Ids: the characters in code-point order (0..n-1), then `<unk>`, then the other special tokens.
A character outside the vocabulary becomes `<unk>` (never dropped); `decode` writes `<unk>` back
as the text "<unk>". With a vocab_size cap, the most frequent characters are kept.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import (
    UNK, Tokenizer, check_specials, iter_texts, json_field, specials_from_json,
)


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: list[str], special_tokens=()):
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"char tokenizer vocabulary entry {c!r} is not one character")
        if len(set(chars)) != len(chars):
            raise DataError("char tokenizer vocabulary has duplicate characters")
        n = len(chars)
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
            expected = list(range(n, n + len(specials)))
            if sorted(specials.values()) != expected or UNK not in specials:
                raise DataError(f"char special token ids must be {n}..{n + len(specials) - 1} "
                                f"and include {UNK}")
        else:
            names = [UNK] + [s for s in check_specials(special_tokens) if s != UNK]
            specials = {tok: n + k for k, tok in enumerate(names)}
        super().__init__(specials)
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.unk_id = self.special_tokens[UNK]
        self._itos = self.chars + [None] * len(specials)
        for tok, i in specials.items():
            self._itos[i] = tok

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids = list(map(self.stoi.get, text))  # C speed; None marks an unknown character
        if None in ids:
            unk = self.unk_id
            ids = [unk if i is None else i for i in ids]
        return ids

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
        return {"vocab": list(self.chars)}

    @classmethod
    def _from_json(cls, d: dict) -> "CharTokenizer":
        return cls(json_field(d, "vocab", list), specials_from_json(d))

    @classmethod
    def train(cls, data, vocab_size: int = 0, special_tokens=()) -> "CharTokenizer":
        """Every character of `data` (str or iterable of str), special tokens excluded. With
        vocab_size > 0, keep only the most frequent characters so the total fits."""
        specials = [UNK] + [s for s in check_specials(special_tokens) if s != UNK]
        if not isinstance(vocab_size, int) or vocab_size < 0:
            raise ConfigError(f"char vocab_size={vocab_size} must be >= 0 (0 = no cap)")
        if vocab_size and vocab_size < len(specials) + 1:
            raise ConfigError(f"char vocab_size={vocab_size} leaves no room for characters "
                              f"beside {len(specials)} special tokens")
        splitter = Tokenizer({s: k for k, s in enumerate(specials)})
        counts: Counter = Counter()
        for text in iter_texts(data):
            for part, is_special in splitter.split_specials(text):
                if not is_special:
                    counts.update(part)
        chars = list(counts)
        if vocab_size and len(chars) > vocab_size - len(specials):
            chars.sort(key=lambda c: (-counts[c], c))
            chars = chars[: vocab_size - len(specials)]
        return cls(sorted(chars), specials)
