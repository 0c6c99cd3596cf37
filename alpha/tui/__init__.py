"""`python -m alpha tui`: the terminal dashboard.

Pure parts, tested without a terminal: `local` (run folders followed by byte offset, with
alpha.core.jsonl_tail), `remote` (the live stream's client), `model` (what a run is, fed by either),
`charts` (sparklines, braille line charts), `text` (cells and widths), `state` (keys), `views` and
`runview` (screens as text), `sampling` (the Models tab's generator). `app` is the thin curses
layer that paints what `views` renders.
"""
