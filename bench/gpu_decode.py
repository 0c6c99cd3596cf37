"""GPU decode speed: batch-1 and batch-32 greedy decoding with a KV cache on helios beside PyTorch
eager on the same GPU.

    python bench/gpu_decode.py                 # config B, batch 1 and 32, a table
    python bench/gpu_decode.py --tokens 64 --batches 1

Config B of bench/train_speed.py (vocab 4096, 6 layers, 6 heads, 384 wide, block 256), random
weights, a 32-token prompt per sequence, then `--tokens` decoded tokens per sequence (greedy:
`argmax_rows`, which helios answers from the replayed step's own argmax; torch.argmax for
PyTorch). tok/s counts decoded tokens of all sequences over the decode time (prefill excluded);
every run decodes untimed for a second first (pipelines, the recording, GPU clocks), then once
timed.
Runs: alpha-f32 and alpha-bf16 (the replayed decode step, alpha/helios/replay.py: its products
are fp32 in both; bf16 changes the prefill), alpha-f32-ops (the op-by-op cached forward, what
decode was before the replay), torch-eager. Each run is its own process.

Correctness first: the alpha-f32 run decodes the same prompts on the CPU backend with the same
weights (`--check` tokens, default 16) and reports whether every token matches.
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
WARMUP_S = 1.0  # untimed decoding first: the GPU idles at 345 MHz until it has had work


def _greedy(engine, be, prompts, tokens):
    """Prefill, then `tokens` greedy steps: (tokens per step, prefill s, decode s, host s in
    forward calls)."""
    t0 = time.perf_counter()
    toks = be.argmax_rows(engine.prefill([list(p) for p in prompts]))
    t1 = time.perf_counter()
    out, host = [], 0.0
    for _ in range(tokens):
        out.append(toks)
        h0 = time.perf_counter()
        logits = engine.forward([[t] for t in toks])
        host += time.perf_counter() - h0
        toks = be.argmax_rows(logits)
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1, host


def measure_alpha(batch: int, tokens: int, dtype: str, replay: bool, check: int) -> dict:
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.model.inference import InferenceEngine
    from alpha.tensor import get_backend

    c = B_CFG
    cfg = ModelConfig(vocab_size=c["vocab_size"], n_layer=c["n_layer"], n_head=c["n_head"],
                      n_embd=c["n_embd"], block_size=c["block_size"])
    be = get_backend("helios").with_matmul_dtype(dtype)
    rng = Rng(0)
    model = GPT(cfg, be, rng).eval()
    model.step_decode = replay
    engine = InferenceEngine(model, batch_size=batch)
    data = rng.stream("data")
    prompts = [data.randint(PROMPT, c["vocab_size"]) for _ in range(batch)]
    warm = time.perf_counter()
    while time.perf_counter() - warm < WARMUP_S:  # untimed: pipelines, recording, GPU clocks
        _greedy(engine, be, prompts, tokens)
    be.dev.profile.clear()
    toks, prefill, decode, host = _greedy(engine, be, prompts, tokens)
    res = {"run": f"alpha-{dtype}" + ("" if replay else "-ops"), "batch": batch,
           "decode_tok_s": batch * tokens / decode, "prefill_s": prefill,
           "host_ms_per_step": 1e3 * host / tokens, "device": be.dev.name,
           "replayed": model.step_decode}
    reps = list(getattr(be, "_replays", {}).values())
    if replay and reps:
        res["dispatches_per_token"] = reps[-1].dispatches
    if be.dev.profiling:
        res["profile"] = be.dev.profile_table()
    if check:  # the same weights and prompts on the CPU backend: the same tokens?
        cpu = get_backend("cpu")
        ref = GPT(cfg, cpu, Rng(0), init=False).eval()
        ref.load_state_dict(model.state_dict())
        n = min(check, tokens)
        want, _, _, _ = _greedy(InferenceEngine(ref, batch_size=batch), cpu, prompts, n)
        diff = [(i, r) for i in range(n) for r in range(batch) if want[i][r] != toks[i][r]]
        res["check"] = {"tokens": n * batch, "equal_to_cpu": not diff, "first_diff": diff[:1]}
    return res


def measure_torch(batch: int, tokens: int) -> dict:
    import torch
    from train_speed import torch_gpt

    torch.manual_seed(0)
    c = B_CFG
    model = torch_gpt(c["vocab_size"], c["n_layer"], c["n_head"], c["n_embd"],
                      c["block_size"]).cuda().eval()
    prompt = torch.randint(0, c["vocab_size"], (batch, PROMPT), device="cuda")
    with torch.no_grad():
        warm, passes = time.perf_counter(), 0
        while passes < 2 or time.perf_counter() - warm < WARMUP_S:  # the last pass is timed
            passes += 1
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
    p.add_argument("--runs", nargs="+",
                   default=["alpha-f32", "alpha-bf16", "alpha-f32-ops", "torch-eager"])
    p.add_argument("--check", type=int, default=16,
                   help="tokens per sequence the alpha-f32 run compares with the CPU backend")
    p.add_argument("--profile", action="store_true",
                   help="then alpha-f32 once more per batch with ALPHA_HELIOS_PROFILE=1: GPU "
                        "time per kernel of the timed pass (timestamps after every dispatch)")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        run, batch = args.one[0], int(args.one[1])
        if run == "torch-eager":
            res = measure_torch(batch, args.tokens)
        else:
            dtype = run.split("-")[1]
            res = measure_alpha(batch, args.tokens, dtype, not run.endswith("-ops"),
                                args.check if run == "alpha-f32" else 0)
        print("RESULT " + json.dumps(res))
        return 0
    results = []
    plan = [(batch, run, False) for batch in args.batches for run in args.runs]
    if args.profile:
        plan += [(batch, "alpha-f32", True) for batch in args.batches]
    for batch, run, profile in plan:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", run, str(batch),
               "--tokens", str(args.tokens), "--check", str(0 if profile else args.check)]
        env = dict(os.environ, ALPHA_HELIOS_PROFILE="1" if profile else "0")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                           env=env)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not line:
            print(f"{run} batch {batch} failed:\n{r.stderr.strip()[-2000:]}", flush=True)
            continue
        res = json.loads(line[-1][7:])
        if profile:
            print(f"GPU time per kernel, {run} batch {batch}, {args.tokens} tokens "
                  f"(wall {res['decode_tok_s']:.0f} tok/s with timestamps):\n"
                  f"{res['profile']}", flush=True)
            continue
        results.append(res)
        extra = f", check {res['check']}" if "check" in res else ""
        print(f"{run} batch {batch}: {res['decode_tok_s']:.0f} tok/s{extra}", flush=True)
    c = B_CFG
    print(f"\ndecode, config B (vocab {c['vocab_size']}, {c['n_layer']} layers, {c['n_embd']} "
          f"wide), {PROMPT}-token prompt, {args.tokens} tokens per sequence")
    print(f"{'run':<15}{'batch':>6}{'tok/s':>10}{'vs torch':>10}{'host ms/step':>14}")
    for res in results:
        ref = next((r for r in results if r["run"] == "torch-eager"
                    and r["batch"] == res["batch"]), None)
        ratio = f"{res['decode_tok_s'] / ref['decode_tok_s']:.2f}x" if ref else "-"
        host = f"{res['host_ms_per_step']:.3f}" if "host_ms_per_step" in res else "-"
        print(f"{res['run']:<15}{res['batch']:>6}{res['decode_tok_s']:>10.0f}{ratio:>10}"
              f"{host:>14}")
    if results:
        print(f"device: {results[0]['device']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
