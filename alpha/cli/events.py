"""`python -m alpha events`: a run's events (start, evals, checkpoints, skipped steps, planning
warnings, the end), one readable line each.

    python -m alpha events --run outputs/<run_id>          # what happened so far
    python -m alpha events --run <run_id> --follow         # and what happens next (Ctrl-C ends)
    python -m alpha events --run <run_id> --kind spike_skip --kind bad_step

Each line: time, step, level, kind, message, e.g.
    2026-12-02T05:24:52Z  step     17  warning  spike_skip  step 17: gradient norm 3.2 > ...
RUN is a run folder or a run id under --outputs (as `sample --run`). The file is read with the
shared tailer (alpha.core.jsonl_tail): a half-written last line waits for its newline.
"""

from __future__ import annotations

import os
import sys
import time

from alpha.core.errors import ConfigError

POLL_S = 0.2  # --follow: how often the file is looked at


def register(sub):
    p = sub.add_parser("events", help="print a run's events (--follow: as they happen)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run folder, or a run id under --outputs")
    p.add_argument("--outputs", metavar="DIR", default="outputs",
                   help="where run ids are looked up (default: outputs)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new events until Ctrl-C")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only events of this kind (repeatable), e.g. spike_skip, eval")
    p.set_defaults(func=run)


def run_folder(run: str, outputs: str) -> str:
    """The run folder for RUN: a folder holding a run, or a run id under `outputs`."""
    for folder in (run, os.path.join(outputs, run)):
        if os.path.isdir(folder) and (os.path.isfile(os.path.join(folder, "config.json"))
                                      or os.path.isfile(os.path.join(folder, "events.jsonl"))):
            return folder
    raise ConfigError(f"no run folder at {run} (nor a run id under {outputs}/); "
                      "see `python -m alpha runs`")


def format_event(row: dict) -> str:
    """One line for an events.jsonl row (tolerates missing or odd fields)."""
    step = row.get("step")
    step_text = f"step {step:>6}" if isinstance(step, int) else "step      ?"
    message = str(row.get("message", "")).replace("\n", " ")
    return (f"{row.get('time', '?'):<20}  {step_text}  {str(row.get('level', '?')):<7}  "
            f"{str(row.get('kind', '?')):<11} {message}")


def run(args) -> int:
    from alpha.core.jsonl_tail import JsonlTail

    folder = run_folder(args.run, args.outputs)
    path = os.path.join(folder, "events.jsonl")
    if not args.follow and not os.path.isfile(path):
        print(f"run {folder} has no events yet", file=sys.stderr)
        return 0
    tail = JsonlTail(path)
    kinds = set(args.kind)
    out = sys.stdout
    try:
        while True:
            chunk = tail.poll()
            while chunk is not None:
                if chunk.restarted:
                    out.write("(events.jsonl was rewritten: from its start again)\n")
                for row in chunk.rows:
                    if not kinds or row.get("kind") in kinds:
                        out.write(format_event(row) + "\n")
                out.flush()
                tail.advance(chunk)
                chunk = tail.poll()
            if not args.follow:
                return 0
            time.sleep(POLL_S)
    except KeyboardInterrupt:  # the way --follow ends: no traceback, no message
        return 0
