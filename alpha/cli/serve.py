"""`python -m alpha serve`: an OpenAI-compatible HTTP server over trained models.

    python -m alpha serve --model <run_id> --port 8000
    curl localhost:8000/v1/chat/completions -d '{"model": "<run_id>", "messages": [...]}'

Serves every run with a checkpoint under --outputs (`run` or `run@step` as the model id); --model
loads some at start. Concurrent requests are batched into one decode step (continuous batching).
SIGTERM or Ctrl-C stops accepting, lets running streams finish (up to --drain-timeout), exits 0.
Set ALPHA_API_KEY to require `Authorization: Bearer <key>` on /v1.
"""

from __future__ import annotations

import signal
import sys
import threading

from alpha.core.config import BACKENDS


def register(sub):
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--outputs", default=None, metavar="DIR",
                   help="the folder of runs to serve (default outputs)")
    p.add_argument("--model", action="append", default=[], metavar="RUN|CKPT",
                   help="load this run (id or folder) or checkpoint at start; repeatable")
    p.add_argument("--backend", choices=BACKENDS, default="cpu",
                   help="where the models run (default cpu)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N",
                   help="sequences decoded together in one step (default 32)")
    p.add_argument("--max-queue", type=int, default=128, metavar="N",
                   help="requests waiting for a slot before new ones get 429 (default 128)")
    p.add_argument("--max-models", type=int, default=2, metavar="N",
                   help="models kept loaded; the least recently used is unloaded (default 2)")
    p.add_argument("--prefill-chunk", type=int, default=128, metavar="N",
                   help="prompt tokens prefilled per engine step beside running streams "
                        "(default 128)")
    p.add_argument("--kv-dtype", default="auto", metavar="auto|f16|f32",
                   help="KV cache element type: f16 (half the cache bytes, faster attention; "
                        "cpu only), f32 (serving equals training bit for bit) or auto (default: "
                        "f16 where the model can take it, else f32)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, seconds to let running streams finish (default 30)")
    p.add_argument("--cors-origin", default="*", metavar="ORIGIN",
                   help="Access-Control-Allow-Origin for browser clients (default *; '' = off)")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.core.errors import ConfigError
    from alpha.server.app import ServerContext, make_server, serve

    for name in ("max_batch", "max_queue", "max_models", "prefill_chunk"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    import os
    if args.outputs is None:  # the default (a fresh watcher starts it, as `train` would)
        args.outputs = "outputs"
    elif not os.path.exists(args.outputs):
        raise ConfigError(f"outputs folder {args.outputs} does not exist; train a model first "
                          "or pass --outputs DIR")
    if os.path.exists(args.outputs) and not os.path.isdir(args.outputs):
        raise ConfigError(f"--outputs {args.outputs} is a file; give the folder that holds the "
                          "run folders")
    from alpha.model.kvcache import KV_DTYPES
    if args.kv_dtype not in KV_DTYPES + ("auto",):
        raise ConfigError(f"--kv-dtype {args.kv_dtype!r} is not one of auto, "
                          f"{', '.join(KV_DTYPES)}")
    if args.kv_dtype == "f16" and args.backend != "cpu":
        raise ConfigError(f"--kv-dtype {args.kv_dtype} runs on --backend cpu only (the "
                          f"{args.backend} backend has an f32 KV cache)")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number (0..65535)")
    options = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    ctx = ServerContext(outputs=args.outputs, options=options)
    try:
        server = make_server(args.host, args.port, ctx)
    except OSError as e:
        ctx.close()
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port} (outputs {args.outputs}, backend {args.backend})",
          file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return serve(server, stop, args.drain_timeout)
