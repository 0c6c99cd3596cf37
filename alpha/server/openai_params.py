"""Reading an OpenAI request body: every field's type and range checked, a 400 that names the field
otherwise, unknown fields ignored (clients send extras). What comes out is a `Params`."""

from __future__ import annotations

from dataclasses import dataclass, field

from alpha.server.http import HTTPError

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class Params:
    model: str
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # None: off; k: the sampled token's and the top k
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    messages: list[tuple[str, str]] | None = None  # chat
    prompts: list | None = None  # completions: [str | list[int]]


def _bad(param: str, message: str) -> HTTPError:
    return HTTPError(400, message, param=param, code="invalid_value")


def _number(body: dict, name: str, default, lo: float, hi: float, *, integer: bool = False):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not
                                                                   isinstance(v, int)):
        kind = "an integer" if integer else "a number"
        raise HTTPError(400, f"'{name}' must be {kind}, got {type(v).__name__}", param=name,
                        code="invalid_type")
    if v != v or not lo <= v <= hi:
        raise _bad(name, f"'{name}' must be between {lo:g} and {hi:g}, got {v}")
    return v


def _flag(body: dict, name: str) -> bool:
    v = body.get(name)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise HTTPError(400, f"'{name}' must be a boolean, got {type(v).__name__}", param=name,
                        code="invalid_type")
    return v


def _common(body) -> Params:
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise HTTPError(400, "you must provide a model parameter", param="model",
                        code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "'model' must be a non-empty string", param="model",
                        code="invalid_type")
    p = Params(model=model)
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            p.max_tokens = _number(body, name, None, 1, 1 << 31, integer=True)
            break
    p.temperature = float(_number(body, "temperature", 1.0, 0.0, 2.0))
    p.top_p = float(_number(body, "top_p", 1.0, 0.0, 1.0))
    if p.top_p == 0.0:
        raise _bad("top_p", "'top_p' must be greater than 0")
    p.top_k = _number(body, "top_k", 0, -1, 1 << 31, integer=True)
    p.top_k = max(0, p.top_k)  # -1 means off (vLLM's convention)
    p.seed = _number(body, "seed", None, -(1 << 63), (1 << 64) - 1, integer=True)
    if p.seed is not None:
        p.seed %= 1 << 64
    p.n = _number(body, "n", 1, 1, 8, integer=True)
    p.presence_penalty = float(_number(body, "presence_penalty", 0.0, -2.0, 2.0))
    p.frequency_penalty = float(_number(body, "frequency_penalty", 0.0, -2.0, 2.0))
    stop = body.get("stop")
    if isinstance(stop, str):
        p.stop = [stop]
    elif isinstance(stop, list):
        if len(stop) > 4 or not all(isinstance(s, str) for s in stop):
            raise _bad("stop", "'stop' must be a string or a list of up to 4 strings")
        p.stop = list(stop)
    elif stop is not None:
        raise HTTPError(400, "'stop' must be a string or a list of up to 4 strings",
                        param="stop", code="invalid_type")
    p.stream = _flag(body, "stream")
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise HTTPError(400, "'stream_options' must be an object", param="stream_options",
                            code="invalid_type")
        if not p.stream:
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true")
        v = opts.get("include_usage")
        if v is not None and not isinstance(v, bool):
            raise HTTPError(400, "'stream_options.include_usage' must be a boolean",
                            param="stream_options.include_usage", code="invalid_type")
        p.include_usage = bool(v)
    return p


def _text(content, where: str) -> str:
    """A message's content: a string, or an array of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise _bad(f"{where}.content[{i}]", f"{where}.content[{i}] must be a text part "
                           "{\"type\": \"text\", \"text\": ...} (only text is supported)")
            out.append(part["text"])
        return "".join(out)
    raise HTTPError(400, f"{where}.content must be a string or an array of text parts",
                    param=f"{where}.content", code="invalid_type")


def chat_params(body) -> Params:
    p = _common(body)
    messages = body.get("messages")
    if messages is None:
        raise HTTPError(400, "you must provide a messages parameter", param="messages",
                        code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty array")
    p.messages = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise HTTPError(400, f"{where} must be an object", param=where, code="invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise _bad(f"{where}.role", f"{where}.role must be one of system, developer, user, "
                       f"assistant; got {role!r}")
        content = m.get("content")
        if content is None and role == "assistant":
            content = ""
        p.messages.append((ROLES[role], _text(content, where)))
    if _flag(body, "logprobs"):
        p.logprobs = _number(body, "top_logprobs", 0, 0, 20, integer=True)
    elif body.get("top_logprobs") is not None:
        raise _bad("top_logprobs", "'top_logprobs' needs 'logprobs': true")
    return p


def completion_params(body) -> Params:
    p = _common(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise HTTPError(400, "you must provide a prompt parameter", param="prompt",
                        code="missing_required_parameter")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(x, str) for x in prompt):
        prompts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(x, int) and
                                                     not isinstance(x, bool) for x in prompt):
        prompts = [list(prompt)]
    elif isinstance(prompt, list) and prompt and all(
            isinstance(r, list) and r and all(isinstance(x, int) and not isinstance(x, bool)
                                              for x in r) for r in prompt):
        prompts = [list(r) for r in prompt]
    else:
        raise HTTPError(400, "'prompt' must be a string, an array of strings, an array of token "
                        "ids or an array of arrays of token ids", param="prompt",
                        code="invalid_type")
    if len(prompts) * p.n > 64:
        raise _bad("prompt", f"{len(prompts)} prompts x n={p.n} is more than 64 choices")
    p.prompts = prompts
    p.logprobs = _number(body, "logprobs", None, 0, 5, integer=True)
    return p
