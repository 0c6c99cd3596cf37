"""`python -m alpha tui`: a live terminal dashboard of training runs (curses, works over SSH).

    python -m alpha tui                          # the runs under ./outputs, followed live
    python -m alpha tui --outputs /data/runs
    python -m alpha tui --remote http://gpu-box:8000   # a server's /api/training/live stream

Tabs: 1 Runs, 2 Run (charts), 3 Logs, 4 Models (Enter samples from a checkpoint); ? lists the keys,
q quits.
"""

from __future__ import annotations

import os
import sys

from alpha.core.errors import ConfigError


def register(sub):
    p = sub.add_parser("tui", help="live terminal dashboard of training runs",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--outputs", metavar="DIR", default="outputs",
                   help="the folder holding run folders (default: outputs)")
    p.add_argument("--remote", metavar="URL", default=None,
                   help="follow a server's live stream instead (http://host:port)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.remote:
        from alpha.tui.remote import RemoteSource

        source = RemoteSource(args.remote)  # checks the URL
    else:
        if not os.path.isdir(args.outputs):
            what = "is not a folder" if os.path.exists(args.outputs) else "does not exist"
            raise ConfigError(f"--outputs {args.outputs} {what}; give the folder that holds "
                              "the run folders")
        from alpha.tui.local import LocalSource

        source = LocalSource(args.outputs)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError("the dashboard needs a terminal (stdin and stdout are not both one); "
                          "use `python -m alpha runs` for a table")
    term = os.environ.get("TERM", "")
    if not term or term == "dumb":
        raise ConfigError(f"the terminal type TERM={term!r} cannot draw a dashboard; "
                          "set TERM (e.g. xterm-256color)")
    from alpha.tui import app

    try:
        return app.run(source)
    except Exception as e:
        import curses

        if isinstance(e, curses.error):
            raise ConfigError(f"the terminal cannot run the dashboard: {e}") from None
        raise
