"""`python -m alpha runs`: a table of the training runs under outputs/ (read from their folders).

Columns: run id, domain, model shape, steps done / planned, last loss, best validation loss,
checkpoints, status (the last lifecycle event: completed, interrupted, diverged; running when the
run's metrics are still being written and nothing ended it).
"""

from __future__ import annotations

import json
import os
import time


def register(sub):
    p = sub.add_parser("runs", help="list training runs in outputs/",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="outputs", help="folder holding the runs (default outputs)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead")
    p.set_defaults(func=run)


def _last_line(path: str) -> dict | None:
    """The last complete JSON line of a file, reading only its tail."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return None


def summarize(path: str) -> dict:
    from alpha.train.runfolder import read_jsonl

    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    model, train = cfg.get("model", {}), cfg.get("train", {})
    last = _last_line(os.path.join(path, "metrics.jsonl")) or {}
    status, best = "running", None
    for ev in read_jsonl(os.path.join(path, "events.jsonl")):
        kind = ev.get("kind")
        if kind in ("completed", "interrupted", "diverged"):
            status = kind
        elif kind in ("start", "resume"):
            status = "running"
        if kind == "eval":
            v = (ev.get("payload") or {}).get("val_loss")
            if v is not None and (best is None or v < best):
                best = v
    metrics_path = os.path.join(path, "metrics.jsonl")
    if status == "running" and os.path.isfile(metrics_path):
        if time.time() - os.path.getmtime(metrics_path) > 600:
            status = "stale"
    ckdir = os.path.join(path, "checkpoints")
    n_ckpt = len([n for n in os.listdir(ckdir) if n.endswith(".ckpt")]) if os.path.isdir(ckdir) \
        else 0
    return {
        "run_id": cfg.get("run_id", os.path.basename(path)),
        "domain": cfg.get("domain", "?"),
        "model": f"{model.get('n_layer')}L {model.get('n_head')}H {model.get('n_embd')}d "
                 f"T{model.get('block_size')} V{model.get('vocab_size')}",
        "step": last.get("step", 0),
        "iters": train.get("iters"),
        "loss": last.get("loss"),
        "best_val_loss": best,
        "checkpoints": n_ckpt,
        "status": status,
        "path": path,
    }


def run(args) -> int:
    from alpha.train.runfolder import list_runs

    rows = []
    for path in list_runs(args.root):
        try:
            rows.append(summarize(path))
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
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
