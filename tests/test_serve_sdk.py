"""The official OpenAI Python SDK (test-only peer) against `python -m alpha serve`: models, chat
and completions, streamed and not, usage, logprobs and the SDK's typed errors — the drop-in proof."""

from __future__ import annotations

import pytest

from conftest import require_peer
from serve_helpers import KEY, Server, make_runs

try:
    import openai
except ImportError:  # pragma: no cover - install-test-deps.sh installs it
    openai = None


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    require_peer(openai is not None, "the openai SDK is not installed (pip install openai)")
    out = str(tmp_path_factory.mktemp("sdk") / "outputs")
    make_runs(out)
    s = Server(out, "--model", "chat", key=KEY)
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key=KEY, max_retries=0,
                      timeout=120)
    yield c, s
    c.close()
    assert s.stop() == 0


def test_sdk_models_chat_and_stream(client):
    c, s = client
    assert [m.id for m in c.models.list()] == ["chat", "long", "text"]
    assert c.models.retrieve("chat").owned_by == "alpha"
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello 3, how are you?"}]
    r = c.chat.completions.create(model="chat", messages=msgs, max_tokens=10, seed=7,
                                  temperature=0.8, logprobs=True, top_logprobs=2)
    choice = r.choices[0]
    assert r.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert len(choice.logprobs.content) == r.usage.completion_tokens
    stream = c.chat.completions.create(model="chat", messages=msgs, max_tokens=10, seed=7,
                                       temperature=0.8, stream=True,
                                       stream_options={"include_usage": True})
    text, reasons, usage = "", [], None
    for chunk in stream:
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
        usage = chunk.usage or usage
    assert text == choice.message.content and reasons == [choice.finish_reason]
    assert usage.completion_tokens == r.usage.completion_tokens


def test_sdk_completions_and_errors(client):
    c, s = client
    r = c.completions.create(model="text", prompt=["The quick", "A"], max_tokens=5, n=2,
                             seed=1, logprobs=1)
    assert r.object == "text_completion" and len(r.choices) == 4
    assert all(len(ch.logprobs.tokens) == 5 for ch in r.choices)
    streamed = [""] * 4
    for chunk in c.completions.create(model="text", prompt=["The quick", "A"], max_tokens=5,
                                      n=2, seed=1, stream=True):
        for ch in chunk.choices:
            streamed[ch.index] += ch.text
    assert streamed == [ch.text for ch in r.choices]
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                  temperature=5)
    assert e.value.param == "temperature"
    bad = openai.OpenAI(base_url=str(c.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    bad.close()
