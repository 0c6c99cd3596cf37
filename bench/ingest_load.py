"""Benchmark: what `POST /api/ingest` sustains, and how fast the live stream fans out.

    python bench/ingest_load.py [--rows 200000] [--batch 5000] [--subscribers 50]

1. Ingest: metric rows/s posted over HTTP to `python -m alpha serve` (a subprocess, keep-alive,
   one client), into SQLite and into a real sqld (when available). Reference, measured in the same
   run: the same rows written straight into the same kind of Store (no HTTP, no JSON) — the
   database's own ceiling — so the ratio is what the HTTP + JSON layer costs.
   Target: >= 50,000 rows/s into SQLite.
2. Fan-out: N SSE subscribers on /api/training/live; one metric is posted and the time until every
   subscriber has it is measured (20 rounds). Reference: the same with 1 subscriber.
   Target: every subscriber within 1 s at 50 subscribers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from alpha.db import rows as R  # noqa: E402

SECRET = "bench-secret"
TARGET_ROWS_S = 50_000
TARGET_FANOUT_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_rows(start: int, n: int, rng: random.Random) -> list[dict]:
    out = []
    for step in range(start, start + n):
        out.append({"step": step, "loss": 4.0 * math.exp(-step / 1e5) + rng.random() * 0.1,
                    "lr": 1e-3, "grad_norm": rng.random(), "clip_coef": 1.0,
                    "tokens_per_sec": 15000.0 + rng.random(), "ms_per_iter": 130.0,
                    "elapsed_s": step * 0.13, "timing_fwd_ms": 50.0, "timing_bwd_ms": 70.0,
                    "timing_optim_ms": 8.0, "timing_data_ms": 1.0})
    return out


class Serve:
    def __init__(self, outputs: str, extra_env: dict | None = None):
        self.port = free_port()
        env = {**os.environ, "UPLOAD_SECRET": SECRET, **(extra_env or {})}
        if not extra_env or "TURSO_DATABASE_URL" not in extra_env:
            env.pop("TURSO_DATABASE_URL", None)
        self.log = open(os.path.join(outputs, "..", f"serve-{self.port}.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "alpha", "serve", "--port",
                                      str(self.port), "--outputs", outputs], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def post(conn, body: bytes) -> None:
    conn.request("POST", "/api/ingest", body, {"Authorization": f"Bearer {SECRET}",
                                               "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"ingest answered {r.status}: {data[:200]!r}")


def ingest_rate(port: int, rows: int, batch: int, run_id: str) -> float:
    rng = random.Random(0)
    bodies = [json.dumps([{"type": "metrics", "run_id": run_id,
                           "rows": metric_rows(s, min(batch, rows - s + 1), rng)}]).encode()
              for s in range(1, rows + 1, batch)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    post(conn, json.dumps({"type": "run_start", "run_id": run_id}).encode())
    t0 = time.perf_counter()
    for body in bodies:
        post(conn, body)
    dt = time.perf_counter() - t0
    conn.close()
    return rows / dt


def store_rate(store, rows: int, batch: int, run_id: str) -> float:
    """The reference: the same rows written straight into the Store, batch by batch."""
    rng = random.Random(0)
    store.migrate()
    store.transaction([R.run_upsert(run_id, {}, {})])
    batches = [[R.metric_values(r) for r in metric_rows(s, min(batch, rows - s + 1), rng)]
               for s in range(1, rows + 1, batch)]
    t0 = time.perf_counter()
    for values in batches:
        store.transaction(R.metrics_upserts(run_id, values) + [R.run_progress(run_id)])
    return rows / (time.perf_counter() - t0)


class Subscriber(threading.Thread):
    """Reads /api/training/live and notes when each metrics event arrived (by its step)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", "/api/training/live")
        r = conn.getresponse()
        event = None
        while True:
            line = r.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
                if event == "snapshot":
                    self.ready.set()
            elif line.startswith("data: ") and event == "metrics":
                for row in json.loads(line[6:])["rows"]:
                    self.seen[row["step"]] = time.perf_counter()


def fanout(port: int, subscribers: int, rounds: int, run_id: str, step0: int) -> list[float]:
    subs = [Subscriber(port) for _ in range(subscribers)]
    for s in subs:
        s.start()
    for s in subs:
        s.ready.wait(30)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    worst = []
    for i in range(rounds):
        step = step0 + i
        t0 = time.perf_counter()
        post(conn, json.dumps({"type": "metrics", "run_id": run_id,
                               "rows": [{"step": step, "loss": 1.0}]}).encode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(step in s.seen for s in subs):
            time.sleep(0.002)
        worst.append(max(s.seen.get(step, float("inf")) for s in subs) - t0)
    conn.close()
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    tmp = tempfile.mkdtemp(prefix="alpha-ingest-")

    # 1a. SQLite
    from alpha.db.sqlite_store import SqliteStore

    ref = store_rate(SqliteStore(os.path.join(tmp, "ref.db")), args.rows, args.batch, "ref")
    outputs = os.path.join(tmp, "outputs")
    os.makedirs(outputs)
    server = Serve(outputs)
    try:
        rate = ingest_rate(server.port, args.rows, args.batch, "bench-sqlite")
        print(f"ingest -> SQLite: {rate:,.0f} rows/s over HTTP; the Store alone {ref:,.0f} "
              f"rows/s (ratio {rate / ref:.2f}); target >= {TARGET_ROWS_S:,} rows/s: "
              f"{'met' if rate >= TARGET_ROWS_S else 'NOT met'}")

        # 2. fan-out (SQLite server)
        one = fanout(server.port, 1, args.rounds, "bench-sqlite", 10_000_000)
        many = fanout(server.port, args.subscribers, args.rounds, "bench-sqlite", 20_000_000)
        print(f"fan-out: {args.subscribers} subscribers all had the metric after median "
              f"{statistics.median(many) * 1000:.1f} ms, worst {max(many) * 1000:.1f} ms; "
              f"1 subscriber: median {statistics.median(one) * 1000:.1f} ms (ratio "
              f"{statistics.median(many) / statistics.median(one):.1f}x); target every "
              f"subscriber within {TARGET_FANOUT_S:g} s: "
              f"{'met' if max(many) <= TARGET_FANOUT_S else 'NOT met'}")
    finally:
        server.stop()

    # 1b. sqld
    try:
        from sqld_server import SqldServer, find_sqld
    except ImportError:
        find_sqld = lambda: None  # noqa: E731
    if not find_sqld():
        print("ingest -> sqld: skipped (no sqld: run tools/install-test-deps.sh or set SQLD_BIN)")
        return 0
    from alpha.db.turso_store import TursoStore

    with SqldServer(os.path.join(tmp, "sqld-ref")).start() as ref_sqld:
        sref = store_rate(TursoStore(ref_sqld.url, None), args.rows // 4, args.batch, "ref")
    with SqldServer(os.path.join(tmp, "sqld")).start() as sqld:
        outputs2 = os.path.join(tmp, "outputs2")
        os.makedirs(outputs2)
        server = Serve(outputs2, {"TURSO_DATABASE_URL": sqld.url})
        try:
            rate = ingest_rate(server.port, args.rows // 4, args.batch, "bench-sqld")
        finally:
            server.stop()
    print(f"ingest -> sqld: {rate:,.0f} rows/s over HTTP; the Store alone {sref:,.0f} rows/s "
          f"(ratio {rate / sref:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
