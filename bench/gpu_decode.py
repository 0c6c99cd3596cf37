"""GPU decode speed: batch-1 and batch-32 greedy decoding with a KV cache on helios beside PyTorch
eager on the same GPU.

    python bench/gpu_decode.py                 # config B, batch 1 and 32, a table
    python bench/gpu_decode.py --tokens 64 --batches 1

Config B of bench/train_speed.py (vocab 4096, 6 layers, 6 heads, 384 wide, block 256), random
weights, a 32-token prompt per sequence, then `--tokens` decoded tokens per sequence (argmax on the
host for Alpha, torch.argmax for PyTorch). tok/s counts decoded tokens of all sequences over the
decode time (prefill excluded). Each run is its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

B_CFG = dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256)
PROMPT = 32


def measure_alpha(batch: int, tokens: int, dtype: str) -> dict:
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model.inference import InferenceEngine
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend

    c = B_CFG
    cfg = ModelConfig(vocab_size=c["vocab_size"], n_layer=c["n_layer"], n_head=c["n_head"],
                      n_embd=c["n_embd"], block_size=c["block_size"])
    be = get_backend("helios").with_matmul_dtype(dtype)
    rng = Rng(0)
    model = GPT(cfg, be, rng)
    engine = InferenceEngine(model, batch_size=batch)
    data = rng.stream("data")
    prompts = [data.randint(PROMPT, c["vocab_size"]) for _ in range(batch)]
    V = c["vocab_size"]

    def argmax_rows(logits):
        # max and index run in C: a Python key function over 4096 logits per row cost ~1 ms a
        # row, most of a batch-32 step (the first of equal maxima wins, like torch.argmax)
        vals = be.to_array(logits)
        rows = [vals[r * V:(r + 1) * V] for r in range(batch)]
        return [row.index(max(row)) for row in rows]

    t0 = time.perf_counter()
    toks = argmax_rows(engine.forward([list(p) for p in prompts]))
    t1 = time.perf_counter()
    for _ in range(tokens):
        toks = argmax_rows(engine.forward([[t] for t in toks]))
    t2 = time.perf_counter()
    return {"run": f"alpha-{dtype}", "batch": batch, "decode_tok_s": batch * tokens / (t2 - t1),
            "prefill_s": t1 - t0, "device": be.dev.name}


def measure_torch(batch: int, tokens: int) -> dict:
    import torch
    from train_speed import torch_gpt

    torch.manual_seed(0)
    c = B_CFG
    model = torch_gpt(c["vocab_size"], c["n_layer"], c["n_head"], c["n_embd"],
                      c["block_size"]).cuda().eval()
    prompt = torch.randint(0, c["vocab_size"], (batch, PROMPT), device="cuda")
    with torch.no_grad():
        caches = [{} for _ in range(c["n_layer"])]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits, _ = model(prompt, caches=caches, start=0)
        tok = torch.argmax(logits, dim=-1, keepdim=True)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        pos = PROMPT
        for _ in range(tokens):
            logits, _ = model(tok, caches=caches, start=pos)
            tok = torch.argmax(logits, dim=-1, keepdim=True)
            pos += 1
        torch.cuda.synchronize()
        t2 = time.perf_counter()
    return {"run": "torch-eager", "batch": batch, "decode_tok_s": batch * tokens / (t2 - t1),
            "prefill_s": t1 - t0, "device": torch.cuda.get_device_name()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=128, help="decoded tokens per sequence")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--runs", nargs="+", default=["alpha-f32", "alpha-bf16", "torch-eager"])
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        run, batch = args.one[0], int(args.one[1])
        res = (measure_torch(batch, args.tokens) if run == "torch-eager"
               else measure_alpha(batch, args.tokens, run[6:]))
        print("RESULT " + json.dumps(res))
        return 0
    results = []
    for batch in args.batches:
        for run in args.runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", run, str(batch),
                   "--tokens", str(args.tokens)]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
            line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                print(f"{run} batch {batch} failed:\n{r.stderr.strip()[-2000:]}", flush=True)
                continue
            results.append(json.loads(line[-1][7:]))
            print(f"{run} batch {batch}: {results[-1]['decode_tok_s']:.0f} tok/s", flush=True)
    c = B_CFG
    print(f"\ndecode, config B (vocab {c['vocab_size']}, {c['n_layer']} layers, {c['n_embd']} "
          f"wide), {PROMPT}-token prompt, {args.tokens} tokens per sequence")
    print(f"{'run':<14}{'batch':>6}{'tok/s':>10}{'vs torch':>10}")
    for res in results:
        ref = next((r for r in results if r["run"] == "torch-eager"
                    and r["batch"] == res["batch"]), None)
        ratio = f"{res['decode_tok_s'] / ref['decode_tok_s']:.2f}x" if ref else "-"
        print(f"{res['run']:<14}{res['batch']:>6}{res['decode_tok_s']:>10.0f}{ratio:>10}")
    if results:
        print(f"device: {results[0]['device']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
