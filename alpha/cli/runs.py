"""`python -m alpha runs`: a table of the training runs under outputs/ (read from their folders).

Columns: run id, domain, model shape, steps done / planned, last loss, best validation loss,
checkpoints, status (the last lifecycle event: completed, stopped (an `interrupted` event:
Ctrl-C/SIGTERM), diverged; running when the run's metrics are still being written and nothing
ended it).
"""

from __future__ import annotations

import json
import os
import sys
import time

from alpha.core.errors import AlphaError, DataError


def register(sub):
    p = sub.add_parser("runs", help="list training runs in outputs/",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="outputs", help="folder holding the runs (default outputs)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead")
    p.set_defaults(func=run)


def _last_line(path: str) -> dict:
    """The last complete JSON object line of a file, reading only its tail ({} when none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            return row
    return {}


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def summarize(path: str) -> dict:
    """One row of the table from a run folder. Fields a log line holds with the wrong type show
    as unknown; a config.json that is not a JSON object raises DataError."""
    from alpha.core.files import read_json
    from alpha.train import checkpoint as ckpt_format
    from alpha.train.runfolder import read_jsonl

    cfg = read_json(os.path.join(path, "config.json"), "run config")
    if not isinstance(cfg, dict):
        raise DataError(f"run config {path}/config.json is not a JSON object")
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    last = _last_line(os.path.join(path, "metrics.jsonl"))
    status, best = "running", None
    for ev in read_jsonl(os.path.join(path, "events.jsonl")):
        kind = ev.get("kind")
        if kind in ("completed", "interrupted", "diverged"):
            status = "stopped" if kind == "interrupted" else kind  # the word the database uses
        elif kind in ("start", "resume"):
            status = "running"
        if kind == "eval" and isinstance(ev.get("payload"), dict):
            v = _number(ev["payload"].get("val_loss"))
            if v is not None and (best is None or v < best):
                best = v
    metrics_path = os.path.join(path, "metrics.jsonl")
    if status == "running" and os.path.isfile(metrics_path):
        if time.time() - os.path.getmtime(metrics_path) > 600:
            status = "stale"
    return {
        "run_id": str(cfg.get("run_id") or os.path.basename(path)),
        "domain": str(cfg.get("domain", "?")),
        "model": f"{model.get('n_layer')}L {model.get('n_head')}H {model.get('n_embd')}d "
                 f"T{model.get('block_size')} V{model.get('vocab_size')}",
        "step": _count(last.get("step")) or 0,
        "iters": _count(train.get("iters")),
        "loss": _number(last.get("loss")),
        "best_val_loss": best,
        "checkpoints": len(ckpt_format.list_steps(os.path.join(path, "checkpoints"))),
        "status": status,
        "path": path,
    }


def run(args) -> int:
    from alpha.train.runfolder import list_runs

    if os.path.exists(args.root) and not os.path.isdir(args.root):  # a user mistake (qa)
        raise DataError(f"--root {args.root} is a file; give the folder that holds the runs")
    rows = []
    for path in list_runs(args.root):
        try:
            rows.append(summarize(path))
        except AlphaError as e:  # one unreadable run does not hide the others
            print(f"warning: skipped {path}: {e}", file=sys.stderr)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    if not rows:
        print(f"no runs in {args.root}/ yet: start one with `python -m alpha train`")
        return 0
    head = ("run", "domain", "model", "steps", "loss", "best val", "ckpts", "status")
    table = [head]
    for r in rows:
        table.append((
            r["run_id"], r["domain"], r["model"], f"{r['step']}/{r['iters']}",
            f"{r['loss']:.4f}" if isinstance(r["loss"], (int, float)) else "-",
            f"{r['best_val_loss']:.4f}" if r["best_val_loss"] is not None else "-",
            str(r["checkpoints"]), r["status"],
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
