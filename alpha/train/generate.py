"""Text in, text out: continue a prompt with the KV-cache inference engine (alpha.model.inference),
cut at the run's stop strings. Used by the trainer's samples and `python -m alpha sample`."""

from __future__ import annotations

import time


def generate(gpt, tokenizer, prompt: str, sample_config, stream,
             stats: dict | None = None) -> str:
    """The new text only, cut at the first stop string. `stats`, when given, receives
    prefill/decode token counts and seconds (prefill: the prompt through the model and the first
    token; decode: every token after it)."""
    from alpha.model.inference import InferenceEngine

    sc = sample_config
    engine = InferenceEngine(gpt)
    specials = getattr(tokenizer, "special_tokens", {})
    ids = tokenizer.encode(prompt) or [0]
    stop_ids = [specials[s] for s in sc.stop if s in specials]
    text_stops = [s for s in sc.stop if s not in specials]
    out: list[int] = []
    t0 = time.perf_counter()
    t_first = None
    was_training = gpt.training
    gpt.eval()
    try:
        for tok in engine.generate(ids, max_tokens=sc.max_tokens, temperature=sc.temperature,
                                   top_k=sc.top_k, top_p=sc.top_p, stop_tokens=stop_ids,
                                   stream=stream):
            if t_first is None:
                t_first = time.perf_counter()
            out.append(tok)
            if text_stops and tok >= 0:
                tail = tokenizer.decode(out[-32:])
                if any(s in tail for s in text_stops):
                    break
    finally:
        if was_training:
            gpt.train()
    t_end = time.perf_counter()
    if stats is not None:
        t_first = t_first or t_end
        stats.update(prefill_tokens=len(ids), prefill_s=t_first - t0,
                     decode_tokens=max(0, len(out) - 1), decode_s=t_end - t_first)
    text = tokenizer.decode(out)
    for s in text_stops:
        if s in text:
            text = text[: text.index(s)]
    return text
