"""Byte-level BPE: merges learned over UTF-8 bytes, never across pre-split words or special tokens.

Ids: 0..255 are the bytes; 256 + i is merge i (`merges[i] = (left id, right id)`); the special
tokens come last. Every string round-trips exactly (`decode(encode(s)) == s`), because every byte
has a token. Decoding an arbitrary id sequence may cut a UTF-8 character in half; those partial
sequences (and only those) become U+FFFD.

Pre-split (`PATTERN`): text is cut into runs of letters, digits, other symbols and whitespace, a
letter/digit/symbol run taking one leading space (GPT-2 style: " the"), each run at most 64
characters (so no single word makes encoding quadratic in a huge line). Merges stay inside a run.

Training is the standard incremental algorithm: count the unique pre-split words, keep the count
of every adjacent pair and, for each pair, the words that hold it; each merge rewrites only the
words that hold the chosen pair. The best pair comes from a heap with lazy invalidation. Ties go
to the smaller (left id, right id), so training is deterministic.

What this is not: a GPT-2-compatible tokenizer (different pattern, no byte-to-unicode table).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from itertools import chain
from typing import Iterable

from alpha.core.errors import ConfigError, DataError
from alpha.tokenizers.base import (
    DIGIT, LETTER, OTHER, Tokenizer, check_specials, iter_texts, json_field, specials_from_json,
)

MAX_RUN = 64
PATTERN = (
    rf" ?{LETTER}{{1,{MAX_RUN}}}| ?{DIGIT}{{1,{MAX_RUN}}}| ?{OTHER}{{1,{MAX_RUN}}}"
    rf"|\s{{1,{MAX_RUN}}}(?!\S)|\s{{1,{MAX_RUN}}}"
)
SPLIT_RE = re.compile(PATTERN)
CACHE_LIMIT = 262_144  # pre-split words remembered by encode (forgotten when full)
_SHIFT = 21  # pair key = left << _SHIFT | right (ids stay below 2**21)
_MASK = (1 << _SHIFT) - 1


def presplit(text: str) -> list[str]:
    """The pre-split words of `text`; their concatenation is `text`."""
    return SPLIT_RE.findall(text)


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, merges: list[tuple[int, int]], special_tokens=()):
        merges = [(int(a), int(b)) for a, b in merges]
        n_base = 256 + len(merges)
        for i, (a, b) in enumerate(merges):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise DataError(f"BPE merge {i} ({a}, {b}) refers to an id not yet defined")
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
            want = list(range(n_base, n_base + len(specials)))
            if sorted(specials.values()) != want:
                raise DataError(f"BPE special token ids must be "
                                f"{n_base}..{n_base + len(specials) - 1}")
        else:
            specials = {tok: n_base + k for k, tok in enumerate(check_specials(special_tokens))}
        super().__init__(specials)
        self.merges = merges
        self.ranks = {(a << _SHIFT) | b: i for i, (a, b) in enumerate(merges)}
        vocab = [bytes([i]) for i in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
        self.vocab_bytes = vocab  # id -> bytes, for ids below 256 + len(merges)
        self.n_base = n_base
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return self.n_base + len(self.special_tokens)

    # ---- encode / decode ---------------------------------------------------------------------
    def _encode_ordinary(self, text: str) -> list[int]:
        # Set and map operations run in C: find the pre-split words not seen before, encode
        # those, then look every word up in the cache.
        pieces = SPLIT_RE.findall(text)
        cache = self._cache
        missing = set(pieces).difference(cache)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                # A fresh dict, not clear(): another thread may be reading the old one.
                cache = self._cache = {}
                missing = set(pieces)
            for piece in missing:
                cache[piece] = tuple(self._encode_piece(piece.encode("utf-8", "surrogatepass")))
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def _encode_piece(self, piece: bytes) -> list[int]:
        ids = list(piece)
        ranks = self.ranks
        while len(ids) > 1:
            best_rank = -1
            for i in range(len(ids) - 1):
                r = ranks.get((ids[i] << _SHIFT) | ids[i + 1])
                if r is not None and (best_rank < 0 or r < best_rank):
                    best_rank = r
            if best_rank < 0:
                break
            a, b = self.merges[best_rank]
            ids = _merge(ids, a, b, 256 + best_rank)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        vocab = self.vocab_bytes
        n_base = self.n_base
        parts: list[str] = []
        buf: list[bytes] = []
        for i in ids:
            if 0 <= i < n_base:
                buf.append(vocab[i])
                continue
            special = self.special_by_id.get(i)
            if special is None:
                self._check_id(i)
            if buf:
                parts.append(b"".join(buf).decode("utf-8", "replace"))
                buf = []
            parts.append(special)
        if buf:
            parts.append(b"".join(buf).decode("utf-8", "replace"))
        return "".join(parts)

    def token_bytes(self, i: int) -> bytes:
        """The bytes of a non-special token (for inspection)."""
        if 0 <= i < self.n_base:
            return self.vocab_bytes[i]
        if i in self.special_by_id:
            return self.special_by_id[i].encode("utf-8")
        self._check_id(i)

    # ---- JSON --------------------------------------------------------------------------------
    def _to_json_fields(self) -> dict:
        return {"pattern": PATTERN, "merges": [[a, b] for a, b in self.merges]}

    @classmethod
    def _from_json(cls, d: dict) -> "BPETokenizer":
        pattern = json_field(d, "pattern", str)
        if pattern != PATTERN:
            raise DataError("BPE tokenizer JSON uses a different pre-split pattern than this "
                            "version of Alpha; rebuild it with `alpha tokenizer build`")
        merges = json_field(d, "merges", list)
        try:
            pairs = [(a, b) for a, b in merges]
        except (TypeError, ValueError):
            raise DataError("BPE tokenizer JSON: merges must be [[left, right], ...]") from None
        for a, b in pairs:
            if not (isinstance(a, int) and isinstance(b, int)):
                raise DataError("BPE tokenizer JSON: merge ids must be integers")
        return cls(pairs, specials_from_json(d))

    # ---- training ----------------------------------------------------------------------------
    @classmethod
    def train(cls, data, vocab_size: int, special_tokens=()) -> "BPETokenizer":
        """Learn merges from `data` (a str or an iterable of str) until the vocabulary (bytes +
        merges + special tokens) holds `vocab_size` tokens, or no pair is left to merge."""
        specials = check_specials(special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise ConfigError(f"BPE vocab_size={vocab_size} must be at least 256 + "
                              f"{len(specials)} special tokens = {256 + len(specials)}")
        if vocab_size > _MASK:
            raise ConfigError(f"BPE vocab_size={vocab_size} is larger than {_MASK}")
        n_merges = vocab_size - 256 - len(specials)
        splitter = Tokenizer({s: k for k, s in enumerate(specials)})
        counts: Counter = Counter()
        for text in iter_texts(data):
            for part, is_special in splitter.split_specials(text):
                if not is_special:
                    counts.update(SPLIT_RE.findall(part))
        merges = learn_merges(counts, n_merges)
        return cls(merges, specials)


def _merge(ids: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every non-overlapping (a, b), left to right, by `new`."""
    out = []
    i = 0
    n = len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(word_counts: dict[str, int], n_merges: int) -> list[tuple[int, int]]:
    """The incremental BPE trainer over {pre-split word: frequency}."""
    words: list[list[int]] = []
    freqs: list[int] = []
    for w, f in word_counts.items():
        b = list(w.encode("utf-8", "surrogatepass"))
        if len(b) > 1:
            words.append(b)
            freqs.append(f)

    pair_counts: dict[int, int] = {}
    where: dict[int, set[int]] = {}
    for wi, w in enumerate(words):
        f = freqs[wi]
        for k in range(len(w) - 1):
            key = (w[k] << _SHIFT) | w[k + 1]
            pair_counts[key] = pair_counts.get(key, 0) + f
            s = where.get(key)
            if s is None:
                where[key] = {wi}
            else:
                s.add(wi)
    heap = [(-c, key) for key, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        best = None
        while heap:
            neg, key = heapq.heappop(heap)
            cur = pair_counts.get(key, 0)
            if cur == -neg:
                best = key
                break
            if cur > 0:  # the count fell since this entry was pushed: requeue at its true count
                heapq.heappush(heap, (-cur, key))
        if best is None:
            break
        a, b = best >> _SHIFT, best & _MASK
        new = 256 + len(merges)
        merges.append((a, b))
        new_pairs: set[int] = set()
        for wi in sorted(where.pop(best, ())):
            w = words[wi]
            n = len(w)
            # Find the merge sites; skip words that no longer hold the pair (stale index).
            k = 0
            merged = []
            found = False
            while k < n:
                if k < n - 1 and w[k] == a and w[k + 1] == b:
                    merged.append(new)
                    k += 2
                    found = True
                else:
                    merged.append(w[k])
                    k += 1
            if not found:
                continue
            f = freqs[wi]
            for k in range(n - 1):
                key = (w[k] << _SHIFT) | w[k + 1]
                pair_counts[key] -= f
            for k in range(len(merged) - 1):
                x, y = merged[k], merged[k + 1]
                key = (x << _SHIFT) | y
                pair_counts[key] = pair_counts.get(key, 0) + f
                if x == new or y == new:
                    new_pairs.add(key)
                    s = where.get(key)
                    if s is None:
                        where[key] = {wi}
                    else:
                        s.add(wi)
            words[wi] = merged
        pair_counts.pop(best, None)
        for key in new_pairs:
            c = pair_counts.get(key, 0)
            if c > 0:
                heapq.heappush(heap, (-c, key))
    return merges
