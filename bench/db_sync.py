"""Benchmark: import a synthetic run of 100 000 metric rows with `sync_from_disk`.

    python bench/db_sync.py [--rows 100000]

Targets: into a real `sqld` on loopback (Hrana over HTTP) <= 10 s; into the SQLite file <= 2 s.
Needs sqld (tools/install-test-deps.sh puts it in .tools/, or set $SQLD_BIN) for the HTTP leg.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from alpha.db.sqlite_store import SqliteStore  # noqa: E402
from alpha.db.sync import sync_from_disk  # noqa: E402
from alpha.db.turso_store import TursoStore  # noqa: E402

TARGET_SQLD_S = 10.0
TARGET_SQLITE_S = 2.0


def write_run(outputs: str, rows: int, run_id: str = "bench-run") -> str:
    """A run folder shaped like the trainer's, with `rows` metric lines."""
    path = os.path.join(outputs, run_id)
    os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    config = {"run_id": run_id, "config_hash": "0123456789abcdef", "tokenizer": "char",
              "domain": "text", "model": {"n_layer": 4, "n_head": 4, "n_embd": 128},
              "train": {"iters": rows, "lr": 1e-3}, "sample": {},
              "info": {"host": "bench", "pid": 1, "param_count": 800_000}}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    rng = random.Random(0)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for step in range(1, rows + 1):
            row = {"step": step, "loss": 4.0 * math.exp(-step / rows) + rng.random() * 0.1,
                   "lr": 1e-3, "grad_norm": rng.random(), "clip_coef": 1.0,
                   "tokens_per_sec": 15000.0 + rng.random(), "ms_per_iter": 130.0 + rng.random(),
                   "elapsed_s": step * 0.13, "timing_fwd_ms": 50.0, "timing_bwd_ms": 70.0,
                   "timing_optim_ms": 8.0, "timing_data_ms": 1.0}
            if step % 250 == 0:
                row["val_loss"] = row["loss"] + 0.05
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        f.write(json.dumps({"step": 0, "level": "info", "kind": "start", "message": "started",
                            "payload": {}, "time": "2026-11-27T14:00:00Z"}) + "\n")
        f.write(json.dumps({"step": rows, "level": "info", "kind": "completed",
                            "message": "done", "payload": {}, "time": "2026-11-27T18:00:00Z"})
                + "\n")
    return path


def timed_sync(store, outputs: str, rows: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one full sync."""
    store.migrate()
    t0, c0 = time.perf_counter(), time.process_time()
    report = sync_from_disk(store, outputs)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    got = store.query("SELECT count(*) FROM metrics")[0][0]
    if report.metrics != rows or got != rows:
        raise SystemExit(f"expected {rows} metric rows, imported {report.metrics}, stored {got}")
    return dt, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from sqld_server import SqldServer, find_sqld

    with tempfile.TemporaryDirectory() as tmp:
        outputs = os.path.join(tmp, "outputs")
        write_run(outputs, args.rows)
        with SqliteStore(os.path.join(tmp, "bench.db")) as store:
            t_sqlite, cpu = timed_sync(store, outputs, args.rows)
        verdict = "ok" if t_sqlite <= TARGET_SQLITE_S else "SLOW"
        print(f"sqlite file      {args.rows:>7} rows  {t_sqlite:6.2f} s   "
              f"(target <= {TARGET_SQLITE_S:.0f} s)  {verdict}"
              f"  {args.rows / t_sqlite:,.0f} rows/s, client CPU {cpu:.2f} s")
        if not find_sqld():
            print("sqld (HTTP)      skipped: sqld not found (tools/install-test-deps.sh)")
            return 0
        with SqldServer(os.path.join(tmp, "sqld")) as server:
            store = TursoStore(server.url)
            try:
                t_sqld, cpu = timed_sync(store, outputs, args.rows)
                requests = store.client.requests_sent
            finally:
                store.close()
        print(f"sqld over HTTP   {args.rows:>7} rows  {t_sqld:6.2f} s   "
              f"(target <= {TARGET_SQLD_S:.0f} s)  {'ok' if t_sqld <= TARGET_SQLD_S else 'SLOW'}"
              f"  {args.rows / t_sqld:,.0f} rows/s, {requests} HTTP requests, "
              f"client CPU {cpu:.2f} s")
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall times "
              "grow with other work on this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
