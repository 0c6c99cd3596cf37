"""Text around the engine's token ids: the chat template, incremental detokenization with stop
strings, and a token's bytes for logprobs.

Chat template. A model whose tokenizer has the chat domain's tokens gets

    [system text]<|user|>{user}<|assistant|>{assistant}<|end_of_text|><|user|>...<|assistant|>

(system and developer messages come first, as plain text); generation stops at <|end_of_text|>
or <|user|>. Any other model gets the plain-text template

    [system text\\n\\n]User: {user}\\nAssistant: {assistant}\\nUser: ...\\nAssistant:

and stops at the string "\\nUser:" (as well as at <|end_of_text|> when it has that token).
"""

from __future__ import annotations

from alpha.core.domains import ASSISTANT, END_OF_TEXT, USER

PLAIN_STOP = "\nUser:"


def render_chat(messages: list[tuple[str, str]], chat_tokens: bool) -> str:
    """The prompt for [(role, text)] (roles system | user | assistant), ready for the reply."""
    system = "\n".join(text for role, text in messages if role == "system")
    turns = [(role, text) for role, text in messages if role != "system"]
    if chat_tokens:
        out = [system]
        for role, text in turns:
            out.append(f"{USER}{text}" if role == "user" else f"{ASSISTANT}{text}{END_OF_TEXT}")
        out.append(ASSISTANT)
        return "".join(out)
    out = [system + "\n\n"] if system else []
    for role, text in turns:
        out.append(f"User: {text}\n" if role == "user" else f"Assistant: {text}\n")
    out.append("Assistant:")
    return "".join(out)


def token_bytes(tokenizer, i: int) -> bytes:
    fn = getattr(tokenizer, "token_bytes", None)
    if fn is not None:
        try:
            return fn(i)
        except (KeyError, IndexError, ValueError):
            pass
    return tokenizer.decode([i]).encode("utf-8")


class TextStream:
    """Token ids in, text out as soon as it is final: a character cut in the middle of its UTF-8
    bytes, or text that may be the start of a stop string, is held back until the next token
    decides it. Special tokens (`<|assistant|>`, `<unk>`...) add no text, as in vLLM and
    llama-server. `add` returns (new text, stopped); `finish` returns the rest."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already returned
        self.text = ""
        self.stopped = False
        self.special = set(getattr(tokenizer, "special_by_id", ()))
        # ids[:done] decode to `done_text`, ending on a whole character: every tokenizer here
        # decodes by concatenation (of strings, or of bytes then UTF-8), so the text of all ids is
        # done_text + the decoded rest, and a token costs a decode of the last few ids, not of
        # all of them (which made a stream's text quadratic in its length)
        self.done = 0
        self.done_text = ""

    def add(self, token_id: int) -> tuple[str, bool]:
        if token_id in self.special:
            return "", False
        self.ids.append(token_id)
        rest = self.tokenizer.decode(self.ids[self.done:])
        full = self.done_text + rest
        if not rest.endswith("\ufffd"):
            self.done, self.done_text = len(self.ids), full
        for s in self.stops:
            at = full.find(s, max(0, self.sent - len(s) + 1))
            if at >= 0:
                self.text = full[:at]
                self.stopped = True
                delta = self.text[self.sent:]
                self.sent = len(self.text)
                return delta, True
        self.text = full
        end = len(full)
        while end > self.sent and full[end - 1] == "\ufffd":  # maybe an unfinished character
            end -= 1
        hold = 0
        for s in self.stops:  # the longest tail of the text that starts a stop string
            for k in range(min(len(s) - 1, end - self.sent), hold, -1):
                if full[end - k:end] == s[:k]:
                    hold = k
                    break
        end -= hold
        delta = full[self.sent:end]
        self.sent = end
        return delta, False

    def finish(self) -> str:
        delta = self.text[self.sent:]
        self.sent = len(self.text)
        return delta
