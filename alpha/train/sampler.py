"""The batch sampler: which windows of the token stream make each training batch.

Three orders, all drawn from one Rng stream ("data" for training) so that a checkpoint's
`state()` makes a resumed run draw exactly the batches the uninterrupted run would have:

  random      each window starts at a position drawn with `randint` (nanoGPT's get_batch): some
              positions are seen several times per pass over the data, others never.
  packed      (`--packed`) the corpus cut into W = (n - 1) // T windows of T inputs (+1 target),
              every window exactly once per epoch, in a shuffled order: at the start of each
              epoch one word picks an offset o in [0, n - 1 - W*T] and W - 1 words drive a
              Fisher-Yates shuffle of the window indices; window k starts at o + k*T. So every
              target position o+1 .. o+W*T is predicted exactly once per epoch; the fewer than T
              positions the windows do not reach differ from epoch to epoch with o. Shuffling
              costs about 2 µs per window at each epoch start (a 100M-token corpus at T=1024:
              ~0.2 s), and the order is one array('I') of W entries.
  sequential  consecutive windows from the start, wrapping around (evaluation-style sweeps).

x and y are `array('i')` of length batch_size * block_size, row-major (B, T) — ready for
`backend.from_array(x, (B, T), dtype="i32")`; y is x shifted by one.

`state()` is a small dict of integers; `restore(state)` (on a sampler over the same tokens and
shape) continues with exactly the batches the saved sampler would have drawn next. In packed mode
the state holds the stream position where the current epoch's shuffle began: restoring redraws
that shuffle (the same words, so the same order) and continues at the saved window index.
"""

from __future__ import annotations

from array import array

from alpha.core.errors import DataError
from alpha.core.rng import Rng

MODES = ("random", "packed", "sequential")


class BatchSampler:
    """(x, y) batches of `batch_size` windows of `block_size` tokens, in `mode`'s order."""

    def __init__(self, tokens, batch_size: int, block_size: int, rng: Rng | int | None = None,
                 *, mode: str = "random", stream: str = "data"):
        if mode not in MODES:
            raise DataError(f"unknown sampler mode {mode!r} (known: {', '.join(MODES)})")
        if batch_size < 1 or block_size < 1:
            raise DataError(f"batch_size={batch_size} and block_size={block_size} must be >= 1")
        if isinstance(tokens, array):
            tokens = memoryview(tokens)  # array.extend refuses arrays of another type code
        n = len(tokens)
        if n < block_size + 1:
            raise DataError(f"{n} tokens are too few for block_size={block_size} "
                            f"(need at least {block_size + 1})")
        self.tokens = tokens
        self.n_tokens = n
        self.batch_size = batch_size
        self.block_size = block_size
        self.mode = mode
        if rng is None:
            rng = Rng(0)
        elif isinstance(rng, int):
            rng = Rng(rng)
        self.rng = rng
        self.stream_name = stream
        self.stream = rng.stream(stream)
        self.cursor = 0  # sequential mode: start of the next window
        self.epoch = 0  # sequential and packed: completed passes over the tokens
        self.batches = 0  # batches drawn so far
        # packed mode: this epoch's shuffled window order, its offset, how many windows of it
        # were drawn, and the stream position its shuffle was drawn from (None: not begun)
        self.order: array | None = None
        self.offset = 0
        self.index = 0
        self.epoch_position: int | None = None

    @property
    def windows_per_epoch(self) -> int:
        """Windows in one pass over the tokens (sequential and packed)."""
        return (self.n_tokens - 1) // self.block_size

    @property
    def epochs(self) -> float:
        """Passes over the training tokens so far, fractional: in packed and sequential mode the
        completed epochs plus the share of this one drawn; in random mode the tokens drawn over
        the corpus size (the expected passes, not a coverage guarantee)."""
        if self.mode == "packed":
            return self.epoch + self.index / self.windows_per_epoch
        if self.mode == "sequential":
            return self.epoch + self.cursor / (self.windows_per_epoch * self.block_size)
        return self.batches * self.batch_size * self.block_size / self.n_tokens

    def starts(self) -> list[int]:
        """The window starts of the next batch (advances the sampler)."""
        B, T = self.batch_size, self.block_size
        if self.mode == "random":
            return self.stream.randint(B, self.n_tokens - T)
        if self.mode == "packed":
            return [self._next_packed() for _ in range(B)]
        out = []
        for _ in range(B):
            if self.cursor + T + 1 > self.n_tokens:
                self.cursor = 0
                self.epoch += 1
            out.append(self.cursor)
            self.cursor += T
        return out

    def _next_packed(self) -> int:
        if self.order is None:
            self._shuffle()
        elif self.index == len(self.order):  # the epoch is done: a new order for the next one
            self.epoch += 1
            self._shuffle()
        k = self.order[self.index]
        self.index += 1
        return self.offset + k * self.block_size

    def _shuffle(self) -> None:
        """This epoch's offset and window order, from the stream (Fisher-Yates, from the top)."""
        W = self.windows_per_epoch
        spare = self.n_tokens - 1 - W * self.block_size  # positions no window reaches, < T
        self.epoch_position = self.stream.position
        ws = self.stream.words(W)  # word 0: the offset; words 1..W-1: the swaps
        self.offset = (ws[0] * (spare + 1)) >> 32
        order = array("I", range(W))
        for i in range(W - 1, 0, -1):
            j = (ws[i] * (i + 1)) >> 32  # uniform in [0, i] (Lemire's multiply-shift)
            order[i], order[j] = order[j], order[i]
        self.order = order
        self.index = 0

    def next_batch(self) -> tuple[array, array]:
        T = self.block_size
        tokens = self.tokens
        x = array("i")
        y = array("i")
        for s in self.starts():
            window = tokens[s: s + T + 1]
            x.extend(window[:T])
            y.extend(window[1:])
        self.batches += 1
        return x, y

    __next__ = next_batch

    def __iter__(self):
        return self

    def state(self) -> dict:
        return {
            "mode": self.mode,
            "batch_size": self.batch_size,
            "block_size": self.block_size,
            "n_tokens": self.n_tokens,
            "stream": self.stream_name,
            "seed": self.rng.seed,
            "position": self.stream.position,
            "cursor": self.cursor,
            "epoch": self.epoch,
            "batches": self.batches,
            "epoch_position": self.epoch_position,  # packed: where this epoch's shuffle began
            "index": self.index,  # packed: windows of this epoch drawn
        }

    def restore(self, state: dict) -> None:
        """Continue from `state` (from `state()`); DataError when it belongs to another setup."""
        if not isinstance(state, dict):
            raise DataError("sampler state must be a dict from BatchSampler.state()")
        for key in ("mode", "batch_size", "block_size", "n_tokens"):
            if state.get(key, "random" if key == "mode" else None) != getattr(self, key):
                raise DataError(f"cannot resume the batch sampler: saved {key}={state.get(key)!r}, "
                                f"now {getattr(self, key)!r} (did the data or config change?)")
        if state.get("seed", self.rng.seed) != self.rng.seed:
            raise DataError(f"cannot resume the batch sampler: saved seed={state.get('seed')}, "
                            f"now {self.rng.seed}")
        position = int(state["position"])
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.batches = int(state["batches"])
        self.order, self.offset, self.index, self.epoch_position = None, 0, 0, None
        began = state.get("epoch_position")
        if self.mode == "packed" and began is not None:
            self.stream.position = int(began)
            self._shuffle()  # the same words: the same offset and order
            self.index = int(state["index"])
            if self.stream.position != position or not 0 <= self.index <= len(self.order):
                raise DataError("cannot resume the batch sampler: its packed-epoch state does "
                                "not match its stream position")
        self.stream.position = position
