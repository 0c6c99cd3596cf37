"""`python -m alpha <command>`: parses the command line and dispatches to one module per command.

Each command module `alpha/cli/<name>.py` defines `register(subparsers)` (adds its parser) and
`run(args) -> int`. Library errors (`AlphaError`) become one line on stderr and exit code 2;
Ctrl-C becomes exit code 130. Only unexpected bugs show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alpha.core.errors import AlphaError

# A command is listed here once its module alpha/cli/<name>.py exists.
COMMANDS = ["train", "sample", "eval", "tokenizer", "runs", "bench", "doctor", "db", "serve",
            "tui", "spirv", "export", "import", "report", "events"]
MODULES = {"import": "import_"}  # commands whose name is a Python keyword -> their module


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints usage + message, exit 2: keep it short
        self.exit(2, f"{self.prog}: error: {message}\n")


def load_env_file(path: str = ".env.local") -> None:
    """Read KEY=VALUE lines from .env.local (if present) into the environment, without overriding
    variables that are already set. Values are never printed."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().removeprefix("export ").strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if not key or "\0" in key + value:  # not a variable the OS can hold: skip it (qa)
                continue
            os.environ.setdefault(key, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m alpha", description="Alpha: train and serve GPT models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"alpha.cli.{MODULES.get(name, name)}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        load_env_file()
    except (OSError, UnicodeDecodeError) as e:  # a user's file: one line, exit 2 (qa)
        print(f"error: cannot read .env.local: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AlphaError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
