"""Text that fits a terminal cell grid: control characters made visible, wide characters (CJK,
most emoji) counted as two columns, and clipping, padding and wrapping by columns, not by
code points. A screen line is a list of (text, style) segments; `Line` helps build them."""

from __future__ import annotations

import unicodedata

_CONTROL = {i: "·" for i in range(32)}
_CONTROL[9] = " "  # a tab becomes one space (columns stay predictable)
_CONTROL[127] = "·"


def clean(text: str) -> str:
    """Printable text: control characters (including newlines) become `·`."""
    return str(text).translate(_CONTROL)


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(char_width(c) for c in text)


def clip(text: str, cols: int) -> str:
    """The longest prefix of `text` that fits in `cols` columns."""
    if cols <= 0:
        return ""
    if text.isascii():
        return text[:cols]
    used = 0
    for i, c in enumerate(text):
        w = char_width(c)
        if used + w > cols:
            return text[:i]
        used += w
    return text


def fit(text: str, cols: int, right: bool = False) -> str:
    """Clipped and padded to exactly `cols` columns."""
    text = clip(text, cols)
    pad = " " * (cols - width(text))
    return pad + text if right else text + pad


def middle(text: str, cols: int, mark: str = "…") -> str:
    """Shortened in the middle with `…` when too long (run ids keep their start and end)."""
    if width(text) <= cols:
        return text
    if cols <= 1:
        return clip(text, cols)
    head = (cols - 1) // 2
    tail = cols - 1 - head
    return text[:head] + mark + (text[-tail:] if tail else "")


def left_cut(text: str, cols: int, mark: str = "…") -> str:
    """The end of `text` behind `…` when too long (a run id's end tells runs apart: its domain
    and random suffix)."""
    if width(text) <= cols:
        return text
    if cols <= 1:
        return clip(text, cols)
    return mark + text[len(text) - (cols - 1):]


def wrap(text: str, cols: int) -> list[str]:
    """Hard-wrapped lines of `text` (newlines kept as line breaks)."""
    out = []
    for para in str(text).split("\n"):
        para = clean(para)
        if not para:
            out.append("")
        while para:
            piece = clip(para, cols) or para[:1]
            out.append(piece)
            para = para[len(piece):]
    return out


class Line:
    """Segments of one screen row: `Line().add("run", "bold").add(" ok")`; `pad` fits it to a
    width."""

    def __init__(self, text: str = "", style: str = ""):
        self.segments: list[tuple[str, str]] = []
        if text:
            self.add(text, style)

    def add(self, text: str, style: str = "") -> "Line":
        if text:
            self.segments.append((clean(text), style))
        return self

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)

    def fitted(self, cols: int) -> "Line":
        out, used = Line(), 0
        for text, style in self.segments:
            piece = clip(text, cols - used)
            if piece:
                out.segments.append((piece, style))
                used += width(piece)
            if used >= cols:
                break
        if used < cols:
            out.segments.append((" " * (cols - used), ""))
        return out
