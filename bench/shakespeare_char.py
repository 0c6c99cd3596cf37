"""Tiny Shakespeare, character level: nanoGPT's baby GPT scaled to two cores, Alpha beside PyTorch.

    python bench/shakespeare_char.py               # 2000 steps, both frameworks
    python bench/shakespeare_char.py --iters 200   # a quick look
    python bench/shakespeare_char.py --seeds 8 --jobs 8    # 8 seeds each, 8 runs at a time
    python bench/shakespeare_char.py --recipes baby,modern --no-torch   # the modern recipe

The config (both frameworks): char tokenizer; 4 layers, 4 heads, 128 dim, block 64, batch 12,
no biases, dropout 0, tied embeddings; AdamW lr 1e-3 with 100 warmup steps and cosine decay to
1e-4, beta2 0.99, weight decay 0.1 (matmul weights only), gradient clip 1.0; validation is the last
10% of the file, evaluated at the end over 200 batches. Reported: final validation loss and wall
time (tokenizing, training and the evaluation). Target: val loss <= 1.90 in about 3 minutes.

The final loss moves by about +-0.015 from seed to seed (initial weights, batches and the 200
random eval batches), more than most differences worth measuring: `--seeds N` runs N seeds per
framework and reports the mean, the standard error and the difference in standard errors. Each run
also reports `val_full`, the loss over every validation window (stride block_size), which has no
eval-sampling noise. See bench/shakespeare_gap.md for what was measured with it.

Every run is its own process with `--threads` threads (2: `ALPHA_NUM_THREADS=2`, torch 2 threads);
`--jobs N` runs N of them at once (on a machine with 2N cores). `--torch-device cuda` trains the
PyTorch twin on a GPU instead (its random draws still come from the CPU generator, so they are the
same draws; TF32 off), which leaves the CPU cores to Alpha. `--twin VARIANT` makes the twin take
some of its draws from Alpha instead (`init`, `data`, `eval`, `vocab`, joined with '+', or `all`):
the swap-one-stream experiments. `--recipes baby,modern` runs Alpha's modern recipe (rotary
positions, RMSNorm, relu^2, Muon; see RECIPES) beside the baby config.

PyTorch runs when torch is importable here or under .venv-bench/bin/python; otherwise the script
says so and reports Alpha alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))

MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, dropout=0.0)
TRAIN = dict(batch_size=12, iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9,
             beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_iters=200)
TARGET_LOSS = 1.90
VAL_FRACTION = 0.1  # Alpha's split: the last int(0.1 n) tokens are validation

# Alpha's recipes: overrides of MODEL and TRAIN. "modern" holds the parameter count of the baby
# config (within 5%) and must not take longer; bench/shakespeare_gap.md has its figures.
RECIPES = {
    "baby": ({}, {}),
    "modern": ({"pos": "rope", "norm": "rmsnorm", "activation": "relu2"},
               {"optimizer": "muon", "iters": 1200}),
}
TWIN_DRAWS = ("init", "data", "eval", "vocab")


def lr_at(step, lr, min_lr, warmup, iters):
    if warmup and step <= warmup:
        return lr * step / warmup
    if step >= iters:
        return min_lr
    coeff = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (iters - warmup)))
    return min_lr + coeff * (lr - min_lr)


def full_val_starts(n_val: int) -> list[int]:
    """Every validation window once: starts 0, T, 2T, ... in whole batches (the last partial
    batch is left out), so both frameworks measure the same positions."""
    B, T = TRAIN["batch_size"], MODEL["block_size"]
    windows = (n_val - 1) // T
    return [k * T for k in range(windows - windows % B)]


# ---- Alpha ------------------------------------------------------------------------------------


def parse_recipe(spec: str) -> tuple[dict, dict]:
    """"NAME[:key=value...]" -> (model overrides, train overrides): a recipe of RECIPES with some
    fields changed (e.g. "modern:muon_lr=0.04:iters=1600"), for tuning. Values are JSON when they
    parse as JSON, else strings; a key goes to the model when ModelConfig has that field."""
    import dataclasses

    sys.path.insert(0, ROOT)
    from alpha.core.config import ModelConfig

    name, *sets = spec.split(":")
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    model_over, train_over = dict(RECIPES[name][0]), dict(RECIPES[name][1])
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for item in sets:
        key, eq, text = item.partition("=")
        if not eq:
            raise ValueError(f"recipe {spec!r}: {item!r} is not key=value")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        (model_over if key in model_fields else train_over)[key] = value
    return model_over, train_over


def run_alpha(data: str, iters: int, seed: int, recipe: str = "baby") -> dict:
    sys.path.insert(0, ROOT)
    from array import array

    from alpha.core.config import resolve
    from alpha.train.evaluation import upload
    from alpha.train.trainer import Trainer

    model_over, train_over = parse_recipe(recipe)
    # a recipe's own step count scales with --iters (a quick look shortens every recipe alike)
    iters = round(train_over.pop("iters", TRAIN["iters"]) * iters / TRAIN["iters"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train = {**TRAIN, **train_over, "iters": iters, "data": data, "tokenizer": "char",
                 "seed": seed, "eval_interval": iters, "sample_interval": 0,
                 "checkpoint_interval": 0, "log_interval": 100,
                 "run_dir": os.path.join(tmp, "run")}
        cfg = resolve("text", "", {"model": {**MODEL, **model_over}, "train": train})
        trainer = Trainer(cfg, out=sys.stderr)
        result = trainer.train()
        wall = time.perf_counter() - t0
        val, B, T = trainer.data.val, TRAIN["batch_size"], MODEL["block_size"]
        starts = full_val_starts(len(val))
        total = 0.0
        trainer.model.eval()
        for b in range(0, len(starts), B):
            x, y = array("i"), array("i")
            for s in starts[b:b + B]:
                x.extend(val[s:s + T])
                y.extend(val[s + 1:s + T + 1])
            _, loss = trainer.model.forward(*upload(trainer.backend, x, y, T))
            total += float(loss.to_array()[0])
    return {"framework": "alpha cpu", "recipe": recipe, "val_loss": result.val_loss,
            "val_full": total / (len(starts) // B), "train_loss": result.loss, "wall_s": wall,
            "train_s": result.elapsed_s, "n_params": trainer.model.n_params}


# ---- the PyTorch twin -------------------------------------------------------------------------


def char_split(data: str):
    """(train ids, val ids, the file's characters): sorted characters like nanoGPT (Alpha's ids
    for them are the same; Alpha adds <unk> after them), split by Alpha's rule."""
    with open(data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = [stoi[c] for c in text]
    cut = len(ids) - int(len(ids) * VAL_FRACTION)
    return ids[:cut], ids[cut:], chars


def alpha_init_params(vocab: int, seed: int) -> dict:
    """{name: (shape, values)}: the weights Alpha's GPT starts from for `seed`."""
    sys.path.insert(0, ROOT)
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend

    gpt = GPT(ModelConfig(vocab_size=vocab, **MODEL), get_backend("cpu"), Rng(seed))
    shapes = dict(gpt.table)
    return {n: (shapes[n], list(v)) for n, v in gpt.state_dict().items()}


def load_alpha_params(model, params: dict, vocab: int) -> None:
    """Copy Alpha's {name: (shape, values)} into the twin (matmul weights transposed); rows of
    the embedding past the twin's vocabulary (Alpha's <unk>) are dropped."""
    import torch

    sys.path.insert(0, HERE)
    from parity_torch import torch_name

    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, (shape, values) in params.items():
            tname, transpose = torch_name(name)
            t = torch.tensor(values, dtype=torch.float32).view(shape)
            if name == "wte":
                t = t[:vocab]
            own[tname].copy_(t.T if transpose else t)


def run_torch(data: str, iters: int, seed: int, draws: frozenset, device: str) -> dict:
    """The twin (bench/train_speed.py's torch_gpt) with PyTorch's own draws, or some of them
    taken from Alpha (`draws` within TWIN_DRAWS). All random draws use the CPU generator."""
    import torch

    sys.path.insert(0, HERE)
    from train_speed import torch_gpt, torch_optimizer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")) if device == "cpu" else 1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train_ids, val_ids, chars = char_split(data)
    vocab = len(chars) + 1 if "vocab" in draws else len(chars)
    B, T = TRAIN["batch_size"], MODEL["block_size"]
    model = torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"], T,
                      bias=MODEL["bias"], dropout=MODEL["dropout"])
    if "init" in draws:
        load_alpha_params(model, alpha_init_params(len(chars) + 1, seed), vocab)
    model.to(device)
    opt = torch_optimizer(model, TRAIN["lr"], TRAIN["weight_decay"], TRAIN["beta1"],
                          TRAIN["beta2"])
    train_t = torch.tensor(train_ids, dtype=torch.long)
    val_t = torch.tensor(val_ids, dtype=torch.long)
    samplers = {}
    if draws & {"data", "eval"}:
        sys.path.insert(0, ROOT)
        from alpha.core.rng import Rng
        from alpha.train.data import BatchSampler

        samplers["data"] = BatchSampler(train_ids, B, T, Rng(seed), stream="data")
        samplers["eval"] = BatchSampler(val_ids, B, T, Rng(seed), stream="eval")

    def batch(src, which):
        if which in draws:
            ix = samplers[which].starts()
        else:
            ix = torch.randint(len(src) - T, (B,)).tolist()
        return windows(src, ix)

    def windows(src, ix):
        x = torch.stack([src[i:i + T] for i in ix])
        y = torch.stack([src[i + 1:i + T + 1] for i in ix])
        return x.to(device), y.to(device)

    t_train = time.perf_counter()
    loss = None
    for step in range(1, iters + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], iters)
        x, y = batch(train_t, "data")
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        if step % 100 == 0:
            print(f"torch step {step}/{iters} | loss {loss.item():.4f} | "
                  f"{time.perf_counter() - t_train:.0f}s", file=sys.stderr)
    if device != "cpu":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t_train
    model.eval()
    total = 0.0
    with torch.no_grad():
        for _ in range(TRAIN["eval_iters"]):
            _, vl = model(*batch(val_t, "eval"))
            total += vl.item()
        val_loss = total / TRAIN["eval_iters"]
        wall = time.perf_counter() - t0
        starts = full_val_starts(len(val_ids))
        full, p_extra = 0.0, 0.0
        for b in range(0, len(starts), B):
            x, y = windows(val_t, starts[b:b + B])
            logits, vl = model(x, y)
            full += vl.item()
            if vocab > len(chars):  # how much probability Alpha's <unk> row keeps
                p_extra += torch.softmax(logits, -1)[..., len(chars):].sum(-1).mean().item()
    n = len(starts) // B
    name = "pytorch " + torch.__version__ + ("" if device == "cpu" else " " + device)
    out = {"framework": name, "twin": "+".join(sorted(draws)) or "own", "recipe": "baby",
           "val_loss": val_loss, "val_full": full / n, "train_loss": loss.item(),
           "wall_s": wall, "train_s": train_s,
           "n_params": sum(p.numel() for p in model.parameters())}
    if vocab > len(chars):
        out["p_unk"] = p_extra / n
    return out


# ---- running many runs ------------------------------------------------------------------------


def parse_twin(text: str) -> frozenset:
    if text in ("own", ""):
        return frozenset()
    if text == "all":
        return frozenset(TWIN_DRAWS)
    parts = frozenset(text.split("+"))
    unknown = parts - set(TWIN_DRAWS)
    if unknown:
        raise ValueError(f"--twin {text}: unknown part(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(TWIN_DRAWS)}, all, own)")
    return parts


def child_env(torch_side: bool, threads: int) -> dict:
    env = dict(os.environ)
    env["ALPHA_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    if torch_side:
        sys.path.insert(0, HERE)
        from train_speed import machine_busy

        if machine_busy():  # OpenMP's spinning barrier is several times slower on a busy box
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def job_cmd(job: dict, args) -> list[str]:
    py = job["python"]
    cmd = [py, os.path.abspath(__file__), "--one", job["side"], "--iters", str(args.iters),
           "--data", args.data, "--seed", str(job["seed"])]
    if job["side"] == "alpha":
        cmd += ["--recipes", job["recipe"]]
    else:
        cmd += ["--twin", job["twin"], "--torch-device", args.torch_device]
    return cmd


def run_jobs(jobs: list[dict], args) -> list[dict]:
    """Run the jobs, `args.jobs` CPU runs and `args.torch_jobs` GPU runs at a time, each in its own
    process; a result line per finished run (appended to --out as it comes)."""
    pools = {"cpu": args.jobs, "gpu": args.torch_jobs}
    waiting = {"cpu": [j for j in jobs if j["pool"] == "cpu"],
               "gpu": [j for j in jobs if j["pool"] == "gpu"]}
    running, results = [], []
    logs = tempfile.mkdtemp(prefix="shakespeare-")
    t0 = time.perf_counter()
    while running or waiting["cpu"] or waiting["gpu"]:
        if args.deadline and time.perf_counter() - t0 > 60 * args.deadline:
            for pool in pools:  # no new runs: finish the ones under way (balanced by seed)
                skipped = len(waiting[pool])
                if skipped:
                    print(f"deadline: {skipped} {pool} runs not started", flush=True)
                waiting[pool] = []
        for pool in pools:
            while waiting[pool] and sum(r[0]["pool"] == pool for r in running) < pools[pool]:
                job = waiting[pool].pop(0)
                quiet = args.jobs > 1 or (pool == "gpu" and args.torch_jobs > 1)
                log = open(os.path.join(logs, f"{len(results) + len(running)}.log"), "w")
                proc = subprocess.Popen(job_cmd(job, args), stdout=subprocess.PIPE,
                                        stderr=log if quiet else None, text=True, cwd=ROOT,
                                        env=child_env(job["side"] == "torch", args.threads))
                running.append((job, proc, log))
        time.sleep(0.2)
        for item in list(running):
            job, proc, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            out = proc.stdout.read()
            if proc.returncode != 0:
                with open(log.name) as f:
                    tail = f.read()[-2000:]
                print(f"{job['side']} seed {job['seed']} failed:\n{tail}", file=sys.stderr)
                continue
            r = {**json.loads(out.strip().splitlines()[-1]), "seed": job["seed"]}
            results.append(r)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
            done, left = len(results), len(running) + len(waiting["cpu"]) + len(waiting["gpu"])
            elapsed = time.perf_counter() - t0
            print(f"[{done}/{done + left}] {label(r)} seed {r['seed']}: val {r['val_loss']:.4f} "
                  f"full {r['val_full']:.4f} ({r['wall_s']:.0f}s) | {elapsed / 60:.1f} min, "
                  f"ETA {elapsed / done * left / 60:.1f} min", flush=True)
    return results


def label(r: dict) -> str:
    if r["framework"].startswith("alpha"):
        return r["framework"] + ("" if r.get("recipe", "baby") == "baby" else " " + r["recipe"])
    twin = r.get("twin", "own")
    return r["framework"] + ("" if twin == "own" else f" [alpha {twin}]")


def group_order(name: str) -> tuple:
    """Alpha's baby config first (the reference), then Alpha's other recipes, then PyTorch with
    its own draws, then the twin variants."""
    return (not name.startswith("alpha"), name != "alpha cpu", "[" in name, name)


def summarize(runs: list[dict]) -> dict:
    """Mean, sample std, standard error and range of the val losses, mean wall time."""
    out = {"runs": len(runs), "wall_s_mean": sum(r.get("wall_s", 0) for r in runs) / len(runs),
           "n_params": runs[0].get("n_params")}
    for key in ("val_loss", "val_full"):
        vals = [r[key] for r in runs]
        mean = sum(vals) / len(vals)
        k = len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (k - 1)) if k > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "se": std / math.sqrt(k), "min": min(vals),
                    "max": max(vals)}
    return out


def report(results: list[dict], iters: int) -> dict:
    print(f"\ntiny shakespeare char, {iters} steps, 4L 4H 128d, block 64, batch 12:")
    for r in sorted(results, key=lambda r: (label(r), r["seed"])):
        ok = "meets" if r["val_loss"] <= TARGET_LOSS else "misses"
        print(f"  {label(r):<34} seed {r['seed']:<6} val {r['val_loss']:.4f} ({ok} "
              f"<= {TARGET_LOSS}), full val {r['val_full']:.4f}, train {r['train_loss']:.4f}"
              + (f", wall {r['wall_s']:.1f}s" if "wall_s" in r else ""))
    groups = sorted(dict.fromkeys(label(r) for r in results), key=group_order)
    summary = {g: summarize([r for r in results if label(r) == g]) for g in groups}
    print("  per group: mean +- standard error (sample std) [min..max]")
    for g, m in summary.items():
        v, f = m["val_loss"], m["val_full"]
        print(f"  {g:<34} {m['runs']:>2} runs  val {v['mean']:.4f} +- {v['se']:.4f} "
              f"({v['std']:.4f}) [{v['min']:.4f}..{v['max']:.4f}]  full val {f['mean']:.4f} +- "
              f"{f['se']:.4f} ({f['std']:.4f})"
              + (f"  wall {m['wall_s_mean']:.1f}s" if m["wall_s_mean"] else ""))
    if len(groups) > 1:
        base = summary[groups[0]]
        print(f"  against {groups[0]}: difference of means (in standard errors of the difference)")
        for g in groups[1:]:
            m = summary[g]
            parts = []
            for key in ("val_loss", "val_full"):
                d = m[key]["mean"] - base[key]["mean"]
                se = math.hypot(m[key]["se"], base[key]["se"])
                parts.append(f"{key} {d:+.4f} ({d / se if se else 0:+.1f} se)")
            wall = (f", wall x{m['wall_s_mean'] / base['wall_s_mean']:.2f}"
                    if m["wall_s_mean"] and base["wall_s_mean"] else "")
            print(f"  {g:<34} {', '.join(parts)}{wall}")
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=TRAIN["iters"])
    p.add_argument("--data", default=DATA)
    p.add_argument("--seed", type=int, default=1337, help="the first seed")
    p.add_argument("--seeds", type=int, default=1, help="how many seeds, from --seed up")
    p.add_argument("--torch-seeds", type=int, default=0, help="PyTorch seeds (default --seeds)")
    p.add_argument("--jobs", type=int, default=1, help="CPU runs at a time (--threads each)")
    p.add_argument("--torch-device", default="cpu", help="cpu, or cuda for the PyTorch twin")
    p.add_argument("--torch-jobs", type=int, default=0,
                   help="PyTorch runs at a time on the GPU (--torch-device cuda; default 2)")
    p.add_argument("--twin", action="append", default=None, metavar="VARIANT",
                   help="own (default), all, or init/data/eval/vocab joined with '+': which draws "
                        "the PyTorch twin takes from Alpha (repeat for several)")
    p.add_argument("--recipes", default="baby",
                   help="Alpha recipes, comma-separated: " + ", ".join(RECIPES)
                   + "; NAME:key=value:... changes fields of one (tuning)")
    p.add_argument("--threads", type=int, default=2, help="threads per run")
    p.add_argument("--no-torch", action="store_true", help="Alpha only")
    p.add_argument("--no-alpha", action="store_true", help="PyTorch only")
    p.add_argument("--deadline", type=float, default=0.0,
                   help="start no new run after this many minutes (0: none)")
    p.add_argument("--out", default="", help="append each run's JSON line to this file")
    p.add_argument("--report", metavar="FILE", help="only summarize the JSON lines of FILE "
                   "(--out of earlier calls, or bench/shakespeare_gap_runs.jsonl)")
    p.add_argument("--one", choices=("alpha", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.report:
        with open(args.report) as f:
            results = [json.loads(line) for line in f if line.strip()]
        report(results, args.iters)
        return 0
    if not os.path.isfile(args.data):
        print(f"error: {args.data} not found (pass --data FILE)", file=sys.stderr)
        return 2
    recipes = args.recipes.split(",")
    try:
        for r in recipes:
            parse_recipe(r)
    except (ValueError, ImportError) as e:
        print(f"error: --recipes: {e}", file=sys.stderr)
        return 2
    try:
        twins = [parse_twin(t) for t in (args.twin or ["own"])]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.one == "alpha":
        print(json.dumps(run_alpha(args.data, args.iters, args.seed, recipes[0])))
        return 0
    if args.one == "torch":
        print(json.dumps(run_torch(args.data, args.iters, args.seed, twins[0], args.torch_device)))
        return 0

    sys.path.insert(0, HERE)
    from train_speed import busy_note, machine_busy, torch_python

    if machine_busy():
        print(busy_note())
    tpy = None if args.no_torch else torch_python()
    if not tpy and not args.no_torch:
        print("PyTorch is not importable here and .venv-bench has none: Alpha alone "
              "(python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0)")
    gpu = args.torch_device != "cpu"
    args.torch_jobs = args.torch_jobs or (2 if gpu else args.jobs)
    seeds = [args.seed + k for k in range(args.seeds)]
    tseeds = [args.seed + k for k in range(args.torch_seeds or args.seeds)]
    jobs = []
    if not args.no_alpha:  # the first group is the reference the others are compared with
        jobs += [{"side": "alpha", "seed": s, "recipe": r, "python": sys.executable,
                  "pool": "cpu"} for r in recipes for s in seeds]
    if tpy:
        names = ["+".join(sorted(t)) or "own" for t in twins]
        # the first two variants for every seed first, then the others seed by seed: a
        # --deadline then cuts the later swaps, not the main comparison
        order = [(s, t) for s in tseeds for t in names[:2]]
        order += [(s, t) for s in tseeds for t in names[2:]]
        jobs += [{"side": "torch", "seed": s, "twin": t, "python": tpy,
                  "pool": "gpu" if gpu else "cpu"} for s, t in order]
    t0 = time.perf_counter()
    results = run_jobs(jobs, args)
    if not results:
        print("error: every run failed", file=sys.stderr)
        return 1
    summary = report(results, args.iters)
    print(f"  {len(results)} runs in {(time.perf_counter() - t0) / 60:.1f} min, {args.jobs} CPU "
          f"runs at a time" + (f", {args.torch_jobs} PyTorch runs on {args.torch_device}"
                                if gpu else ""))
    print(json.dumps({"iters": args.iters, "seeds": seeds, "results": results,
                      "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
