"""Activation checkpointing: peak memory and step time of config B training, with and without.

    python3 bench/activation_checkpointing.py               # CPU backend, 2 x 3 timed steps each
    python3 bench/activation_checkpointing.py --steps 5 --batch 8
    python3 bench/activation_checkpointing.py --backend helios

Config B: vocab 4096 (BPE-sized), 6 layers, 6 heads, 384 dim, block 256, at the trainer's default
batch (TrainConfig.batch_size, 16) unless --batch says otherwise. A step is what the trainer does:
zero the gradients, forward, backward, finite check, gradient-norm clip, AdamW. The first
`--warmup` steps of a process are not timed. The reference for every ratio is the run without
checkpointing, measured in the same invocation: the two modes run in alternating processes
(`--repeat` pairs). Time is printed three ways: the best and the median wall-clock step, and the
median CPU time of the process per step (all its threads). On the CPU backend the CPU time is the
step's work whatever else the machine runs, so the target is judged on it; on a shared machine
the wall times mostly measure the neighbours (the load average is printed). On helios the GPU's
time is not the process's, and the best wall-clock step is used.

Memory, two measures, each run in its own process:
- tensor peak: the backend's high-water mark of the bytes its tensors hold
  (`Backend.memory_stats()`: CPU storage allocations, or helios device-memory ranges), from the
  process start — weights, gradients, AdamW state, activations, everything the model allocates.
  This is the measure the target is about.
- peak RSS (resource.getrusage ru_maxrss) of the process: adds the interpreter, the compiled
  kernels and allocator slack, so its ratio is flatter; for helios it counts host memory only.
The table also splits the tensor peak into its fixed parts (parameters, gradients, AdamW m and v;
the logits and their gradient), so a missed target says where the memory went.

PyTorch (when importable), the same model with `torch.utils.checkpoint` around each block, runs
beside it as a second opinion on what checkpointing costs and saves (peak RSS only: PyTorch has
no CPU allocation counter); it is never a dependency of Alpha.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG_B = dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256)
TARGET_MEMORY = 0.60  # issue 14: peak memory <= 60% of today's
TARGET_TIME = 1.35  # ... at <= 1.35x the step time
MIB = 1 << 20


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# ---- one measurement per process --------------------------------------------------------------


def measure_alpha(backend: str, checkpointing: bool, batch: int, steps: int, warmup: int) -> dict:
    from alpha.core.config import ModelConfig, TrainConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.train.optim import clip_coef, grad_norm
    from alpha.train.optimizers import build_optimizer

    cfg = ModelConfig(**CONFIG_B)
    B, T, V = batch, cfg.block_size, cfg.vocab_size
    be = get_backend(backend)
    rng = Rng(0)
    model = GPT(cfg, be, rng).train()
    model.checkpointing = checkpointing
    opt = build_optimizer(be, model, TrainConfig())  # the default: AdamW
    data = rng.stream("data")
    xs, ys = data.randint(B * T, V), data.randint(B * T, V)
    be.synchronize()
    fixed = be.memory_stats()["in_use"]  # parameters, gradients, AdamW m and v
    times, cpu, losses = [], [], []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        ids, targets = be.from_array(xs, (B, T), "i32"), be.from_array(ys, (B, T), "i32")
        model.zero_grad()
        _, loss = model.forward(ids, targets)
        losses.append(be.to_array(loss)[0])
        model.backward()
        be.all_finite(model.grads)
        opt.update(1e-3, grad_scale=clip_coef(grad_norm(be, model.grads), 1.0))
        be.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"what": f"alpha {backend}", "checkpointing": checkpointing,
            "step_ms": [1000 * t for t in times], "cpu_ms": [1000 * t for t in cpu],
            "tensor_peak": be.memory_stats()["peak"],
            "tensor_fixed": fixed, "params": model.n_params, "peak_rss": peak_rss_bytes(),
            "losses": losses}


def measure_torch(checkpointing: bool, batch: int, steps: int, warmup: int) -> dict:
    import torch
    from torch.utils.checkpoint import checkpoint

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from train_speed import torch_gpt, torch_optimizer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    c = CONFIG_B
    B, T, V = batch, c["block_size"], c["vocab_size"]
    model = torch_gpt(V, c["n_layer"], c["n_head"], c["n_embd"], T)
    if checkpointing:
        for block in model.h:
            plain = block.forward

            def forward(x, cache=None, plain=plain):
                return checkpoint(plain, x, use_reentrant=False)
            block.forward = forward
    opt = torch_optimizer(model, 1e-3, 0.1, 0.9, 0.99)
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    times, cpu = [], []
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"what": "pytorch " + torch.__version__, "checkpointing": checkpointing,
            "step_ms": [1000 * t for t in times], "cpu_ms": [1000 * t for t in cpu],
            "peak_rss": peak_rss_bytes()}


# ---- the driver ---------------------------------------------------------------------------------


def run_child(args, what: str, checkpointing: bool) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", what,
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if checkpointing:
        cmd.append("--on")
    env = dict(os.environ, PYTHONPATH=ROOT)
    if what == "torch" and os.getloadavg()[0] >= (os.cpu_count() or 1):
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a spinning OpenMP barrier on a busy box
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"{what} (checkpointing {checkpointing}) failed:\n{r.stderr[-2000:]}",
              file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def alternate(args, what: str) -> tuple[dict | None, dict | None]:
    """Off, on, off, on... (`--repeat` pairs, each run a fresh process) so that both modes see
    the machine's load alike; step times pooled over the repeats, memory the largest seen."""
    got: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeat):
        for checkpointing in (False, True):
            r = run_child(args, what, checkpointing)
            if r is None:
                return None, None
            got[checkpointing].append(r)
    out = []
    for runs in got.values():
        merged = dict(runs[0])
        steps = sorted(ms for r in runs for ms in r["step_ms"])
        merged["ms_per_step"] = steps[0]
        merged["ms_median"] = steps[len(steps) // 2]
        cpu = sorted(ms for r in runs for ms in r["cpu_ms"])
        merged["cpu_median"] = cpu[len(cpu) // 2]
        for key in ("tensor_peak", "peak_rss"):
            if key in merged:
                merged[key] = max(r[key] for r in runs)
        out.append(merged)
    return out[0], out[1]


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def mib(n: float) -> str:
    return f"{n / MIB:8.1f} MiB"


def report(args, off: dict, on: dict, torch_off: dict | None, torch_on: dict | None) -> int:
    B, T, V = args.batch, CONFIG_B["block_size"], CONFIG_B["vocab_size"]
    L, C = CONFIG_B["n_layer"], CONFIG_B["n_embd"]
    print(f"config B: {L} layers, {C} dim, {CONFIG_B['n_head']} heads, block {T}, vocab {V}, "
          f"batch {B}; {off['params']:,} parameters; backend {args.backend}; "
          f"{args.steps} timed steps after {args.warmup}")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at the end "
          f"({'busy: timings are noisy' if load >= (os.cpu_count() or 1) else 'quiet'})")
    print()
    print(f"{'':38}{'off':>14}{'on':>14}{'on/off':>9}")
    rows = [("step time (best step)", off["ms_per_step"], on["ms_per_step"], "ms"),
            ("step time (median step)", off["ms_median"], on["ms_median"], "ms"),
            ("CPU time per step (median)", off["cpu_median"], on["cpu_median"], "ms"),
            ("tensor peak (backend high-water)", off["tensor_peak"], on["tensor_peak"], "b"),
            ("peak RSS (process)", off["peak_rss"], on["peak_rss"], "b")]
    for name, a, b, unit in rows:
        fa = f"{a:10.0f} ms" if unit == "ms" else mib(a)
        fb = f"{b:10.0f} ms" if unit == "ms" else mib(b)
        print(f"{name:38}{fa:>14}{fb:>14}{b / a:9.3f}")
    if torch_off and torch_on:
        for name, key, unit in (("pytorch step time (best)", "ms_per_step", "ms"),
                                ("pytorch CPU time per step (median)", "cpu_median", "ms"),
                                ("pytorch peak RSS", "peak_rss", "b")):
            a, b = torch_off[key], torch_on[key]
            fa = f"{a:10.0f} ms" if unit == "ms" else mib(a)
            fb = f"{b:10.0f} ms" if unit == "ms" else mib(b)
            print(f"{name:38}{fa:>14}{fb:>14}{b / a:9.3f}")
    elif args.no_torch:
        print("(--no-torch: no PyTorch second opinion)")
    else:
        print("(PyTorch is not installed: no second opinion)")
    same = off["losses"] == on["losses"]
    print(f"losses of every step the same bits with and without: {same}")

    # where the peak goes: the fixed parts, then what the step adds over them
    fixed = off["tensor_fixed"]
    logits = 2 * B * T * V * 4  # the logits and their gradient
    kept = 2 * L * B * T * C * 4  # checkpointing: each block's input and its gradient
    print()
    print("where the tensor peak goes:")
    print(f"  parameters, gradients, AdamW m and v  {mib(fixed)}  (both)")
    print(f"  logits and their gradient             {mib(logits)}  (both)")
    print(f"  blocks' inputs and their gradients    {mib(kept)}  (on)")
    print(f"  the rest of the step, off             {mib(off['tensor_peak'] - fixed - logits)}"
          f"  (every block's intermediates, their gradients, embeddings, loss)")
    print(f"  the rest of the step, on              "
          f"{mib(on['tensor_peak'] - fixed - logits - kept)}  (one block's, the same others)")
    mem = on["tensor_peak"] / off["tensor_peak"]
    if args.backend == "cpu":  # the process's CPU time is the step's work, whatever the load
        tim, timed = on["cpu_median"] / off["cpu_median"], "CPU time"
    else:  # a GPU's time is not the process's: the least disturbed wall time
        tim, timed = on["ms_per_step"] / off["ms_per_step"], "best step time"
    print()
    met = mem <= TARGET_MEMORY and tim <= TARGET_TIME
    print(f"target: peak <= {TARGET_MEMORY:.0%} of off at <= {TARGET_TIME}x the step time: "
          f"{mem:.1%} at {tim:.2f}x ({timed}) -> {'met' if met else 'missed'}")
    return 0 if same else 1


def main(argv=None) -> int:
    from alpha.core.config import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="cpu", choices=("cpu", "helios"))
    p.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2, help="off/on process pairs, alternated")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch second opinion")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--on", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one measurement, printed as JSON
        if args.child == "torch":
            out = measure_torch(args.on, args.batch, args.steps, args.warmup)
        else:
            out = measure_alpha(args.child, args.on, args.batch, args.steps, args.warmup)
        print(json.dumps(out))
        return 0
    off, on = alternate(args, args.backend)
    if off is None or on is None:
        return 1
    torch_off = torch_on = None
    if have_torch() and not args.no_torch:
        torch_off, torch_on = alternate(args, "torch")
    return report(args, off, on, torch_off, torch_on)


if __name__ == "__main__":
    sys.exit(main())
