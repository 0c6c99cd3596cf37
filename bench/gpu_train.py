"""GPU training speed: GPT-2 small on helios (fp32 and bf16) beside PyTorch on the same GPU.

    python bench/gpu_train.py                  # every run, a table
    python bench/gpu_train.py --runs alpha-bf16 torch-bf16 --steps 5
    python bench/gpu_train.py --profile        # helios: GPU time per kernel (ALPHA_HELIOS_PROFILE)
    python bench/gpu_train.py --runs alpha-bf16 alpha-bf16-nobias torch-bf16  # bias epilogue on/off
    python bench/gpu_train.py --runs alpha-bf16 alpha-bf16-cm2 torch-bf16  # coopmat2 kernel on/off
    python bench/gpu_train.py --runs alpha-bf16 alpha-bf16-noaddln torch-bf16  # add+layernorm fused
    python bench/gpu_train.py --runs trainer-bf16 trainer-bf16-classic  # alpha train's step

Model: vocab 50304, 12 layers, 12 heads, 768 wide, block 1024, batch 16 (`--small` for a
4-layer, 256-wide, block-256 model that runs anywhere). A step is forward + backward + grad-norm
clip + AdamW on random tokens (alpha: `alpha/helios/train_step.py`, recorded once and replayed;
the clip factor computed on the GPU), timed to its loss on the host; the first `--warmup` steps
are not timed. Runs:
alpha-f32, alpha-bf16 (`--dtype bf16`: bf16 matmuls on tensor cores, fp32 everything else),
torch-f32 (eager, TF32 off), torch-bf16 (eager, bf16 autocast), torch-compile (bf16 autocast,
torch.compile). Options as suffixes of an alpha run: -b<N> (submit every N dispatches),
-noflash (attention around materialised scores), -nobias (a linear's bias added by a separate
op, not by the matmul's store: `be.bias_epilogue = False`), -cm2 (the large-tile products on the
workgroup-scope kernel, VK_NV_cooperative_matrix2: `be.coop2 = True`), -noreplay (the same step
recorded op by op from Python every time: ALPHA_HELIOS_REPLAY_STEP=0), -noaddln (the residual
add, then the layernorm: `be.fuse_add_norm = False`). An alpha run with the bias epilogue
first checks it on GPT-2's four linear shapes against the separate add (the same bits expected:
`bias_check` is the relative difference); alpha runs that differ only in -nobias, -noreplay or
-noaddln must print the same losses. Each run is its own process (its own GPU memory). MFU
counts 6 N + 12 L T C FLOPs per token (N: parameters; PaLM's estimate, nanoGPT's) against 989
TFLOP/s (H100/H200 dense bf16) for every run, so the column compares runs directly.
"""

from __future__ import annotations

import argparse
from array import array
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

GPT2 = dict(vocab_size=50304, n_layer=12, n_head=12, n_embd=768, block_size=1024, batch=16)
SMALL = dict(vocab_size=4096, n_layer=4, n_head=4, n_embd=256, block_size=256, batch=8)
RUNS = ("alpha-f32", "alpha-bf16", "torch-f32", "torch-bf16", "torch-compile")
PEAK = 989e12


def flops_per_token(c: dict, n_params: int) -> float:
    return 6 * n_params + 12 * c["n_layer"] * c["block_size"] * c["n_embd"]


def check_bias_epilogue(be, c: dict) -> float:
    """The relative difference of x @ W + b, bias added by the matmul's store against the
    product then a separate add, over the model's four linear shapes (random x, W and b): 0
    expected (the same fp32 add after the same sum). The real tensor-core kernel's bias load
    (a 16x16 fragment of row stride 0) runs only on the GPU: lavapipe checks the emulated one."""
    M, C = c["batch"] * c["block_size"], c["n_embd"]
    diff = ref = 0.0
    for i, (K, N) in enumerate(((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C))):
        x, w, b = be.empty((M, K)), be.empty((K, N)), be.empty((N,))
        for j, t in enumerate((x, w, b)):
            be.rng_uniform(t, (i, j), 0)
            be.binary_scalar(t, "sub", t, 0.5)
        got, want = be.empty((M, N)), be.empty((M, N))
        be.matmul(got, x, w, bias=b)
        be.bias_epilogue = False
        be.matmul(want, x, w, bias=b)
        be.bias_epilogue = True
        ref += be.sum_squares(want)
        be.binary(got, "sub", got, want)
        diff += be.sum_squares(got)
    return (diff / ref) ** 0.5


def measure_alpha(c: dict, dtype: str, steps: int, warmup: int, profile: bool,
                  batch_limit: int = 0, flash: bool = True, bias: bool = True,
                  cm2: bool = False, replay: bool = True, addln: bool = True) -> dict:
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.core.config import TrainConfig
    from alpha.helios.train_step import TrainStep
    from alpha.train.optimizers import build_optimizer

    B, T, V = c["batch"], c["block_size"], c["vocab_size"]
    cfg = ModelConfig(vocab_size=V, n_layer=c["n_layer"], n_head=c["n_head"],
                      n_embd=c["n_embd"], block_size=T)
    be = get_backend("helios").with_matmul_dtype(dtype)
    be.flash = flash  # False: attention around materialised scores (the path before flash)
    be.bias_epilogue = bias  # False: the product, then a separate bias add (the path before)
    be.coop2 = cm2  # True: the large-tile products on the workgroup-scope kernel
    be.fuse_add_norm = addln  # False: the residual add, then the layernorm (the path before)
    bias_check = check_bias_epilogue(be, c) if bias else None
    if batch_limit:  # dispatches recorded before a submit (the device's default otherwise)
        be.dev.batch_limit = batch_limit
    rng = Rng(0)
    model = GPT(cfg, be, rng)
    opt = build_optimizer(be, model, TrainConfig(optimizer="adamw", beta1=0.9, beta2=0.95,
                                                 eps=1e-8, weight_decay=0.1))
    step = TrainStep(model, opt, grad_clip=1.0, replay=replay)
    data = rng.stream("data")
    # array('i') like the trainer's BatchSampler (from_array converts a list element by element)
    xs, ys = array("i", data.randint(B * T, V)), array("i", data.randint(B * T, V))
    times, losses = [], []
    for i in range(warmup + steps):
        if i == warmup and profile:
            be.dev.profile.clear()
        t0 = time.perf_counter()
        loss, _, _ = step.run([(xs, ys)], (B, T), 3e-4)  # waits for the step: reads its loss
        losses.append(loss)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    gpu_s = step.gpu_seconds(3)  # after the timed steps: the replayed step's own GPU time
    n_params = model.params.numel
    out = {"run": f"alpha-{dtype}" + (f"-b{batch_limit}" if batch_limit else "")
           + ("" if flash else "-noflash") + ("" if bias else "-nobias")
           + ("-cm2" if cm2 else "") + ("" if replay else "-noreplay")
           + ("" if addln else "-noaddln"),
           "tok_s": B * T * len(times) / sum(times), "bias_check": bias_check,
           "replay": {"why_not": step.why_not, "recorded": step.recorded,
                      "replayed": step.replayed,
                      "gpu_ms": None if gpu_s is None else round(1000 * gpu_s, 2)},
           "ms_per_step": 1000 * sum(times) / len(times), "params": n_params,
           "losses": losses, "device": be.dev.name}
    if profile:
        out["profile"] = be.dev.profile_table()
    return out


def measure_trainer(c: dict, dtype: str, steps: int, warmup: int, classic: bool) -> dict:
    """`alpha train --backend helios` itself (alpha.train.trainer: sampler, metrics lines) on
    random characters (a char vocabulary of 96, so the LM head is small: compare trainer runs
    with each other, not with the runs above). classic: a no-op after_backward hook makes it
    take its own op-by-op step (host grad norm, finite check and clip) instead of the replayed
    one (alpha.train.device_step). ms/step from the metrics lines past the warmup."""
    import random
    import tempfile
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer

    B, T = c["batch"], c["block_size"]
    folder = tempfile.mkdtemp()
    rnd = random.Random(0)
    letters = [chr(i) for i in range(32, 127)] + ["\n"]
    with open(os.path.join(folder, "data.txt"), "w") as f:
        f.write("".join(rnd.choice(letters) for _ in range(1 << 20)))
    t = {"data": os.path.join(folder, "data.txt"), "batch_size": B, "iters": warmup + steps,
         "eval_interval": 0, "sample_interval": 0, "checkpoint_interval": 0,
         "warmup_iters": 1, "lr": 3e-4, "run_dir": os.path.join(folder, "run"), "seed": 0,
         "backend": "helios", "dtype": dtype}
    model = {"n_layer": c["n_layer"], "n_head": c["n_head"], "n_embd": c["n_embd"],
             "block_size": T}
    cfg = resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})
    hooks = {"after_backward": lambda trainer, step: None} if classic else None
    trainer = Trainer(cfg, out=None, handle_sigint=False, hooks=hooks)
    trainer.train()
    with open(os.path.join(folder, "run", "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()][warmup:]
    ms = sum(r["ms_per_iter"] for r in rows) / len(rows)
    with open(os.path.join(folder, "run", "train.log")) as f:
        said = [ln.split(" ", 1)[1].strip() for ln in f if "training step" in ln]
    return {"run": f"trainer-{dtype}" + ("-classic" if classic else ""),
            "tok_s": B * T * 1000 / ms, "ms_per_step": ms, "params": trainer.model.n_params,
            "losses": [r["loss"] for r in rows], "device": trainer.backend.dev.name,
            "replay": {"said": said}}


def measure_torch(c: dict, mode: str, steps: int, warmup: int) -> dict:
    import torch
    from train_speed import torch_gpt, torch_optimizer

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    B, T, V = c["batch"], c["block_size"], c["vocab_size"]
    model = torch_gpt(V, c["n_layer"], c["n_head"], c["n_embd"], T).cuda()
    opt = torch_optimizer(model, 3e-4, 0.1, 0.9, 0.95)
    run = torch.compile(model) if mode == "compile" else model
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")
    times, losses = [], []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode != "f32"):
            _, loss = run(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    return {"run": "torch-" + mode, "tok_s": B * T * len(times) / sum(times),
            "ms_per_step": 1000 * sum(times) / len(times), "params": n_params,
            "losses": losses, "device": torch.cuda.get_device_name()}


def one(run: str, c: dict, args) -> dict:
    if run.startswith("trainer-"):
        dtype, *opts = run[8:].split("-")
        if opts not in ([], ["classic"]):
            raise SystemExit(f"{run}: trainer-<dtype>[-classic]")
        return measure_trainer(c, dtype, args.steps, args.warmup, opts == ["classic"])
    if run.startswith("alpha-"):
        dtype, *opts = run[6:].split("-")
        limit = [int(o[1:]) for o in opts if o[:1] == "b" and o[1:].isdigit()]
        unknown = [o for o in opts if o not in ("noflash", "nobias", "cm2", "noreplay",
                                                "noaddln") and o[:1] != "b"]
        if unknown:
            raise SystemExit(f"{run}: unknown option {unknown[0]!r} (-b<N>, -noflash, -nobias, "
                             "-cm2, -noreplay, -noaddln)")
        return measure_alpha(c, dtype, args.steps, args.warmup, args.profile,
                             limit[0] if limit else 0, "noflash" not in opts,
                             "nobias" not in opts, "cm2" in opts, "noreplay" not in opts,
                             "noaddln" not in opts)
    return measure_torch(c, run[6:], args.steps, args.warmup)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS),
                   help=f"of {', '.join(RUNS)}; alpha-<dtype>-b<N> submits every N dispatches; "
                        "alpha-bf16-noflash: attention around materialised scores; "
                        "alpha-bf16-nobias: the bias added by a separate op; alpha-bf16-cm2: the "
                        "workgroup-scope (coopmat2) kernel; -noreplay: the step recorded op by "
                        "op; -noaddln: the residual add, then the layernorm; "
                        "trainer-<dtype>[-classic]: alpha's trainer, replayed step or its "
                        "own (random characters)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--small", action="store_true", help="a small model instead of GPT-2 small")
    p.add_argument("--profile", action="store_true", help="helios: GPU time per kernel")
    p.add_argument("--timeout", type=int, default=400, help="seconds per run")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    c = SMALL if args.small else GPT2
    if args.one:
        print("RESULT " + json.dumps(one(args.one, c, args)))
        return 0
    results = {}
    for run in args.runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", run, "--steps",
               str(args.steps), "--warmup", str(args.warmup)] + \
            (["--small"] if args.small else []) + (["--profile"] if args.profile else [])
        env = dict(os.environ, ALPHA_HELIOS_PROFILE="1" if args.profile else "0")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                               timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{run}: timed out after {args.timeout} s", flush=True)
            continue
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not line:
            print(f"{run} failed ({r.returncode}):\n{r.stderr.strip()[-3000:]}", flush=True)
            continue
        res = json.loads(line[-1][7:])
        results[run] = res
        check = res.get("bias_check")
        if res.get("replay"):
            print(f"{run}: replay {res['replay']}", flush=True)
        print(f"{run}: {res['tok_s']:.0f} tok/s, {res['ms_per_step']:.1f} ms/step, losses "
              + " ".join(f"{v:.5f}" for v in res["losses"][:5]) + " ..."
              + ("" if check is None else f" (bias epilogue vs separate add: relative "
                 f"difference {check:.3g}{'' if check < 1e-6 else ' MISMATCH'})"), flush=True)
        if "profile" in res:
            print(res["profile"], flush=True)
    name = "GPT-2 small" if not args.small else "small model"
    print(f"\n{name} (vocab {c['vocab_size']}, {c['n_layer']} layers, {c['n_head']} heads, "
          f"{c['n_embd']} wide, block {c['block_size']}, batch {c['batch']}), "
          f"{args.steps} timed steps")
    ref = results.get("torch-bf16")
    print(f"{'run':<20}{'tok/s':>10}{'ms/step':>10}{'MFU':>8}{'vs torch-bf16':>15}")
    for run, res in results.items():
        mfu = res["tok_s"] * flops_per_token(c, res["params"]) / PEAK
        ratio = f"{res['tok_s'] / ref['tok_s']:.2f}x" if ref else "-"
        print(f"{run:<20}{res['tok_s']:>10.0f}{res['ms_per_step']:>10.1f}{100 * mfu:>7.1f}%"
              f"{ratio:>15}")
    for run, res in results.items():  # the epilogue and the replay change no bits
        for opt in ("-nobias", "-noreplay", "-noaddln"):
            other = results.get(run.replace(opt, "") if opt in run else None)
            if other is not None:
                same = other["losses"] == res["losses"]
                print(f"losses {run.replace(opt, '')} vs {run}: "
                      f"{'the same' if same else 'DIFFERENT: ' + str(other['losses'][:5])}")
    dev = next(iter(results.values()))["device"] if results else "?"
    print(f"device: {dev}")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "profile"}
                      for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
