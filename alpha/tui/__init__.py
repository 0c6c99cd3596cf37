"""`python -m alpha tui`: the terminal dashboard.

Pure parts, tested without a terminal: `tail` (following files by byte offset), `model` (what a
run is, fed by run-folder rows or live-stream events), `charts` (sparklines, braille line charts),
`text` (cells and widths), `state` (keys), `views` and `runview` (screens as text), `remote` (the
server-sent-events client), `local` (run folders), `sampling` (the Models tab's generator).
`app` is the thin curses layer that paints what `views` renders.
"""
