"""Word tokenizer: whole words, digit runs, single punctuation characters and whitespace runs.

Ids: the vocabulary, then `<unk>`, then the other special tokens. The vocabulary holds the most
frequent characters (up to a quarter of it), then words and the other characters by frequency.
A word outside the vocabulary falls back to its characters; only a character outside the
vocabulary becomes `<unk>`. `decode` writes `<unk>` as "<unk>".
"""

from __future__ import annotations

import re
from collections import Counter

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import (
    DIGIT, LETTER, Tokenizer, iter_texts, json_field, specials_from_json,
)
from alpha.tokenizers.vocab import VocabTokenizer, specials_with_unk

PATTERN = rf"{LETTER}+|{DIGIT}+|\s+|."
SPLIT_RE = re.compile(PATTERN, re.DOTALL)


class WordTokenizer(VocabTokenizer):
    kind = "word"

    def __init__(self, vocab: list[str], special_tokens=()):
        for w in vocab:
            if not isinstance(w, str) or not w:
                raise DataError(f"word tokenizer vocabulary entry {w!r} is not a non-empty string")
        super().__init__(vocab, special_tokens)
        self.vocab = list(vocab)

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
        specials = specials_with_unk(special_tokens)
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
