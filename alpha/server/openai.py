"""The OpenAI-compatible API: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`,
`POST /v1/completions`, in OpenAI's exact shapes, streamed as Server-Sent Events when asked.

A request becomes n sequences on the model's engine (alpha/model/engine.py); this module turns
their token events into text (alpha/server/chat.py), cuts at stop strings, and writes either one
JSON response or a stream of chunks ending with `data: [DONE]`. A client that goes away (a failed
write, or a closed socket noticed while waiting) cancels its sequences, which frees their slots at
the engine's next step. `ALPHA_API_KEY`, when set, is required as a bearer token on /v1.

Not here: tools/function calling, images, embeddings, the Responses API.
"""

from __future__ import annotations

import queue
import secrets
import time

from alpha.core.errors import AlphaError
from alpha.model.engine import EngineClosed, QueueFull, SamplingParams
from alpha.server.chat import PLAIN_STOP, TextStream, render_chat, token_bytes
from alpha.server.http import ClientGone, HTTPError, event_text, json_response
from alpha.server.models import ModelRegistry, UnknownModel
from alpha.server.openai_params import Params, chat_params, completion_params
from alpha.server.pump import StreamPump

API_KEY_ENV = "ALPHA_API_KEY"
POLL_S = 0.25  # how often a waiting request checks that its client is still there
# decode latency buckets: a token every few ms (batch 1) to a second (a big batch on a busy box)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


def register(router, ctx) -> None:
    api = OpenAI(ctx)
    ctx.engines = api.models
    router.add("GET", "/v1/models", api.list_models)
    router.add("GET", "/v1/models/{id:path}", api.get_model)
    router.add("POST", "/v1/chat/completions", api.chat)
    router.add("POST", "/v1/completions", api.completions)


class OpenAI:
    def __init__(self, ctx):
        self.ctx = ctx
        o = ctx.options
        m = ctx.metrics
        self.prompt_tokens = m.counter("alpha_prompt_tokens_total", "prompt tokens received")
        self.generated_tokens = m.counter("alpha_generated_tokens_total", "tokens generated")
        self.finished = m.counter("alpha_completions_total", "finished choices by reason",
                                  ("finish_reason",))
        self.ttft = m.histogram("alpha_time_to_first_token_seconds",
                                "from a request's arrival to its first token")
        self.tpot = m.histogram("alpha_time_per_output_token_seconds",
                                "between two tokens of one sequence", buckets=TOKEN_BUCKETS)
        self.step_batch = m.histogram("alpha_batch_size", "sequences per decode step",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.pump = StreamPump(POLL_S)  # writes every stream's chunks (alpha/server/pump.py)
        self.models = ModelRegistry(
            ctx.outputs, backend=o.get("backend", "cpu"), max_models=o.get("max_models", 2),
            max_batch=o.get("max_batch", 32), max_queue=o.get("max_queue", 128),
            prefill_chunk=o.get("prefill_chunk", 128), kv_dtype=o.get("kv_dtype", "auto"),
            observer=self._observe, log=ctx.log)
        m.gauge("alpha_queue_depth", "sequences waiting for a slot",
                fn=lambda: sum(s.engine.load()["waiting"] for s in self.models.loaded()))
        m.gauge("alpha_running_sequences", "sequences being prefilled or decoded",
                fn=lambda: sum(s.engine.load()["running"] + s.engine.load()["prefilling"]
                               for s in self.models.loaded()))
        m.gauge("alpha_models_loaded", "models loaded", fn=lambda: len(self.models.loaded()))
        for spec in o.get("model") or []:
            mid = self.models.add(spec)
            self.models.get(mid)  # load now: a bad --model fails at start, not at first use

    def _observe(self, event: str, **v) -> None:
        if event == "emitted":  # a batch of tokens is on their requests' queues
            self.pump.wake()
        if event == "first_token":
            self.ttft.observe(v["seconds"])
        elif event == "token":
            self.tpot.observe(v["seconds"])
        elif event == "step" and v["batch"]:
            self.step_batch.observe(v["batch"])

    # ---- helpers -------------------------------------------------------------------------------
    def _auth(self, req) -> None:
        self.ctx.check_bearer(req, self.ctx.secret(API_KEY_ENV))

    def _model(self, model_id: str):
        try:
            return self.models.get(model_id)
        except UnknownModel as e:
            raise HTTPError(404, str(e), param="model", code="model_not_found",
                            type="invalid_request_error") from None
        except AlphaError as e:  # e.g. a corrupt or truncated checkpoint: say so, no traceback (qa)
            self.models.log(f"cannot load model {model_id}: {e}")
            raise HTTPError(500, f"the model {model_id!r} could not be loaded: {e}",
                            param="model", code="model_load_failed") from None

    @staticmethod
    def _model_object(info: dict) -> dict:
        return {"id": info["id"], "object": "model", "created": info["created"],
                "owned_by": "alpha"}

    # ---- /v1/models ----------------------------------------------------------------------------
    def list_models(self, req):
        self._auth(req)
        return json_response({"object": "list",
                              "data": [self._model_object(i) for i in self.models.list()]})

    def get_model(self, req):
        self._auth(req)
        mid = req.params["id"]
        try:
            path, step = self.models.resolve(mid)
        except UnknownModel as e:
            raise HTTPError(404, str(e), param="model", code="model_not_found",
                            type="invalid_request_error") from None
        return json_response(self._model_object(self.models._info(mid, path, step)))

    # ---- completions ---------------------------------------------------------------------------
    def chat(self, req):
        self._auth(req)
        p = chat_params(req.json())
        served = self._model(p.model)
        prompt = render_chat(p.messages, served.chat)
        ids = served.tokenizer.encode(prompt)
        stops = list(p.stop) + ([] if served.chat else [PLAIN_STOP])
        return self._run(req, p, served, [ids], stops, chat=True)

    def completions(self, req):
        self._auth(req)
        p = completion_params(req.json())
        served = self._model(p.model)
        prompts = []
        for x in p.prompts:
            if isinstance(x, str):
                prompts.append(served.tokenizer.encode(x) if x else [])
            else:
                V = served.config.model.vocab_size
                bad = [t for t in x if not 0 <= t < V]
                if bad:
                    raise HTTPError(400, f"prompt: token id {bad[0]} is outside the vocabulary "
                                    f"[0, {V})", param="prompt", code="invalid_value")
                prompts.append(list(x))
        for i, ids in enumerate(prompts):
            if not ids:  # an empty prompt starts from <|end_of_text|> or a newline
                sp = getattr(served.tokenizer, "special_tokens", {})
                prompts[i] = [sp["<|end_of_text|>"]] if "<|end_of_text|>" in sp else \
                    (served.tokenizer.encode("\n") or [0])
        return self._run(req, p, served, prompts, list(p.stop), chat=False)

    def _run(self, req, p: Params, served, prompts: list[list[int]], stops: list[str], *,
             chat: bool):
        ctx = self.ctx
        if ctx.draining.is_set():
            raise HTTPError(503, "the server is shutting down", code="server_shutting_down")
        for ids in prompts:
            if len(ids) > served.context:
                where = "messages" if chat else "prompt"
                raise HTTPError(400, f"This model's maximum context length is {served.context} "
                                f"tokens. However, your {where} resulted in {len(ids)} tokens. "
                                f"Please reduce the length of the {where}.", param=where,
                                code="context_length_exceeded")
        sp = SamplingParams(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                            top_k=p.top_k, seed=p.seed, stop_tokens=served.stop_ids(),
                            presence_penalty=p.presence_penalty,
                            frequency_penalty=p.frequency_penalty, logprobs=p.logprobs)
        try:
            handle = served.engine.submit(prompts, sp, p.n)
        except QueueFull as e:
            raise HTTPError(429, f"the server is busy ({e}); retry shortly",
                            code="rate_limit_exceeded", type="rate_limit_error",
                            headers={"Retry-After": "1"}) from None
        except EngineClosed as e:
            raise HTTPError(503, str(e), code="model_unloading") from None
        n_prompt = sum(len(ids) for ids in prompts) * p.n
        self.prompt_tokens.inc(n_prompt)
        gen = _Generation(self, req, p, served, handle, len(prompts) * p.n, stops, chat,
                          n_prompt)
        try:
            if p.stream:
                gen.stream()
                return None
            return json_response(gen.collect())
        finally:
            handle.cancel()  # frees the slots of a client that left (no-op when all finished)
            req.tokens = gen.completion_tokens


class _Generation:
    """The events of one request's sequences turned into choices (text, logprobs, reason)."""

    def __init__(self, api: OpenAI, req, p: Params, served, handle, total: int, stops,
                 chat: bool, n_prompt: int):
        self.api, self.req, self.p, self.served = api, req, p, served
        self.handle, self.chat = handle, chat
        self.n_prompt = n_prompt
        self.completion_tokens = 0
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        tok = served.tokenizer
        self.closed = [False] * total
        self.text = [TextStream(tok, stops) for _ in range(total)]
        self.logprobs: list[list] = [[] for _ in range(total)]
        self.reason: list[str | None] = [None] * total
        self.offset = [0] * total  # completions logprobs: characters before each token

    def _events(self):
        """(choice index, kind, value) until every choice is closed; watches the client."""
        while not all(self.closed):
            ev = self.handle.get(timeout=POLL_S)
            if ev is None:
                if self.req.client_gone():
                    raise ClientGone("the client closed the connection")
                continue
            i, kind, value = ev
            if self.closed[i]:
                continue  # the rest of a choice that ended at a stop string
            if kind in ("done", "error"):
                self.closed[i] = True
            yield i, kind, value

    def _token(self, i: int, tok) -> str:
        """Text for choice i's new token (maybe empty), after its stop strings."""
        ts = self.text[i]
        if ts.stopped:
            return ""
        self.completion_tokens += 1
        self.api.generated_tokens.inc()
        delta, stopped = ts.add(tok.id)
        if tok.logprob is not None:
            self.logprobs[i].append((tok, self.offset[i]))
        self.offset[i] += len(delta)
        if stopped:
            self.reason[i] = "stop"
            self.closed[i] = True
            self.handle.stop(i)
        return delta

    def _logprob_entry(self, tok) -> dict:
        t = self.served.tokenizer

        def one(tid, lp):
            b = token_bytes(t, tid)
            return {"token": b.decode("utf-8", "replace"), "logprob": lp, "bytes": list(b)}

        e = one(tok.id, tok.logprob)
        e["top_logprobs"] = [one(tid, lp) for tid, lp in (tok.top or [])]
        return e

    def _choice_logprobs(self, entries) -> dict | None:
        if self.p.logprobs is None:
            return None
        if self.chat:
            return {"content": [self._logprob_entry(tok) for tok, _ in entries], "refusal": None}
        t = self.served.tokenizer
        return {
            "tokens": [token_bytes(t, tok.id).decode("utf-8", "replace") for tok, _ in entries],
            "token_logprobs": [tok.logprob for tok, _ in entries],
            "top_logprobs": [{token_bytes(t, tid).decode("utf-8", "replace"): lp
                              for tid, lp in (tok.top or [])} for tok, _ in entries],
            "text_offset": [off for _, off in entries],
        }

    def _usage(self) -> dict:
        return {"prompt_tokens": self.n_prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": self.n_prompt + self.completion_tokens}

    def _error(self, value: str):
        return HTTPError(500, f"generation failed: {value}", code="engine_error")

    # ---- one JSON response ---------------------------------------------------------------------
    def collect(self) -> dict:
        parts = [[] for _ in self.text]
        for i, kind, value in self._events():
            if kind == "token":
                parts[i].append(self._token(i, value))
                if self.text[i].stopped:
                    parts[i].append(self.text[i].finish())
            elif kind == "done":
                self.reason[i] = self.reason[i] or value
                parts[i].append(self.text[i].finish())
            else:
                raise self._error(value)
        choices = []
        for i, reason in enumerate(self.reason):
            self.api.finished.inc(1, reason)
            text = "".join(parts[i])
            lp = self._choice_logprobs(self.logprobs[i])
            if self.chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text,
                                                        "refusal": None},
                                "logprobs": lp, "finish_reason": reason})
            else:
                choices.append({"text": text, "index": i, "logprobs": lp,
                                "finish_reason": reason})
        return {"id": self.id, "object": self.object, "created": self.created,
                "model": self.p.model, "system_fingerprint": None, "choices": choices,
                "usage": self._usage()}

    # ---- a stream of chunks --------------------------------------------------------------------
    def _chunk(self, choices: list, usage=False) -> dict:
        c = {"id": self.id, "object": "chat.completion.chunk" if self.chat else self.object,
             "created": self.created, "model": self.p.model, "system_fingerprint": None,
             "choices": choices}
        if self.p.include_usage:
            c["usage"] = self._usage() if usage else None
        return c

    def _delta_choice(self, i: int, text: str | None, reason=None, role=False, entries=None):
        lp = self._choice_logprobs(entries) if entries else None
        if self.chat:
            delta = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            return {"index": i, "delta": delta, "logprobs": lp, "finish_reason": reason}
        return {"text": text or "", "index": i, "logprobs": lp, "finish_reason": reason}

    def stream(self) -> None:
        """The chunks as SSE events, written by the server's stream pump (alpha/server/pump.py)
        from `pump_events`; returns when the stream is done, raises ClientGone if the client
        left."""
        s = self.req.sse()
        self._out = []
        self._failed = self._ended = False
        if self.chat:
            for i in range(len(self.text)):
                self._send(self._chunk([self._delta_choice(i, None, role=True)]))
        self.api.pump.run(self, s)

    def pump_events(self) -> tuple[str, bool]:
        """The SSE text of the events waiting now, and whether the stream is complete (the usage
        chunk and `data: [DONE]` then end the text). Events already waiting are written together
        (one write, one wake-up of the client): a request that falls behind a busy engine
        catches up in fewer system calls instead of falling further behind."""
        events = self.handle.events
        while not (all(self.closed) or self._failed):
            try:
                i, kind, value = events.get_nowait()
            except queue.Empty:
                break
            if self.closed[i]:
                continue  # the rest of a choice that ended at a stop string
            if kind in ("done", "error"):
                self.closed[i] = True
            if kind == "token":
                seen = len(self.logprobs[i])
                text = self._token(i, value)
                entries = self.logprobs[i][seen:]
                if text or entries:
                    self._send(self._chunk([self._delta_choice(i, text, entries=entries)]))
                if self.reason[i] == "stop" and self.text[i].stopped:
                    self._end_choice(i, "stop")
            elif kind == "done":
                self._end_choice(i, value)
            else:
                self._send(self._error(value).response().body.decode())
                self._failed = True
        finished = all(self.closed) or self._failed
        if finished and not self._ended:
            self._ended = True
            if self.p.include_usage:
                self._send(self._chunk([], usage=True))
            self._send("[DONE]")
        text, self._out = "".join(self._out), []
        return text, finished

    def _send(self, data) -> None:
        self._out.append(event_text(data))

    def _end_choice(self, i: int, reason: str) -> None:
        self.reason[i] = reason
        self.api.finished.inc(1, reason)
        rest = self.text[i].finish()
        if rest:
            self._send(self._chunk([self._delta_choice(i, rest)]))
        self._send(self._chunk([self._delta_choice(i, None, reason=reason)]))
