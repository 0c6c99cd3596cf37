"""Load on `python -m alpha serve`: 1, 8 and 32 concurrent streaming clients on config B, beside
`python -m alpha sample` (the same checkpoint, batch 1) measured in the same run.

    python bench/serve_load.py                 # 1, 8, 32 streams; a table and the ratios
    python bench/serve_load.py --tokens 64 --streams 1,32
    python bench/serve_load.py --profile       # and where the engine's time went, per wave
    python bench/serve_load.py --kv-dtype f32  # the server with an f32 KV cache
    python bench/serve_load.py --against /tmp/base --against-kv-dtype f16   # A/B vs a checkout

Config B: 6 layers, 6 heads, 384 wide, block 256, byte-level BPE with 4096 tokens (merges made up,
no special tokens, so every stream runs to max_tokens), GPT-2 init weights (speed does not depend
on training). Each client streams /v1/completions with its own seed; per wave the table gives time
to first token (p50, p99), per-stream decode tokens/s (after the first token), aggregate tokens/s
(all tokens / the wave's wall time) and failed requests. Every wave and `alpha sample` run
`--repeat` times, interleaved, and the best throughput of each is kept (the worst TTFT, every
failure): on a machine shared with other jobs a run is only ever slowed down.

The ratios that matter: single-stream server decode / `alpha sample` decode (target >= 0.9) and
aggregate at 32 streams / single stream (target >= 8 on 2 cores). The machine's load average is
printed: on a busy machine every figure is lower, the ratios less so.

--profile runs the server with ALPHA_ENGINE_PROFILE=1 and prints the engine's line for every wave
(alpha/model/engine_profile.py: the engine thread's time between steps, in prefill, in the decode
forward split into weight products / attention / the rest, in sampling and in handing tokens
out), beside the client's view of that wave.

--against DIR runs a second server from another checkout of Alpha (e.g. `git worktree add
/tmp/base <commit>`) on the same checkpoint, up beside this one; every repeat runs each wave on
both servers, one after the other, so a busy machine slows both alike; its rows and the ratios
of this tree to it follow the table (`--against-kv-dtype` for its `serve --kv-dtype`: an older
checkout may not know `auto`).

--kv-dtype picks the server's KV cache (`serve --kv-dtype`; default auto, serve's own default:
f16 on config B); `alpha sample`, the reference, stays as it is (f32).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
B = dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256)
PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"


def make_checkpoint(folder: str) -> str:
    """A config-B run folder with one checkpoint (step 1) and its tokenizer."""
    from alpha.core.config import RunConfig
    from alpha.core.rng import Rng
    from alpha.model import GPT
    from alpha.tensor import get_backend
    from alpha.tokenizers.bpe import BPETokenizer
    from alpha.train import checkpoint

    chars = list(range(97, 123)) + [32, 10, 40, 41, 58, 34, 46, 61]
    merges = [(a, b) for a in chars for b in chars]  # two-byte tokens, then three-byte ones
    pairs = [(256 + i, c) for i in range(len(merges)) for c in chars]
    merges += pairs[:B["vocab_size"] - 256 - len(merges)]
    tok = BPETokenizer(merges)
    config = RunConfig.from_dict({"domain": "code", "model": dict(B),
                                  "sample": {"temperature": 0.8, "top_k": 0, "top_p": 1.0}})
    be = get_backend("cpu")
    gpt = GPT(config.model, be, Rng(1337))
    n = gpt.n_params
    os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
    path = os.path.join(folder, "checkpoints", "step-1.ckpt")
    header = {"format": "alpha-checkpoint", "run_id": os.path.basename(folder), "step": 1,
              "config": config.to_dict(), "tokenizer": tok.to_json()}
    checkpoint.save(path, header, {"params": (be.to_array(gpt.params), (n,), "f32")})
    return path


def alpha_sample(ckpt: str, tokens: int) -> float:
    """`alpha sample`'s own decode tokens/s."""
    r = subprocess.run([sys.executable, "-m", "alpha", "sample", "--checkpoint", ckpt,
                        "--prompt", PROMPT, "--max-tokens", str(tokens), "--temperature", "0.8",
                        "--seed", "1"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    m = re.search(r"decode (\d+) tokens at ([\d,.]+) tok/s", r.stderr)
    if r.returncode or not m:
        raise SystemExit(f"alpha sample failed: {r.stderr[-2000:]}")
    return float(m.group(2).replace(",", ""))


def start_server(outputs: str, model: str, max_batch: int, profile: list | None = None,
                 kv_dtype: str = "auto", root: str = ROOT):
    """The server process (of the checkout at `root`) and its port. With `profile` (a list), the
    engine profiles its waves and their lines are appended to the list as they come."""
    env = {k: v for k, v in os.environ.items() if k != "ALPHA_API_KEY"}
    if profile is not None:
        env["ALPHA_ENGINE_PROFILE"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "alpha", "serve", "--port", "0", "--outputs",
                          outputs, "--model", model, "--max-batch", str(max_batch),
                          "--kv-dtype", kv_dtype],
                         cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env)

    def drain():
        for line in p.stderr:
            if profile is not None and line.startswith("engine profile"):
                profile.append(line.strip())
    while True:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("the server did not start")
        m = re.search(r"serving on http://[\d.]+:(\d+)", line)
        if m:
            threading.Thread(target=drain, daemon=True).start()
            return p, int(m.group(1))


class _Client:
    """One streaming completion, the client's side: a raw socket and a substring test per read,
    the usage JSON parsed once. The load generator shares the server's cores, so it should cost
    as little as it can: http.client plus json.loads per event cost ~5% of a wave, and a thread
    per stream woke once per token (~3 context switches a token on a 2-core VM); one thread now
    reads every stream's socket as it becomes readable (`_run`)."""

    def __init__(self, port: int, model: str, tokens: int, seed: int):
        self.t0 = time.perf_counter()
        body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": tokens,
                           "temperature": 0.8, "seed": seed, "stream": True,
                           "stream_options": {"include_usage": True}}).encode()
        head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        self.buf, self.first, self.last, self.error = b"", None, None, None
        self.sock = None
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
            self.sock.sendall(head + body)
            self.sock.setblocking(False)
        except OSError as e:
            self.error = str(e)
            self.close()

    def read(self) -> bool:
        """Take what arrived; False once the stream is over (or failed)."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError as e:
            self.error = str(e)
            return False
        if not data:
            return False
        now = time.perf_counter()
        buf = self.buf
        at = max(0, len(buf) - 7)  # a marker ending in the new bytes starts here or later
        buf += data
        while True:
            at = buf.find(b'"text":"', at)
            if at < 0:
                break
            if buf[at + 8:at + 9] != b'"':  # an event with text: a token arrived
                self.last = now
                self.first = self.first or now
            at += 8
        self.buf = buf
        return b"data: [DONE]" not in buf[-64:]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

    def result(self) -> dict:
        buf, first, last = self.buf, self.first, self.last
        if self.error:
            return {"ok": False, "why": self.error}
        status = buf.split(b" ", 2)[1] if buf.startswith(b"HTTP/1.1 ") else b"?"
        if status != b"200":
            return {"ok": False, "why": f"status {status.decode()}"}
        m = re.search(rb'"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)', buf)
        if b"data: [DONE]" not in buf or not m or first is None:
            return {"ok": False, "why": "incomplete stream"}
        n = int(m.group(1))
        return {"ok": True, "ttft": first - self.t0, "tokens": n, "end": last,
                "decode_tps": (n - 1) / (last - first) if last > first else 0.0}


def _run(clients: list, timeout: float = 600) -> list[dict]:
    """Read every client's stream until all are over (or `timeout` seconds pass)."""
    sel = selectors.DefaultSelector()
    for c in clients:
        if c.error is None:
            sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            if not c.read():
                sel.unregister(c.sock)
                c.close()
    for key in list(sel.get_map().values()):
        key.data.error = key.data.error or "timed out"
        key.data.close()
    sel.close()
    return [c.result() for c in clients]


def one_stream(port: int, model: str, tokens: int, seed: int) -> dict:
    """Stream one completion; the client's view of its timing."""
    return _run([_Client(port, model, tokens, seed)])[0]


def wave(port: int, model: str, streams: int, tokens: int) -> dict:
    """`streams` concurrent streaming requests (seeds 1000...), all sent at once."""
    t0 = time.perf_counter()
    results = _run([_Client(port, model, tokens, 1000 + i) for i in range(streams)])
    wall = time.perf_counter() - t0
    ok = [r for r in results if r and r["ok"]]
    ttft = sorted(r["ttft"] for r in ok) or [float("nan")]
    return {"streams": streams, "failed": streams - len(ok),
            "ttft_p50": statistics.median(ttft),
            "ttft_p99": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))],
            "stream_tps": statistics.mean(r["decode_tps"] for r in ok) if ok else 0.0,
            "aggregate_tps": sum(r["tokens"] for r in ok) / wall, "wall": wall}


def _profile_line(run: dict, lines: list) -> str:
    """The client's view of a wave, then the engine's line for it (it comes once the engine is
    idle, a moment after the last client is done)."""
    deadline = time.monotonic() + 5
    while len(lines) < 2 and time.monotonic() < deadline:  # [warm-up, this wave] or more
        time.sleep(0.05)
    engine = lines.pop() if len(lines) >= 2 else "(no engine profile line)"
    lines[:] = lines[:1]
    return (f"{run['streams']} streams: {run['wall']:.2f} s, {run['aggregate_tps']:.0f} tok/s "
            f"aggregate\n  {engine}")


def _best(runs: list[dict]) -> dict:
    """Repeats of one wave: the best throughputs (a shared machine only ever slows a run down),
    the worst time to first token, every failure."""
    best = dict(max(runs, key=lambda r: r["aggregate_tps"]))
    best["stream_tps"] = max(r["stream_tps"] for r in runs)
    best["ttft_p99"] = max(r["ttft_p99"] for r in runs)
    best["failed"] = sum(r["failed"] for r in runs)
    best["all"] = [r["aggregate_tps"] for r in runs]
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,8,32", help="concurrent clients per wave")
    ap.add_argument("--tokens", type=int, default=96, help="tokens per stream")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of every wave and of alpha sample, interleaved; the best of each")
    ap.add_argument("--profile", action="store_true",
                    help="print the engine's time split for every wave (ALPHA_ENGINE_PROFILE)")
    ap.add_argument("--kv-dtype", choices=("auto", "f32", "f16"), default="auto",
                    help="the server's KV cache element type (serve --kv-dtype; default auto)")
    ap.add_argument("--against", metavar="DIR",
                    help="also serve from this checkout of Alpha, waves interleaved (A/B)")
    ap.add_argument("--against-kv-dtype", choices=("auto", "f32", "f16"),
                    help="--against's serve --kv-dtype (default: --kv-dtype)")
    args = ap.parse_args()
    if args.against and not os.path.isdir(os.path.join(args.against, "alpha")):
        raise SystemExit(f"--against {args.against}: not a checkout of Alpha (no alpha/ in it)")
    waves = [int(x) for x in args.streams.split(",")]
    load = os.getloadavg()[0]
    print(f"serve_load: config B on {os.cpu_count()} cores, KV cache {args.kv_dtype}, "
          f"load average {load:.1f} at start"
          + (" (a busy machine: figures are low)" if load >= (os.cpu_count() or 1) else ""))
    with tempfile.TemporaryDirectory() as tmp:
        outputs = os.path.join(tmp, "outputs")
        ckpt = make_checkpoint(os.path.join(outputs, "bench-b"))
        refs = []
        profile = [] if args.profile else None
        servers = [("this", *start_server(outputs, "bench-b", max(waves), profile, args.kv_dtype))]
        if args.against:
            servers.append(("against", *start_server(outputs, "bench-b", max(waves), None,
                                                     args.against_kv_dtype or args.kv_dtype,
                                                     os.path.abspath(args.against))))
        runs = {(name, n): [] for name, _, _ in servers for n in waves}
        try:
            for _, _, port in servers:
                one_stream(port, "bench-b", 4, 1)  # warm: the model is loaded, kernels built
            for _ in range(args.repeat):
                refs.append(alpha_sample(ckpt, args.tokens))
                for n in waves:
                    for name, _, port in servers:
                        runs[name, n].append(wave(port, "bench-b", n, args.tokens))
                        if profile is not None and name == "this":
                            print(_profile_line(runs[name, n][-1], profile), flush=True)
        finally:
            for _, proc, _ in servers:
                proc.send_signal(signal.SIGTERM)
            for _, proc, _ in servers:
                proc.wait(60)
    ref = max(refs)
    print(f"alpha sample (batch 1, same checkpoint): decode {ref:,.1f} tok/s (best of "
          f"{len(refs)}: {', '.join(f'{x:.0f}' for x in refs)})")
    best = {key: _best(r) for key, r in runs.items()}
    print(f"{'server':>7} {'streams':>7} {'failed':>6} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'tok/s/stream':>12} {'aggregate':>10}  aggregate of each run")
    for (name, _), r in best.items():
        print(f"{name:>7} {r['streams']:>7} {r['failed']:>6} {r['ttft_p50']:>8.3f}s "
              f"{r['ttft_p99']:>8.3f}s {r['stream_tps']:>12.1f} {r['aggregate_tps']:>10.1f}  "
              + ", ".join(f"{x:.0f}" for x in r["all"]))
    for name, _, _ in servers:
        single = best.get((name, 1))
        if not single:
            continue
        print(f"{name}: single stream server decode / alpha sample: "
              f"{single['stream_tps'] / ref:.2f}x" + (" (target >= 0.90)" if name == "this" else ""))
        for n in waves:
            if n > 1:
                print(f"{name}: aggregate at {n} streams / single stream: "
                      f"{best[name, n]['aggregate_tps'] / single['stream_tps']:.1f}x"
                      + (" (target >= 8)" if n == 32 and name == "this" else ""))
    if args.against:
        for n in waves:
            a, b = best["this", n], best["against", n]
            key = "stream_tps" if n == 1 else "aggregate_tps"
            print(f"this / against at {n} stream{'s' * (n > 1)}: {a[key] / b[key]:.2f}x "
                  f"({'decode tok/s' if n == 1 else 'aggregate'})")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 1 if any(r["failed"] for r in best.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
