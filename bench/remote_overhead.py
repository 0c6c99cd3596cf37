"""Benchmark: what remote reporting costs training.

    python bench/remote_overhead.py [--iters 200] [--repeats 3]

Trains the same small model with reporting off (the reference, measured in this run) and on,
against a server that is up (`python -m alpha serve`), down (nothing listening) and failing (every
request answered 500), interleaved `--repeats` times in rotating order; prints the median tokens/s
of each and its ratio to the reference. Target: >= 0.98 in all three cases. The server runs on
this machine, so in the "up" case its own work competes with training for the same cores.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ingest_load import SECRET, Serve, free_port  # noqa: E402

MODEL = ["--layers", "2", "--heads", "4", "--dim", "64", "--block", "64", "--batch", "8",
         "--eval-interval", "100", "--eval-iters", "2", "--sample-interval", "100",
         "--checkpoint-interval", "100", "--warmup", "5", "--quiet"]
TARGET = 0.98


class Failing(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST

    def log_message(self, *args):
        pass


def train_tok_s(data: str, iters: int, env: dict, tmp: str) -> float:
    run_dir = tempfile.mkdtemp(dir=tmp)
    shutil.rmtree(run_dir)
    r = subprocess.run([sys.executable, "-m", "alpha", "train", "--data", data, *MODEL,
                        "--iters", str(iters), "--run-dir", run_dir], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    rows = rows[len(rows) // 10:]  # past the first steps (warm-up of caches and threads)
    return statistics.mean(r["tokens_per_sec"] for r in rows)


def reporter_cpu(url: str | None, tmp: str, seconds: float, rate: int) -> float:
    """CPU seconds this process spends while a run folder gets `rate` metric lines a second for
    `seconds`, with a reporter following it (url) or none (None: the reference)."""
    from alpha.train.remote import RemoteReporter

    run_dir = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"run_id": os.path.basename(run_dir), "domain": "text"}, f)
    rep = RemoteReporter(run_dir, url, SECRET) if url else None
    if rep:
        rep.start()
    t0 = time.process_time()
    start = time.perf_counter()
    step = 0
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        while time.perf_counter() - start < seconds:
            for _ in range(rate // 20):
                step += 1
                f.write(json.dumps({"step": step, "loss": 2.0, "lr": 1e-3, "grad_norm": 1.0,
                                    "tokens_per_sec": 1e4, "ms_per_iter": 5.0}) + "\n")
                f.flush()
            time.sleep(0.05)
    cpu = time.process_time() - t0
    if rep:
        rep.close(timeout=0.2)
    return cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    tmp = tempfile.mkdtemp(prefix="alpha-remote-")
    data = os.path.join(tmp, "data.txt")
    with open(os.__file__, encoding="utf-8") as f:
        text = f.read()
    with open(data, "w", encoding="utf-8") as f:
        f.write(text)
    outputs = os.path.join(tmp, "server-outputs")
    os.makedirs(outputs)
    server = Serve(outputs)
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    base = {k: v for k, v in os.environ.items()
            if k not in ("ALPHA_REMOTE_URL", "ALPHA_WEBHOOK_URL", "TURSO_DATABASE_URL")}
    on = {**base, "ALPHA_REMOTE_SECRET": SECRET}
    cases = {
        "off": base,
        "server up": {**on, "ALPHA_REMOTE_URL": f"http://127.0.0.1:{server.port}"},
        "server down": {**on, "ALPHA_REMOTE_URL": f"http://127.0.0.1:{free_port()}"},
        "server 500": {**on, "ALPHA_REMOTE_URL": f"http://127.0.0.1:{failing.server_port}"},
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    try:
        # 1. the reporter's own CPU use (deterministic, unlike tok/s on a shared machine)
        seconds, rate = 8.0, 200
        base_cpu = reporter_cpu(None, tmp, seconds, rate)
        for name in ("server up", "server down", "server 500"):
            cpu = reporter_cpu(cases[name]["ALPHA_REMOTE_URL"], tmp, seconds, rate)
            print(f"reporter CPU, {name}: {1000 * (cpu - base_cpu) / seconds:.1f} ms per second "
                  f"({100 * (cpu - base_cpu) / seconds:.2f}% of one core; {rate} metric "
                  f"lines/s; the writing alone {1000 * base_cpu / seconds:.1f} ms/s)")
        # 2. training tok/s
        order = list(cases)
        for i in range(args.repeats):  # a different order each round: drift hits every case
            for name in order[i % len(order):] + order[:i % len(order)]:
                results[name].append(train_tok_s(data, args.iters, cases[name], tmp))
    finally:
        server.stop()
        failing.shutdown()
    ref = statistics.median(results["off"])
    spread = ", ".join(f"{v:,.0f}" for v in results["off"])
    print(f"reporting off (reference): {ref:,.0f} tok/s (median of {args.repeats}: {spread})")
    for name in ("server up", "server down", "server 500"):
        v = statistics.median(results[name])
        spread = ", ".join(f"{x:,.0f}" for x in results[name])
        print(f"reporting on, {name}: {v:,.0f} tok/s ({spread}), ratio {v / ref:.3f} "
              f"({'met' if v / ref >= TARGET else 'NOT met'}: target >= {TARGET})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
