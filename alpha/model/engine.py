"""The serving engine: continuous batching of many sequences over one model, on its own thread.

    engine = Engine(gpt, max_batch=32, max_queue=128, prefill_chunk=64)
    handle = engine.submit([prompt_ids], SamplingParams(max_tokens=50, seed=1), n=1)
    for index, kind, value in handle:        # ("token", Token) ... ("done", "stop" | "length")
        ...
    engine.close()

Each step of the scheduler loop:
  1. admit waiting sequences into free cache slots (FIFO); drop cancelled ones (their slot is
     free for the next admission at once);
  2. prefill prompts, chunk by chunk, up to `prefill_chunk` tokens per step (at least one chunk),
     so a long prompt holds the running streams back by one chunk at most; when prompts
     outnumber the running streams, one chunk per running stream each (`_prefill_budget`); chunks
     of the same length (e.g. many short prompts) share one forward; a prompt whose last chunk is
     done samples its first token;
  3. one batched decode forward over every running sequence (each at its own cache length:
     `GPT.forward(..., cache=..., slots=...)`), then one sampled token per sequence.

Determinism: a sequence's tokens depend only on its prompt, its parameters and its seed. The
cached forward's products are batch-invariant (`matmul_rows`, the fused `block_decode`), so a
row's logits are the same bits alone or among 31 others, in decode and in prefill (chunk
boundaries are at multiples of `prefill_chunk` from the prompt's start whatever the load, though
the bits do not depend on them either); sampling draws from the sequence's own `Rng(seed)` stream.

Sampling: every row of a step at once, in C (`alpha.model.sampling.BatchSampler`: temperature,
top-k, top-p, presence / frequency penalties, logprobs; each row from its own stream). Token
events carry the sampled id and, when asked, its logprob and the top alternatives.

Not here: text, stop strings, HTTP (alpha/server/openai.py), model loading (alpha/server/models.py).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from array import array
from collections import deque
from dataclasses import dataclass, field

from alpha.core.errors import AlphaError
from alpha.core.rng import Rng
from alpha.model import engine_profile
from alpha.model.kvcache import KVCache, serving_kv_dtype
from alpha.model.sampling import BatchSampler, Pick, RowSpec


# From this many running sequences on, token events are announced every second decode step
# (`Engine._announce`): the server's pump then writes each stream two tokens at a time, half the
# socket sends (~70 us each on loopback, one per stream per write: with 32 streams more CPU than
# the pump's Python), for one step (~10 ms at that batch) more latency per token.
COALESCE_BATCH = 16

# The most chunks one step prefills (`Engine._prefill_budget`): bounds the step's work buffers
# (~30 KB a prompt token on config B) and how long it holds the running streams back.
PREFILL_MAX_CHUNKS = 16


class QueueFull(AlphaError):
    """Too many requests are waiting for a slot (the server answers 429)."""


class EngineClosed(AlphaError):
    """The engine is shutting down or was unloaded."""


@dataclass
class SamplingParams:
    max_tokens: int | None = None  # None: until a stop token or the end of the context
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None  # None: a random seed
    stop_tokens: tuple[int, ...] = ()  # ids that end the sequence (not emitted)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: no logprobs; k >= 0: the token's and the top k


Token = Pick  # a sampled token: .id, .logprob, .top [(id, logprob)] most likely first


@dataclass
class _Seq:
    handle: "Handle"
    index: int  # the choice index within its request
    prompt: list[int]
    params: SamplingParams
    stream: object  # the sequence's sampling stream (alpha.core.rng.Stream)
    slot: int = -1
    done_prompt: int = 0  # prompt tokens prefilled
    generated: int = 0
    next_input: int = -1  # the token to feed at the next decode step
    counts: dict = field(default_factory=dict)  # token id -> times generated (penalties)
    finished: bool = False
    spec: RowSpec | None = None  # the sampler's view of params, stream and counts

    def __post_init__(self):
        p = self.params
        self.spec = RowSpec(p.temperature, p.top_k, p.top_p, p.presence_penalty,
                            p.frequency_penalty, p.logprobs, self.stream, self.counts)


class Handle:
    """One request: its sequences' events arrive on one queue as (index, kind, value):
    ("token", Token), ("done", "stop" | "length"), ("error", message). Sequence k * n + j is
    choice j of prompt k. A stopped or cancelled sequence sends nothing more."""

    def __init__(self, engine: "Engine", count: int):
        self.engine = engine
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        self.stopped: set[int] = set()
        self.submitted = time.monotonic()
        self.first_token_at: float | None = None
        self._open = count

    def cancel(self) -> None:
        """Stop every sequence of this request; their slots are freed at the next step."""
        if not self.cancelled:
            self.cancelled = True
            self.engine._wake()

    def stop(self, index: int) -> None:
        """Stop one sequence (its client found a stop string); its slot is freed at once."""
        self.stopped.add(index)
        self.engine._wake()

    def dropped(self, s: "_Seq") -> bool:
        return self.cancelled or s.index in self.stopped

    def get(self, timeout: float | None = None):
        """The next event, or None after `timeout` seconds without one."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self):
        while self._open > 0:
            ev = self.events.get()
            if ev[1] in ("done", "error"):
                self._open -= 1
            yield ev


class Engine:
    def __init__(self, model, *, max_batch: int = 32, max_queue: int = 128,
                 prefill_chunk: int = 64, name: str = "", observer=None,
                 kv_dtype: str = "f32"):
        """`model` is a GPT (it is put in eval mode). `observer`, when given, gets
        observer(event, **values) calls: "step" (batch, prefill_tokens, seconds), "first_token"
        (seconds since submit), "token" (seconds since the sequence's previous token), "emitted"
        (count: token events are on the requests' queues; said just before the next forward,
        `_announce`). `kv_dtype`: "f32", "f16" or "auto" (f16 where the model can take it:
        `serving_kv_dtype`)."""
        self.model = model.eval()
        self.backend = model.backend
        self.cfg = model.cfg
        self.name = name
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.prefill_chunk = prefill_chunk
        self.max_len = self.cfg.block_size
        if kv_dtype == "auto":
            kv_dtype = serving_kv_dtype(self.model)
        self.cache = KVCache(model, max_batch, kv_dtype=kv_dtype)  # f16: alpha/model/kvcache.py
        self.observer = observer
        self._free = list(range(max_batch - 1, -1, -1))  # slot stack
        self._waiting: deque[_Seq] = deque()
        self._prefilling: list[_Seq] = []
        self._running: list[_Seq] = []
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._closed = False
        self.last_used = time.monotonic()
        self.steps = 0
        self._prefill_sampled = 0  # sequences whose first token the last step's prefill sampled
        self._unannounced = 0  # token events queued but not yet announced ("emitted")
        self._held = 0  # forwards since those events were queued
        self._V = self.cfg.vocab_size
        self.sampler = BatchSampler(self._V)
        self.profile = engine_profile.from_env(self.backend, name)  # None unless asked for
        self._thread = threading.Thread(target=self._loop, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # ---- the client side -----------------------------------------------------------------------
    def submit(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> Handle:
        """Queue a request: n sequences (choices) for each prompt. Choice j draws from
        Rng(seed).stream("sampling") for j = 0, "sampling.j" after, whatever the prompt (so a
        request's text depends only on itself). Raises QueueFull or EngineClosed."""
        for prompt in prompts:
            if not prompt:
                raise ValueError("a prompt needs at least one token")
            if len(prompt) > self.max_len:
                raise ValueError(f"the prompt has {len(prompt)} tokens; the context is "
                                 f"{self.max_len}")
        handle = Handle(self, len(prompts) * n)
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(6), "little")
        rng = Rng(seed)
        seqs = [_Seq(handle, k * n + j, list(prompt), params,
                     rng.stream("sampling" if j == 0 else f"sampling.{j}"))
                for k, prompt in enumerate(prompts) for j in range(n)]
        n = len(seqs)
        with self._cv:
            if self._closed:
                raise EngineClosed(f"model {self.name} is unloading")
            if len(self._waiting) + n - len(self._free) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} sequences are waiting for a slot")
            self._waiting.extend(seqs)
            self.last_used = time.monotonic()
            self._cv.notify()
        return handle

    def load(self) -> dict:
        """Counts for /health and /metrics."""
        with self._lock:
            return {"waiting": len(self._waiting), "prefilling": len(self._prefilling),
                    "running": len(self._running), "free_slots": len(self._free)}

    def busy(self) -> bool:
        with self._lock:
            return bool(self._waiting or self._prefilling or self._running)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop; every unfinished sequence gets an "error" event."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    # ---- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._closed and not (self._waiting or self._prefilling
                                                    or self._running):
                        if self.profile is not None:
                            self.profile.idle()
                        self._cv.wait(1.0)
                    if self._closed:
                        break
                    self._admit()
                self._step()
        except Exception as e:  # a bug or a device failure: fail every request, never hang them
            self._fail_all(f"the engine stopped: {type(e).__name__}: {e}")
            raise
        self._fail_all("the model was unloaded")

    def _fail_all(self, message: str) -> None:
        with self._lock:
            seqs = list(self._waiting) + self._prefilling + self._running
            self._waiting.clear()
            self._prefilling, self._running = [], []
            self._closed = True
        for s in seqs:
            if not s.finished:
                s.finished = True
                s.handle.events.put((s.index, "error", message))

    def _admit(self) -> None:
        """(lock held) Drop cancelled sequences, then fill free slots from the queue."""
        for group in (self._prefilling, self._running):
            for s in [s for s in group if s.handle.dropped(s)]:
                group.remove(s)
                self._release(s)
        if any(s.handle.dropped(s) for s in self._waiting):
            self._waiting = deque(s for s in self._waiting if not s.handle.dropped(s))
        while self._waiting and self._free:
            s = self._waiting.popleft()
            if s.handle.dropped(s):
                s.finished = True
                continue
            s.slot = self._free.pop()
            self.cache.reset(s.slot)
            self._prefilling.append(s)

    def _release(self, s: _Seq) -> None:
        s.finished = True
        if s.slot >= 0:
            self._free.append(s.slot)
            s.slot = -1

    def _step(self) -> None:
        t0 = time.perf_counter()
        self._lap("between")
        prefilled = self._prefill()
        with self._lock:
            running = [s for s in self._running if not s.handle.dropped(s)]
        if running:
            self._decode(running)
        if self._unannounced and not self.busy():
            self._announce()  # nothing runs next: no forward to hide the handlers' work behind
        self.steps += 1
        if self.profile is not None:
            self.profile.step(len(running), len(running) + self._prefill_sampled)
        if self.observer is not None:
            self.observer("step", batch=len(running), prefill_tokens=prefilled,
                          seconds=time.perf_counter() - t0)

    def _prefill_budget(self) -> int:
        """Prompt tokens this step may prefill: one chunk, or one chunk per running sequence
        for each prompt waiting beside it, whichever is more (at most PREFILL_MAX_CHUNKS).
        Every token waiting to be prefilled is a user waiting for a first token, so the step
        holds each running stream back about as long as it saves each waiting prompt: when a
        wave of requests arrives at once, their prompts go in one or two forwards instead of a
        chunk a step (with 32 prompts of 38 tokens and 128-token chunks, 11 steps, each reading
        every weight for 3 prompts and a few decode rows), while one new prompt among running
        streams still holds them back by one chunk at most."""
        with self._lock:
            running, waiting = len(self._running), len(self._prefilling)
        chunks = -(-waiting // max(1, running))  # ceil
        return self.prefill_chunk * max(1, min(chunks, PREFILL_MAX_CHUNKS))

    def _prefill(self) -> int:
        """The next chunk of waiting prompts, FIFO, up to `_prefill_budget` tokens in all (at
        least one chunk, at most one per prompt); chunks of the same length run as one forward
        (rows are batch-invariant)."""
        chunk, used, picked = self.prefill_chunk, 0, []
        budget = self._prefill_budget()
        for s in self._prefilling:
            if s.handle.dropped(s):
                continue
            a = s.done_prompt
            b = min(len(s.prompt), (a // chunk + 1) * chunk)
            if used and used + (b - a) > budget:
                break
            picked.append((s, a, b))
            used += b - a
            if used >= budget:
                break
        groups: dict[int, list] = {}
        for s, a, b in picked:
            groups.setdefault(b - a, []).append((s, a, b))
        be = self.backend
        self._prefill_sampled = 0
        for L, group in groups.items():
            ids = be.from_array([t for s, a, b in group for t in s.prompt[a:b]], (len(group), L),
                                "i32")
            self._announce()
            logits = self.model.forward(ids, cache=self.cache, slots=[s.slot for s, _, _ in group],
                                        last_only=True)
            self._lap("prefill")
            done = []
            for i, (s, a, b) in enumerate(group):
                s.done_prompt = b
                if b == len(s.prompt):
                    done.append(i)
            if not done:
                continue
            host = be.to_array(logits)
            V = self._V
            if len(done) < len(group):
                host = array(host.typecode, b"".join(
                    host[i * V:(i + 1) * V].tobytes() for i in done))
            seqs = [group[i][0] for i in done]
            self._prefill_sampled += len(seqs)
            with self._lock:
                for s in seqs:
                    self._prefilling.remove(s)
            self._sample(seqs, host)
            with self._lock:
                self._running.extend(s for s in seqs if not s.finished)
        return used

    def _decode(self, seqs: list[_Seq]) -> None:
        be = self.backend
        ids = be.from_array([s.next_input for s in seqs], (len(seqs), 1), "i32")
        self._announce(2 if len(seqs) >= COALESCE_BATCH else 1)
        logits = self.model.forward(ids, cache=self.cache, slots=[s.slot for s in seqs],
                                    last_only=True)
        self._lap("forward")
        self._sample(seqs, be.to_array(logits))
        with self._lock:
            self._running = [s for s in self._running if not s.finished]

    # ---- sampling ------------------------------------------------------------------------------
    def _sample(self, seqs: list[_Seq], host) -> None:
        """One token for each sequence from its row of host logits (M * V); emit; finish if due."""
        picks = self.sampler.sample(host, [s.spec for s in seqs])
        self._lap("sample")
        now = time.monotonic()
        for s, tok in zip(seqs, picks):
            self._emit(s, tok, now)
        self._unannounced += len(seqs)
        self._lap("emit")

    def _announce(self, every: int = 1) -> None:
        """Tell the observer that token events wait on the requests' queues ("emitted"), at the
        `every`-th forward since they were queued (`COALESCE_BATCH`). The engine says so just
        before a forward, not as soon as they are queued: the server's stream pump wakes on it
        and formats every stream's chunks in Python, so announced at once it held the interpreter
        lock while this thread prepared the next step (with 32 streams, ~1.5 ms a step during
        which both cores waited); announced before the forward, the pump runs while the step runs
        in C. With nothing to run next, `_step` announces at once."""
        if not self._unannounced:
            return
        self._held += 1
        if self._held < every:
            return
        if self.observer is not None:
            self.observer("emitted", count=self._unannounced)
        self._unannounced = self._held = 0

    def _lap(self, phase: str) -> None:
        if self.profile is not None:
            self.profile.lap(phase)

    def _emit(self, s: _Seq, tok: Token, now: float) -> None:
        h = s.handle
        if s.finished or h.dropped(s):
            return
        if self.observer is not None:
            if h.first_token_at is None:
                self.observer("first_token", seconds=now - h.submitted)
            else:
                self.observer("token", seconds=now - getattr(s, "_last", now))
        if h.first_token_at is None:
            h.first_token_at = now
        s._last = now
        if tok.id in s.params.stop_tokens:
            self._finish(s, "stop")
            return
        s.generated += 1
        s.counts[tok.id] = s.counts.get(tok.id, 0) + 1
        h.events.put((s.index, "token", tok))
        limit = s.params.max_tokens
        if (limit is not None and s.generated >= limit) \
                or len(s.prompt) + s.generated > self.max_len:
            self._finish(s, "length")
            return
        s.next_input = tok.id

    def _finish(self, s: _Seq, reason: str) -> None:
        with self._lock:
            self._release(s)
        s.handle.events.put((s.index, "done", reason))
