"""Character tokenizer: one id per character seen in training, plus `<unk>` and special tokens.

Ids: the characters in code-point order (0..n-1), then `<unk>`, then the other special tokens.
A character outside the vocabulary becomes `<unk>` (never dropped); `decode` writes `<unk>` back
as the text "<unk>". With a vocab_size cap, the most frequent characters are kept.
"""

from __future__ import annotations

from collections import Counter

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import Tokenizer, iter_texts, json_field, specials_from_json
from alpha.tokenizers.vocab import VocabTokenizer, specials_with_unk


class CharTokenizer(VocabTokenizer):
    kind = "char"

    def __init__(self, chars: list[str], special_tokens=()):
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"char tokenizer vocabulary entry {c!r} is not one character")
        super().__init__(chars, special_tokens)
        self.chars = list(chars)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids = list(map(self.stoi.get, text))  # C speed; None marks an unknown character
        if None in ids:
            unk = self.unk_id
            ids = [unk if i is None else i for i in ids]
        return ids

    def _to_json_fields(self) -> dict:
        return {"vocab": list(self.chars)}

    @classmethod
    def _from_json(cls, d: dict) -> "CharTokenizer":
        return cls(json_field(d, "vocab", list), specials_from_json(d))

    @classmethod
    def train(cls, data, vocab_size: int = 0, special_tokens=()) -> "CharTokenizer":
        """Every character of `data` (str or iterable of str), special tokens excluded. With
        vocab_size > 0, keep only the most frequent characters so the total fits."""
        specials = specials_with_unk(special_tokens)
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
