"""Data-parallel scaling: training tokens/s at 1, 2, 4... MPI ranks, the scaling efficiency, and
the communication time that was not hidden behind compute — with PyTorch DDP in the same run as
the reference when torch is installed (gloo on CPUs, NCCL on GPUs), same model and global batch.

    python bench/dist_scaling.py                                  # CPU ranks on this machine
    python bench/dist_scaling.py --backend helios --ranks 1,2,4 --config gpt2 -- --dtype bf16

Two ways to count, picked by the backend:
- CPU ranks (strong scaling on a fixed machine): the global batch is fixed, N ranks share the
  machine's cores (cores/N kernel threads each), and the efficiency is tok/s(N ranks) divided by
  tok/s(1 process using every core). On a 2-core machine "2" means 2 ranks x 1 thread against
  1 rank x 2 threads.
- GPUs (weak scaling, one GPU per rank): each rank keeps --batch rows, the global batch grows
  with N, and the efficiency is tok/s(N) / (N x tok/s(1)).

Alpha runs the real trainer (`alpha.train.trainer.Trainer`, exactly what `python -m alpha train
--distributed` runs) under `mpirun`, on a synthetic char-level text with exactly the config's
vocabulary; every step is timed from one after_backward hook to the next (the whole step,
all-reduces, the loss average and the stop vote included), and the median step counts (this
machine may be shared). "Not hidden" is the time the training thread spent waiting for MPI per
step: the gradient buckets still in flight when backward ended, plus the scalar collectives.
"CPU ms" is the CPU time of all ranks (every thread) per step, and "CPU eff" the one process's
CPU time over it: the cost of communication in CPU, which a loaded machine does not blur as it
blurs the wall clock.
Arguments after `--` go to `alpha train` (e.g. `--dtype`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {
    "tiny": dict(vocab_size=256, n_layer=2, n_head=2, n_embd=64, block_size=64, batch=8),
    "B": dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8),
    "gpt2": dict(vocab_size=50304, n_layer=12, n_head=12, n_embd=768, block_size=1024, batch=8),
}


# ---- the text: a char-level corpus with exactly the config's vocabulary -----------------------


def synthetic_text(path: str, vocab: int, block: int) -> None:
    """A text whose char-level tokenizer has exactly `vocab` ids (the tokenizer adds its own
    extras, counted by training it once on a small sample)."""
    sys.path.insert(0, ROOT)
    from alpha.tokenizers import train_tokenizer

    extras = train_tokenizer("char", "ab", 0, ()).vocab_size - 2
    write_chars(path, vocab - extras, block)


def write_chars(path: str, vocab: int, block: int) -> None:
    rnd = random.Random(0)
    # code points from U+10000 up: no surrogates, no characters a tokenizer treats specially
    alphabet = [chr(0x10000 + i) for i in range(vocab)]
    n = max(4 * vocab, 64 * block, 200_000)
    chars = alphabet + [alphabet[rnd.randrange(vocab)] for _ in range(n - vocab)]
    rnd.shuffle(chars)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(chars))


# ---- one Alpha rank -------------------------------------------------------------------------


def alpha_worker(a) -> None:
    sys.path.insert(0, ROOT)
    from alpha.cli.main import build_parser
    from alpha.cli.train import resolve_run_config
    from alpha.train.trainer import Trainer

    c = CONFIGS[a.config]
    argv = ["train", "--data", a.text, "--tokenizer", "char", "--layers", str(c["n_layer"]),
            "--heads", str(c["n_head"]), "--dim", str(c["n_embd"]), "--block",
            str(c["block_size"]), "--batch", str(a.global_batch), "--iters",
            str(a.warmup + a.steps), "--eval-interval", "0", "--sample-interval", "0",
            "--checkpoint-interval", "0", "--keep-checkpoints", "1", "--log-interval", "1000000",
            "--backend", a.backend, "--run-dir", a.run_dir, "--lr", "1e-4", "--quiet",
            *a.extra]
    config, _ = resolve_run_config(build_parser().parse_args(argv))
    world = None
    if a.distributed:
        from alpha.dist import start

        world = start(a.backend)
    marks: list[tuple[float, float, float]] = []  # (time, MPI wait so far, CPU time) per step

    def mark(trainer, step):
        trainer.backend.synchronize()
        marks.append((time.perf_counter(), world.comm.waited_s if world else 0.0,
                      time.process_time()))

    trainer = Trainer(config, out=None, dist=world, hooks={"after_backward": mark})
    trainer.train()
    if world is not None:
        world.finish()
    timed = marks[a.warmup:]
    step_s = median([b[0] - a_[0] for a_, b in zip(timed, timed[1:])])
    waited_s = median([b[1] - a_[1] for a_, b in zip(timed, timed[1:])])
    cpu_s = median([b[2] - a_[2] for a_, b in zip(timed, timed[1:])])
    print(json.dumps({"rank": world.rank if world else 0,
                      "tok_s": a.global_batch * c["block_size"] / step_s,
                      "ms_per_step": 1000 * step_s, "not_hidden_ms": 1000 * waited_s,
                      "cpu_ms_per_step": 1000 * cpu_s,
                      "threads": os.environ.get("ALPHA_NUM_THREADS"),
                      "params": trainer.model.param_count}), flush=True)


def run_alpha(a, ranks: int, threads: int | None, global_batch: int, text: str,
              work: str) -> dict:
    run_dir = os.path.join(work, f"alpha-{ranks}-{threads}")
    shutil.rmtree(run_dir, ignore_errors=True)
    worker = [sys.executable, os.path.abspath(__file__), "--alpha-worker", "--config", a.config,
              "--backend", a.backend, "--steps", str(a.steps), "--warmup", str(a.warmup),
              "--text", text, "--run-dir", run_dir, "--global-batch", str(global_batch)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ALPHA_NUM_THREADS", None)
    if threads:
        env["ALPHA_NUM_THREADS"] = str(threads)
    if ranks == 1 and not a.mpi_at_one:
        cmd = worker
    else:
        cmd = mpi_launch(ranks) + [*worker, "--distributed"]
    cmd += ["--", *a.extra] if a.extra else []
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0 or len(rows) != ranks:
        raise SystemExit(f"alpha with {ranks} rank(s) failed (exit {r.returncode}):\n"
                         f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    out = next(row for row in rows if row["rank"] == 0)
    # CPU time of every rank (all its threads): on a shared machine the wall clock is noisy,
    # while the CPU a step costs shows the price of communication whatever the load
    out["cpu_ms_per_step"] = sum(row["cpu_ms_per_step"] for row in rows)
    return out


def mpi_launch(ranks: int) -> list[str]:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("mpirun not found: install Open MPI (apt-get install openmpi-bin)")
    cmd = [mpirun, "-np", str(ranks), "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    if ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


# ---- PyTorch DDP, the reference -------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
        import torch.distributed  # noqa: F401

        return True
    except ImportError:
        return False


def torch_worker(a) -> None:
    import torch
    import torch.distributed as tdist
    from torch.nn.parallel import DistributedDataParallel as DDP

    sys.path.insert(0, BENCH)
    from train_speed import torch_gpt, torch_optimizer

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    gpu = a.backend != "cpu" and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = torch.device("cuda")
    else:
        torch.set_num_threads(int(os.environ.get("ALPHA_NUM_THREADS", "1")))
        device = torch.device("cpu")
    tdist.init_process_group("nccl" if gpu else "gloo", rank=rank, world_size=size)
    c = CONFIGS[a.config]
    torch.manual_seed(0)
    model = torch_gpt(c["vocab_size"], c["n_layer"], c["n_head"], c["n_embd"],
                      c["block_size"]).to(device)
    model = DDP(model, device_ids=[device.index or 0] if gpu else None)
    opt = torch_optimizer(model, 1e-4, 0.1, 0.9, 0.95)
    rows = a.global_batch // size
    g = torch.Generator().manual_seed(rank)
    x = torch.randint(0, c["vocab_size"], (rows, c["block_size"]), generator=g).to(device)
    y = torch.randint(0, c["vocab_size"], (rows, c["block_size"]), generator=g).to(device)
    bf16 = gpu and "bf16" in a.extra
    marks = []
    for _ in range(a.warmup + a.steps + 1):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if gpu:
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
    timed = marks[a.warmup:]
    step_s = median([b - a_ for a_, b in zip(timed, timed[1:])])
    if rank == 0:
        print(json.dumps({"tok_s": a.global_batch * c["block_size"] / step_s,
                          "ms_per_step": 1000 * step_s,
                          "torch": torch.__version__, "backend": "nccl" if gpu else "gloo"}),
              flush=True)
    tdist.destroy_process_group()


def run_torch(a, ranks: int, threads: int | None, global_batch: int, work: str) -> dict | None:
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_WAIT_POLICY="PASSIVE")
        if threads:
            env["ALPHA_NUM_THREADS"] = str(threads)
            env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--config", a.config,
               "--backend", a.backend, "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--global-batch", str(global_batch)]
        cmd += ["--", *a.extra] if a.extra else []
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=work, env=env))
    outs = [p.communicate() for p in procs]
    rows = [json.loads(line) for line in outs[0][0].splitlines() if line.startswith("{")]
    if any(p.returncode for p in procs) or not rows:
        print(f"note: PyTorch DDP with {ranks} rank(s) failed: {outs[0][1][-1500:]}",
              file=sys.stderr)
        return None
    return rows[0]


# ---- the table ------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="cpu", choices=("cpu", "helios"))
    p.add_argument("--config", default="B", choices=sorted(CONFIGS))
    p.add_argument("--ranks", default="", help="comma-separated rank counts (default: 1,2 on the "
                   "CPU, 1,2,4 on GPUs)")
    p.add_argument("--batch", type=int, default=0, help="CPU: the global batch; GPUs: rows per "
                   "rank (default: the config's batch)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch DDP reference")
    p.add_argument("--mpi-at-one", action="store_true",
                   help="run the 1-rank case under mpirun --distributed too (default: plain)")
    # internal: one rank of a measurement
    p.add_argument("--alpha-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--text", default="", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--global-batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="after --: flags for alpha train (e.g. --dtype bf16)")
    a = p.parse_args()
    if a.alpha_worker:
        return alpha_worker(a)
    if a.torch_worker:
        return torch_worker(a)

    cpu = a.backend == "cpu"
    cores = os.cpu_count() or 1
    ranks = [int(r) for r in (a.ranks or ("1,2" if cpu else "1,2,4")).split(",")]
    c = CONFIGS[a.config]
    batch = a.batch or c["batch"]
    work = tempfile.mkdtemp(prefix="alpha-dist-bench-")
    text = os.path.join(work, "text.txt")
    synthetic_text(text, c["vocab_size"], c["block_size"])
    use_torch = not a.no_torch and torch_available()
    load = os.getloadavg()[0]
    print(f"config {a.config} ({c['n_layer']} layers, {c['n_embd']} dim, vocab "
          f"{c['vocab_size']}, block {c['block_size']}), backend {a.backend}, {cores} cores, "
          f"load average {load:.1f}" + (" (busy: timings are noisy)" if load > cores / 2 else ""))
    print("scaling: " + ("strong: a fixed global batch of "
                         f"{batch}, N ranks x {cores}/N threads against 1 rank x {cores} threads"
                         if cpu else f"weak: {batch} rows per rank, one GPU per rank"))
    if not use_torch:
        print("note: PyTorch is not installed (or --no-torch): no DDP reference in this run")

    results = []
    for n in ranks:
        threads = max(1, cores // n) if cpu else None
        global_batch = batch if cpu else batch * n
        if cpu and global_batch % n:
            raise SystemExit(f"--batch {global_batch} does not split over {n} ranks")
        row = {"ranks": n, "threads_per_rank": threads, "global_batch": global_batch,
               "alpha": run_alpha(a, n, threads, global_batch, text, work)}
        row["torch"] = run_torch(a, n, threads, global_batch, work) if use_torch else None
        results.append(row)
        print(f"  measured {n} rank(s): alpha {row['alpha']['tok_s']:.0f} tok/s" +
              (f", torch DDP {row['torch']['tok_s']:.0f} tok/s" if row["torch"] else ""),
              flush=True)

    base = {k: results[0][k]["tok_s"] if results[0][k] else None for k in ("alpha", "torch")}
    base_ranks = results[0]["ranks"]
    print()
    print(f"{'ranks':>5} {'thr/rank':>8} {'batch':>6} {'alpha tok/s':>12} {'eff':>6} "
          f"{'ms/step':>8} {'not hidden ms':>14} {'CPU ms':>8} {'CPU eff':>7} "
          f"{'torch tok/s':>12} {'eff':>6} {'alpha/torch':>11}")
    for row in results:
        n = row["ranks"]
        ideal = 1.0 if cpu else n / base_ranks
        al = row["alpha"]
        row["alpha_efficiency"] = al["tok_s"] / (base["alpha"] * ideal)
        # CPU time per global batch, all ranks together, against one process (strong scaling)
        cpu_base = results[0]["alpha"]["cpu_ms_per_step"] * (1 if cpu else n / base_ranks)
        row["alpha_cpu_efficiency"] = cpu_base / al["cpu_ms_per_step"]
        t = row["torch"]
        if t and base["torch"]:
            row["torch_efficiency"] = t["tok_s"] / (base["torch"] * ideal)
        thr = str(row["threads_per_rank"] or "-")
        print(f"{n:>5} {thr:>8} {row['global_batch']:>6} {al['tok_s']:>12.0f} "
              f"{row['alpha_efficiency']:>6.1%} {al['ms_per_step']:>8.1f} "
              f"{al['not_hidden_ms']:>7.1f} ({al['not_hidden_ms'] / al['ms_per_step']:>4.1%}) "
              f"{al['cpu_ms_per_step']:>8.0f} {row['alpha_cpu_efficiency']:>7.1%} "
              + (f"{t['tok_s']:>12.0f} {row['torch_efficiency']:>6.1%} "
                 f"{al['tok_s'] / t['tok_s']:>11.2f}" if t else f"{'-':>12} {'-':>6} {'-':>11}"))
    print("\n" + json.dumps({"config": a.config, "backend": a.backend, "cores": cores,
                             "load": load, "results": results}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
