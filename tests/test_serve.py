"""`python -m alpha serve` over real HTTP on 127.0.0.1 (stdlib client, SSE parsed strictly): the
OpenAI shapes field by field, every parameter, each error, 32 concurrent streams equal to the same
requests alone, a client that leaves mid-stream, a slow client, SIGTERM during a stream."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from serve_helpers import KEY, Server, make_runs, parse_sse

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
CHAT_KEYS = {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
CHUNK_KEYS = {"id", "object", "created", "model", "system_fingerprint", "choices"}
USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("serve") / "outputs")
    make_runs(out)
    return out


@pytest.fixture(scope="module")
def srv(outputs):
    s = Server(outputs, "--model", "chat", "--max-batch", "32", "--max-models", "2", key=KEY)
    yield s
    assert s.stop() == 0


def _chat(model="chat", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": "hello 3, how are you?"}],
            "max_tokens": 12, "seed": 1}
    body.update(kw)
    return body


def _stream_text(events, n=1):
    text = [""] * n
    for e in events:
        for c in e["choices"]:
            text[c["index"]] += c["delta"].get("content") or "" if "delta" in c else c["text"]
    return text


# ---- shapes ---------------------------------------------------------------------------------

def test_models_list_and_get(srv):
    st, h, body = srv.request("GET", "/v1/models")
    assert st == 200 and body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["chat", "long", "text"]
    for m in body["data"]:
        assert set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model"
        assert isinstance(m["created"], int)
    st, _, m = srv.request("GET", "/v1/models/chat")
    assert st == 200 and m["id"] == "chat" and m["owned_by"] == "alpha"
    st, _, m = srv.request("GET", "/v1/models/chat@2")  # a checkpoint by step
    assert st == 200 and m["id"] == "chat@2"
    st, _, err = srv.request("GET", "/v1/models/chat@7")
    assert st == 404 and err["error"]["code"] == "model_not_found"
    st, _, err = srv.request("GET", "/v1/models/nope")
    assert st == 404 and err["error"] == {
        "message": err["error"]["message"], "type": "invalid_request_error", "param": "model",
        "code": "model_not_found"}


def test_chat_completion_shape_and_stream_equal_it(srv):
    st, h, r = srv.request("POST", CHAT, _chat())
    assert st == 200 and set(r) == CHAT_KEYS and r["object"] == "chat.completion"
    assert r["id"].startswith("chatcmpl-") and r["model"] == "chat"
    (c,) = r["choices"]
    assert set(c) == {"index", "message", "logprobs", "finish_reason"} and c["index"] == 0
    assert set(c["message"]) == {"role", "content", "refusal"}
    assert c["message"]["role"] == "assistant" and c["logprobs"] is None
    assert c["finish_reason"] in ("stop", "length")
    u = r["usage"]
    assert set(u) == USAGE_KEYS and u["total_tokens"] == u["prompt_tokens"] + \
        u["completion_tokens"] and 0 < u["completion_tokens"] <= 12
    # the same request streamed: same text, OpenAI's chunk sequence
    st, events, done = srv.stream(CHAT, _chat(stream=True,
                                              stream_options={"include_usage": True}))
    assert st == 200 and done
    for e in events:
        assert set(e) == CHUNK_KEYS | {"usage"} and e["object"] == "chat.completion.chunk"
        assert e["id"] == events[0]["id"] and e["model"] == "chat"
    first = events[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    assert first["finish_reason"] is None and first["logprobs"] is None
    last = events[-2]["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] == c["finish_reason"]
    for e in events[1:-2]:
        (ch,) = e["choices"]
        assert set(ch) == {"index", "delta", "logprobs", "finish_reason"}
        assert set(ch["delta"]) == {"content"} and ch["finish_reason"] is None
        assert e["usage"] is None
    assert events[-1]["choices"] == [] and events[-1]["usage"] == u
    assert _stream_text(events)[0] == c["message"]["content"]
    # without include_usage there is no usage key at all
    st, events, done = srv.stream(CHAT, _chat(stream=True))
    assert done and all("usage" not in e for e in events)


def test_text_completions_shapes(srv, outputs):
    body = {"model": "text", "prompt": ["The quick", "A lazy"], "max_tokens": 6, "seed": 4,
            "n": 2, "logprobs": 2}
    st, _, r = srv.request("POST", COMP, body)
    assert st == 200 and set(r) == CHAT_KEYS and r["object"] == "text_completion"
    assert r["id"].startswith("cmpl-") and [c["index"] for c in r["choices"]] == [0, 1, 2, 3]
    for c in r["choices"]:
        assert set(c) == {"text", "index", "logprobs", "finish_reason"}
        lp = c["logprobs"]
        assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
        assert "".join(lp["tokens"]) == c["text"] and len(lp["tokens"]) == 6
        assert all(len(t) == 2 for t in lp["top_logprobs"])
        assert all(x <= 0 for x in lp["token_logprobs"])
        assert c["finish_reason"] == "length"
    assert r["choices"][0]["text"] != r["choices"][1]["text"]  # n draws differ
    assert r["usage"]["completion_tokens"] == 24
    # streamed: the same texts, text_completion chunks, then [DONE]
    st, events, done = srv.stream(COMP, {**body, "stream": True, "logprobs": None})
    assert done and all(e["object"] == "text_completion" for e in events)
    assert _stream_text(events, 4) == [c["text"] for c in r["choices"]]
    assert sorted(e["choices"][0]["index"] for e in events
                  if e["choices"][0]["finish_reason"] == "length") == [0, 1, 2, 3]
    # token-id prompts, and a string prompt of the same text, give the same completion
    from alpha.tokenizers import load as load_tokenizer

    ids = load_tokenizer(os.path.join(outputs, "text", "tokenizer.json")).encode("The")
    one = {"model": "text", "max_tokens": 5, "temperature": 0}
    st, _, r1 = srv.request("POST", COMP, {**one, "prompt": "The"})
    st2, _, r2 = srv.request("POST", COMP, {**one, "prompt": [ids]})
    st3, _, r3 = srv.request("POST", COMP, {**one, "prompt": ids})
    assert st == st2 == st3 == 200
    assert r1["choices"] == r2["choices"] == r3["choices"]


def test_parameters(srv):
    # the seed decides; temperature 0 is greedy whatever the seed
    a = srv.request("POST", CHAT, _chat(temperature=1.0, seed=5))[2]
    b = srv.request("POST", CHAT, _chat(temperature=1.0, seed=5))[2]
    assert a["choices"] == b["choices"]
    g1 = srv.request("POST", CHAT, _chat(temperature=0, seed=1, max_tokens=8))[2]
    g2 = srv.request("POST", CHAT, _chat(temperature=0, seed=2, max_tokens=8))[2]
    assert g1["choices"] == g2["choices"]
    # max_completion_tokens, top_k (extension), top_p, penalties, and unknown fields
    r = srv.request("POST", CHAT, _chat(max_completion_tokens=3, top_k=5, top_p=0.9,
                                        presence_penalty=0.5, frequency_penalty=0.5,
                                        user="someone", parallel_tool_calls=False,
                                        metadata={"x": 1}))
    assert r[0] == 200 and r[2]["usage"]["completion_tokens"] <= 3
    # content as an array of text parts; system and assistant turns
    parts = _chat(messages=[{"role": "system", "content": "Be nice."},
                            {"role": "user", "content": [{"type": "text", "text": "hello "},
                                                         {"type": "text", "text": "3"}]},
                            {"role": "assistant", "content": "hi"},
                            {"role": "user", "content": "and you?"}])
    assert srv.request("POST", CHAT, parts)[0] == 200
    # stop strings cut the text (and say "stop"); streamed the same
    text = srv.request("POST", COMP, {"model": "text", "prompt": "The quick brown",
                                      "max_tokens": 30, "temperature": 0})[2]
    full = text["choices"][0]["text"]
    stop = full[5:7]
    cut = srv.request("POST", COMP, {"model": "text", "prompt": "The quick brown",
                                     "max_tokens": 30, "temperature": 0, "stop": [stop, "@@"]})[2]
    c = cut["choices"][0]
    assert c["text"] == full[:full.index(stop)] and c["finish_reason"] == "stop"
    st, events, done = srv.stream(COMP, {"model": "text", "prompt": "The quick brown",
                                         "max_tokens": 30, "temperature": 0, "stop": stop,
                                         "stream": True})
    assert _stream_text(events)[0] == c["text"]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    # chat logprobs with top_logprobs
    r = srv.request("POST", CHAT, _chat(model="text", logprobs=True, top_logprobs=3,
                                        max_tokens=4))[2]
    lp = r["choices"][0]["logprobs"]
    assert set(lp) == {"content", "refusal"} and len(lp["content"]) == 4
    for e in lp["content"]:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}
        assert len(e["top_logprobs"]) == 3 and bytes(e["bytes"]).decode() == e["token"]
        assert set(e["top_logprobs"][0]) == {"token", "logprob", "bytes"}
    assert "".join(e["token"] for e in lp["content"]) == r["choices"][0]["message"]["content"]
    # n chat choices
    r = srv.request("POST", CHAT, _chat(n=3, temperature=1.0))[2]
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    # generation that reaches the context ends with "length"
    r = srv.request("POST", COMP, {"model": "text", "prompt": "x" * 47, "max_tokens": 100})[2]
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 2


SPECIALS = {"<unk>", "<|user|>", "<|assistant|>", "<|end_of_text|>"}


def test_special_tokens_are_not_in_the_text(srv):
    # the barely trained chat model often samples <|assistant|> mid-reply: find a seed that does
    for seed in range(40):
        body = _chat(max_tokens=40, temperature=1.0, seed=seed, n=8, logprobs=True)
        r = srv.request("POST", CHAT, body)[2]
        hit = [c for c in r["choices"]
               if any(e["token"] in SPECIALS for e in c["logprobs"]["content"])]
        if hit:
            break
    else:
        pytest.fail("no seed made the chat model sample a special token")
    for c in r["choices"]:
        entries = c["logprobs"]["content"]
        text = b"".join(bytes(e["bytes"]) for e in entries if e["token"] not in SPECIALS)
        assert c["message"]["content"] == text.decode("utf-8", "replace")
        assert not any(s in c["message"]["content"] for s in SPECIALS)
    # every generated token still counts, special or not
    assert r["usage"]["completion_tokens"] == sum(len(c["logprobs"]["content"])
                                                  for c in r["choices"])
    # streamed: the same text, no special token in any delta
    st, events, done = srv.stream(CHAT, {**body, "stream": True,
                                         "stream_options": {"include_usage": True}})
    assert done and events[-1]["usage"] == r["usage"]
    assert _stream_text(events, 8) == [c["message"]["content"] for c in r["choices"]]
    # /v1/completions too, the prompt being the chat template itself
    prompt = "<|user|>hello 3, how are you?<|assistant|>"
    body = {"model": "chat", "prompt": prompt, "max_tokens": 40, "temperature": 1.0,
            "seed": seed, "n": 8, "logprobs": 0}
    r = srv.request("POST", COMP, body)[2]
    assert any(t in SPECIALS for c in r["choices"] for t in c["logprobs"]["tokens"])
    for c in r["choices"]:
        assert not any(s in c["text"] for s in SPECIALS)
    st, events, done = srv.stream(COMP, {**body, "stream": True})
    assert _stream_text(events, 8) == [c["text"] for c in r["choices"]]


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"model": "chat"}, 400, "messages"),
    ({"model": "chat", "messages": []}, 400, "messages"),
    ({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}, 400,
     "messages[0].role"),
    ({"model": "chat", "messages": [{"role": "user", "content": 5}]}, 400,
     "messages[0].content"),
    ({"model": "chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     400, "messages[0].content[0]"),
    (_chat(temperature="hot"), 400, "temperature"),
    (_chat(temperature=2.5), 400, "temperature"),
    (_chat(max_tokens=0), 400, "max_tokens"),
    (_chat(max_tokens=1.5), 400, "max_tokens"),
    (_chat(top_p=0), 400, "top_p"),
    (_chat(n=9), 400, "n"),
    (_chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (_chat(stream="yes"), 400, "stream"),
    (_chat(stream_options={"include_usage": True}), 400, "stream_options"),
    (_chat(presence_penalty=3), 400, "presence_penalty"),
    (_chat(top_logprobs=2), 400, "top_logprobs"),
    (_chat(logprobs=True, top_logprobs=21), 400, "top_logprobs"),
    (_chat(seed="x"), 400, "seed"),
    (_chat(model="nope"), 404, "model"),
    ({"model": "text", "prompt": 5}, 400, "prompt"),
    ({"model": "text", "prompt": [[1, 99999]]}, 400, "prompt"),
    ({"model": "text", "prompt": "x", "logprobs": 6}, 400, "logprobs"),
])
def test_bad_requests_get_openai_errors(srv, body, status, param):
    path = COMP if isinstance(body, dict) and "prompt" in body else CHAT
    st, h, r = srv.request("POST", path, body)
    assert st == status, r
    assert set(r) == {"error"} and set(r["error"]) == {"message", "type", "param", "code"}
    assert r["error"]["param"] == param and r["error"]["message"]
    assert r["error"]["type"] == "invalid_request_error"
    if param:
        assert param.split(".")[0].split("[")[0] in r["error"]["message"].lower() or \
            st == 404


def test_auth_routes_limits_cors_and_context(srv):
    st, _, r = srv.request("POST", CHAT, _chat(), key=False)
    assert st == 401 and r["error"]["code"] == "invalid_api_key"
    st, _, r = srv.request("GET", "/v1/models", headers={"Authorization": "Bearer nope"},
                           key=False)
    assert st == 401
    assert srv.request("GET", "/health", key=False)[0] == 200  # health and metrics stay open
    st, _, r = srv.request("GET", "/v1/nothing")
    assert st == 404 and r["error"]["type"] == "invalid_request_error"
    st, h, r = srv.request("GET", CHAT)
    assert st == 405 and "POST" in h["allow"]
    st, _, r = srv.request("POST", CHAT, b"x" * (1 << 20 + 1) + b"x")
    assert st == 413 and r["error"]["type"] == "invalid_request_error"
    st, h, _ = srv.request("OPTIONS", CHAT, key=False, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert st == 204 and h["access-control-allow-origin"] == "*"
    assert "POST" in h["access-control-allow-methods"]
    assert h["access-control-allow-headers"] == "authorization,content-type"
    st, h, _ = srv.request("POST", CHAT, _chat(max_tokens=1))
    assert h["access-control-allow-origin"] == "*"
    st, _, r = srv.request("POST", CHAT, _chat(messages=[{"role": "user",
                                                          "content": "hello " * 80}]))
    assert st == 400 and r["error"]["code"] == "context_length_exceeded"
    assert r["error"]["param"] == "messages" and "64" in r["error"]["message"]


def test_health_metrics_and_access_log(srv):
    st, _, h = srv.request("GET", "/health", key=False)
    assert h["status"] == "ok" and "chat" in h["models_loaded"]
    st, hd, raw = srv.request("GET", "/metrics", key=False)
    text = raw.decode()
    assert hd["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("alpha_http_requests_total", "alpha_prompt_tokens_total",
                 "alpha_generated_tokens_total", "alpha_time_to_first_token_seconds_bucket",
                 "alpha_time_per_output_token_seconds_bucket", "alpha_queue_depth",
                 "alpha_batch_size_bucket", "alpha_running_sequences"):
        assert name in text, name
    assert 'alpha_http_requests_total{method="POST",status="400"}' in text
    log = srv.log()
    assert "POST /v1/chat/completions 200" in log and KEY not in log
    assert "Traceback" not in log


def test_32_concurrent_streams_each_equal_to_alone(srv):
    bodies = [{"model": "chat", "messages": [{"role": "user", "content": f"hello {i}"}],
               "max_tokens": 16, "seed": 100 + i, "temperature": 0.9, "stream": True,
               "top_k": 20 if i % 3 == 0 else 0} for i in range(32)]
    alone = [srv.stream(CHAT, b) for b in bodies]
    assert all(st == 200 and done for st, _, done in alone)
    together = [None] * 32

    def run(i):
        together[i] = srv.stream(CHAT, bodies[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert all(r is not None and r[0] == 200 and r[2] for r in together)
    assert [_stream_text(ev) for _, ev, _ in together] == [_stream_text(ev) for _, ev, _ in alone]
    assert "KV cache f16" in srv.log()  # serve's default on the CPU (f32: tests/test_engine.py)


def test_slow_client_holds_up_nobody(srv):
    slow = socket.create_connection(("127.0.0.1", srv.port))
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nCont")
    t0 = time.monotonic()
    assert srv.request("POST", CHAT, _chat(max_tokens=2))[0] == 200
    assert time.monotonic() - t0 < 30
    slow.close()


# ---- a server with one slot: overload, disconnects, SIGTERM -------------------------------------

@pytest.fixture()
def one_slot(outputs):
    s = Server(outputs, "--max-batch", "1", "--max-queue", "8", "--drain-timeout", "60")
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def _metric(srv, name) -> float:
    text = srv.request("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def _start_stream(srv, body):
    """Send a streaming request and read up to its first content chunk; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: %d\r\n\r\n%b" % (len(data), data))
    got = b""
    while b'"text":"' not in got:
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return sock


LONG = {"model": "long", "prompt": "The", "max_tokens": 1000, "temperature": 1.0, "seed": 1,
        "stream": True}


def test_overload_disconnect_and_sigterm(one_slot):
    srv = one_slot
    # a client that leaves mid-stream frees its slot: the next request is served at once
    sock = _start_stream(srv, LONG)
    sock.close()
    t0 = time.monotonic()
    st, _, r = srv.request("POST", COMP, {"model": "long", "prompt": "The", "max_tokens": 3})
    assert st == 200 and r["usage"]["completion_tokens"] == 3
    generated = _metric(srv, "alpha_generated_tokens_total")
    assert generated < 1000, generated  # the abandoned stream did not run to its end
    assert time.monotonic() - t0 < 60
    # 8 choices on one slot (seconds of work whatever the machine), one more request waiting:
    # a request that would take the queue past --max-queue 8 gets 429 with Retry-After
    s1 = _start_stream(srv, {**LONG, "n": 8})
    c2 = srv.conn()
    c2.request("POST", COMP, json.dumps({**LONG, "stream": False, "max_tokens": 5}),
               {"Content-Type": "application/json"})
    deadline = time.monotonic() + 60
    while _metric(srv, "alpha_queue_depth") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    st, h, r = srv.request("POST", COMP, {"model": "long", "prompt": "x", "max_tokens": 2,
                                          "n": 8})
    assert st == 429 and h["retry-after"] == "1" and r["error"]["type"] == "rate_limit_error"
    s1.close()  # its 8 sequences leave; the waiting request runs
    assert c2.getresponse().status == 200
    c2.close()
    # SIGTERM during a stream: the stream finishes, new connections are refused, exit 0
    sock = _start_stream(srv, {**LONG, "max_tokens": 300})
    srv.proc.send_signal(15)
    sock.settimeout(120)
    rest = b""
    while not rest.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, rest[-300:]
        rest += chunk
    assert b"data: [DONE]" in rest and b'"finish_reason":"length"' in rest
    assert srv.proc.wait(60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    assert "shutting down" in srv.log()


def test_sse_parser_is_strict():
    events, done = parse_sse('data: {"a":1}\n\ndata: [DONE]\n\n')
    assert events == [{"a": 1}] and done
    with pytest.raises(AssertionError):
        parse_sse('data: {"a":1}\n\n')[1] or (_ for _ in ()).throw(AssertionError())
    with pytest.raises(AssertionError):
        parse_sse('data: {"a":1}\nid: 3\n\ndata: [DONE]\n\n')
    assert os.path.basename(__file__) == "test_serve.py"


def test_serve_on_helios(outputs):
    """The same server on the Vulkan backend (lavapipe): batched requests give each the text it
    gets alone."""
    import ctypes.util

    from conftest import require_peer

    lvp = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
    require_peer(ctypes.util.find_library("vulkan") is not None and (
        os.path.exists(lvp) or bool(os.environ.get("VK_DRIVER_FILES"))),
        "no Vulkan loader + lavapipe (apt: libvulkan1 mesa-vulkan-drivers)")
    s = Server(outputs, "--model", "text", backend="helios")
    try:
        bodies = [{"model": "text", "prompt": f"The {i}", "max_tokens": 8, "seed": i,
                   "temperature": 0.9, "stream": True} for i in range(4)]
        alone = [_stream_text(s.stream(COMP, b)[1]) for b in bodies]
        together = [None] * 4

        def run(i):
            together[i] = _stream_text(s.stream(COMP, bodies[i])[1])
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        assert together == alone and all(a[0] for a in alone)
        assert "backend helios" in s.log()
    finally:
        assert s.stop() == 0


def test_kv_dtype_f16_serves_and_bad_values_are_one_line(outputs):
    """`--kv-dtype f16` (the 16-bit KV cache, the CPU's default) serves a completion over HTTP
    (greedy: close to the f32 server's text, not asserted equal: fp16 keys may flip a near tie);
    a bad value and f16 on helios are one line on stderr, exit 2."""
    import subprocess
    import sys

    from serve_helpers import ROOT, env

    s = Server(outputs, "--model", "text", "--kv-dtype", "f16")
    try:
        body = {"model": "text", "prompt": "The quick", "max_tokens": 8, "temperature": 0}
        st, _, r = s.request("POST", COMP, body)
        assert st == 200 and r["usage"]["completion_tokens"] == 8
        assert r["choices"][0]["finish_reason"] == "length" and r["choices"][0]["text"]
        st, events, done = s.stream(COMP, {**body, "stream": True})
        assert done and _stream_text(events)[0] == r["choices"][0]["text"]
        assert "KV cache f16" in s.log()
    finally:
        assert s.stop() == 0
    for args, want in ((["--kv-dtype", "f8"], "--kv-dtype 'f8' is not one of auto, f32, f16"),
                       (["--kv-dtype", "f16", "--backend", "helios"], "cpu only")):
        p = subprocess.run([sys.executable, "-m", "alpha", "serve", "--outputs", outputs,
                            "--port", "0", *args], cwd=ROOT, env=env(), capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2 and want in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
