"""What the char and word tokenizers share: a list of strings (ids 0..n-1), then `<unk>` and the
other special tokens (ids n..), and a table lookup to decode."""

from __future__ import annotations

from typing import Iterable

from alpha.core.errors import DataError
from alpha.tokenizers.base import UNK, Tokenizer, check_specials


class VocabTokenizer(Tokenizer):
    def __init__(self, entries: list[str], special_tokens=()):
        n = len(entries)
        if len(set(entries)) != n:
            raise DataError(f"{self.kind} tokenizer vocabulary has duplicate entries")
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
            expected = list(range(n, n + len(specials)))
            if sorted(specials.values()) != expected or UNK not in specials:
                raise DataError(f"{self.kind} special token ids must be "
                                f"{n}..{n + len(specials) - 1} and include {UNK}")
        else:
            specials = {tok: n + k for k, tok in enumerate(specials_with_unk(special_tokens))}
        super().__init__(specials)
        self.stoi = {s: i for i, s in enumerate(entries)}
        self.unk_id = self.special_tokens[UNK]
        self._itos = list(entries) + [None] * len(specials)
        for tok, i in specials.items():
            self._itos[i] = tok

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def decode(self, ids: Iterable[int]) -> str:
        itos = self._itos
        n = len(itos)
        out = []
        for i in ids:
            if not 0 <= i < n:
                self._check_id(i)
            out.append(itos[i])
        return "".join(out)


def specials_with_unk(special_tokens) -> list[str]:
    """`<unk>` first, then the user's special tokens (checked), without a second `<unk>`."""
    return [UNK] + [s for s in check_specials(special_tokens) if s != UNK]
