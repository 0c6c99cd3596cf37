"""Sampling from a checkpoint for the Models tab: text pieces as the model produces them.

`stream_text` is the only place the dashboard touches the model: it loads the checkpoint the way
`python -m alpha sample` does (alpha.train.restore) and runs the inference engine's generator.
`Sampler` runs it on a thread and queues the pieces, so the screen keeps answering keys while the
model works (the kernels run in C, outside the GIL), and Esc stops it between two tokens.
"""

from __future__ import annotations

import queue
import threading
import time

MAX_TOKENS = 200


def stream_text(checkpoint: str, prompt: str, max_tokens: int = MAX_TOKENS,
                stop: threading.Event | None = None):
    """Yield pieces of text continuing `prompt`, sampled with the run's own settings
    (temperature, top-k, top-p, seed), then return a one-line summary of the speed."""
    from alpha.core.rng import Rng
    from alpha.model.inference import InferenceEngine
    from alpha.train.restore import load_for_inference

    config, tokenizer, model, ck = load_for_inference(checkpoint, "")
    sc = config.sample
    specials = getattr(tokenizer, "special_tokens", {})
    stop_ids = [specials[s] for s in sc.stop if s in specials]
    ids = tokenizer.encode(prompt or "\n") or [0]
    engine = InferenceEngine(model)
    t0 = time.perf_counter()
    gen = engine.generate(ids, max_tokens=max_tokens, temperature=sc.temperature,
                          top_k=sc.top_k, top_p=sc.top_p, stop_tokens=stop_ids,
                          stream=Rng(sc.seed).stream("sampling"))
    out: list[int] = []
    shown = ""
    for tok in gen:
        out.append(tok)
        text = tokenizer.decode(out)
        if text.endswith("\ufffd"):
            continue  # a character split across tokens: wait for the rest of it
        if len(text) > len(shown) and text.startswith(shown):
            yield text[len(shown):]
            shown = text
        if stop is not None and stop.is_set():
            break
    text = tokenizer.decode(out)
    if text != shown and text.startswith(shown):
        yield text[len(shown):]
    seconds = time.perf_counter() - t0
    rate = len(out) / seconds if seconds > 0 else 0.0
    return f"step {ck.step}: {len(out)} tokens at {rate:,.0f} tok/s"


class Sampler:
    """One sampling stream on a thread. The screen's loop calls `drain()` for what arrived."""

    def __init__(self, checkpoint: str, prompt: str, max_tokens: int = MAX_TOKENS):
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.done = False
        self._thread = threading.Thread(target=self._work, daemon=True, name="alpha-tui-sample",
                                        args=(checkpoint, prompt, max_tokens))
        self._thread.start()

    def _work(self, checkpoint: str, prompt: str, max_tokens: int) -> None:
        try:
            gen = stream_text(checkpoint, prompt, max_tokens, self.stop)
            while True:
                try:
                    self.queue.put(("text", next(gen)))
                except StopIteration as end:
                    self.queue.put(("done", end.value or "done"))
                    break
        except Exception as e:  # a bad checkpoint, no backend: said on screen, never a crash
            self.queue.put(("done", f"error: {e}"))

    def cancel(self) -> None:
        self.stop.set()

    def drain(self) -> tuple[str, str | None]:
        """(new text, the final status line or None while running)."""
        text, status = [], None
        while True:
            try:
                kind, value = self.queue.get_nowait()
            except queue.Empty:
                break
            if kind == "text":
                text.append(value)
            else:
                status, self.done = value, True
        return "".join(text), status
