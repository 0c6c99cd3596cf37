"""Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC'11).

Why counter-based: word i of a stream is a pure function of (key, i), so the complete state of a
stream is two integers (its key and how many words it has used), any backend can produce the same
numbers in parallel, and save/restore is exact. This module is the reference definition; the CPU
backend has a C twin (`rng_fill_*` in `alpha/tensor/csrc/rng.c`) tested bit-exact against it.

Conventions every implementation follows:
- The key of a stream is derived from (seed, stream name) by `stream_key`.
- Block b (a 64-bit integer) is encrypted from counter (b & 0xffffffff, b >> 32, 0, 0) and gives
  words 4b..4b+3. A stream's position is counted in words.
- uniform: word -> (word >> 8) * 2**-24, in [0, 1), exact in float32.
- normal: words come in pairs (w0, w1) at even positions; u1 = ((w0 >> 8) + 1) * 2**-24 in (0, 1],
  u2 = (w1 >> 8) * 2**-24; r = sqrt(-2 ln u1); the pair gives r*cos(2 pi u2) then r*sin(2 pi u2),
  computed in float64. n normals use 2*ceil(n/2) words (an odd count drops the last sine).
- integers in [0, n): (word * n) >> 32 (Lemire's multiply-shift).
"""

from __future__ import annotations

import hashlib
import math
import struct

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
STREAMS = ("init", "data", "dropout", "sampling")


def philox4x32(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Ten Philox rounds over a 128-bit counter with a 64-bit key."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & MASK32,
            p1 & MASK32,
            ((p0 >> 32) ^ c3 ^ k1) & MASK32,
            p0 & MASK32,
        )
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


def stream_key(seed: int, name: str) -> tuple[int, int]:
    """A 64-bit key from (seed, stream name): independent streams for independent purposes."""
    digest = hashlib.sha256(f"{seed & (2**64 - 1)}:{name}".encode()).digest()
    k0, k1 = struct.unpack("<II", digest[:8])
    return k0, k1


def words(key: tuple[int, int], start: int, n: int) -> list[int]:
    """n 32-bit words of the stream with `key`, from word position `start`."""
    out = []
    block = start // 4
    skip = start % 4
    while len(out) < n:
        out.extend(philox4x32((block & MASK32, block >> 32, 0, 0), key)[skip:])
        skip = 0
        block += 1
    return out[:n]


def to_uniform(word: int) -> float:
    return (word >> 8) * (1.0 / 16777216.0)


def normals_from_words(ws: list[int], n: int) -> list[float]:
    out = []
    for i in range(0, len(ws) - 1, 2):
        u1 = ((ws[i] >> 8) + 1) * (1.0 / 16777216.0)
        u2 = (ws[i + 1] >> 8) * (1.0 / 16777216.0)
        r = math.sqrt(-2.0 * math.log(u1))
        out.append(r * math.cos(2.0 * math.pi * u2))
        out.append(r * math.sin(2.0 * math.pi * u2))
    return out[:n]


class Stream:
    """One named stream: a key and a position (in words). Its state is those integers."""

    def __init__(self, key: tuple[int, int], position: int = 0):
        self.key = key
        self.position = position

    def take(self, n: int) -> int:
        """Reserve n words; return the position they start at (for bulk fills on a backend)."""
        start = self.position
        self.position += n
        return start

    def words(self, n: int) -> list[int]:
        return words(self.key, self.take(n), n)

    def uniform(self, n: int) -> list[float]:
        return [to_uniform(w) for w in self.words(n)]

    def normal(self, n: int, mean: float = 0.0, std: float = 1.0) -> list[float]:
        zs = normals_from_words(self.words(2 * ((n + 1) // 2)), n)
        return [mean + std * z for z in zs]

    def randint(self, n: int, high: int) -> list[int]:
        """n integers uniform in [0, high)."""
        if high <= 0:
            raise ValueError(f"randint needs high > 0, got {high}")
        return [(w * high) >> 32 for w in self.words(n)]

    def random(self) -> float:
        return to_uniform(self.words(1)[0])


class Rng:
    """All of a run's randomness: one seed, independent named streams (init, data, dropout, sampling).

    `state()` is a small dict of integers; `Rng.from_state(s)` continues exactly where `s` was taken.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._streams: dict[str, Stream] = {}

    def stream(self, name: str) -> Stream:
        if name not in self._streams:
            self._streams[name] = Stream(stream_key(self.seed, name))
        return self._streams[name]

    def __getattr__(self, name):
        if name in STREAMS:
            return self.stream(name)
        raise AttributeError(name)

    def state(self) -> dict:
        return {"seed": self.seed, "positions": {k: s.position for k, s in self._streams.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "Rng":
        rng = cls(state["seed"])
        for name, pos in state.get("positions", {}).items():
            rng.stream(name).position = int(pos)
        return rng
