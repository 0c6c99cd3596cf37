"""Training-math parity: Alpha's Trainer beside the PyTorch twin, same weights, same batches.

    .venv-bench/bin/python bench/parity_torch.py               # 100 steps of the Shakespeare bench
    .venv-bench/bin/python bench/parity_torch.py --steps 50 --seed 7
    .venv-bench/bin/python bench/parity_torch.py --steps 2000 --no-f64 --every 200   # a whole run

Alpha runs its real Trainer step (`Trainer._one_step`: forward, backward, clip, AdamW, schedule) on
the config of bench/shakespeare_char.py; every batch it draws is recorded. PyTorch (the twin
`torch_gpt` of bench/train_speed.py, eager, 2 threads) starts from Alpha's initial parameters
(matmul weights transposed from Alpha's (in, out) to nn.Linear's (out, in)) and trains on the same
batches with torch.optim.AdamW, clip_grad_norm_ and the bench's learning rate. It runs twice: in
float32 (what the bench compares) and in float64 (a reference that shows how far float32 rounding
alone drifts). Printed: the gradients of step 1 per parameter (relative error against float64),
then per-step losses and gradient norms, then how far the final parameters are apart.

With identical math Alpha's and PyTorch-f32's distances to the float64 run are alike and small (a
few 1e-5 relative on the loss for the first tens of steps, growing slowly); a difference that
shows from step 1 on, or one that grows much faster for Alpha, is a real difference in the math.
At the end both final models are evaluated on the same validation batches (Alpha's eval windows
for the seed, the bench's 200 batches): after a whole run this says whether the two frameworks,
given the same draws, end at the same validation loss.
This is a diagnostic, not a test: it needs torch, which Alpha never imports itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from shakespeare_char import DATA, MODEL, TRAIN, lr_at  # noqa: E402


def torch_name(name: str) -> tuple[str, bool]:
    """Alpha parameter name -> (twin's name, transpose?)."""
    if name in ("wte", "wpe"):
        return name + ".weight", False
    if name.endswith("mlp.c_proj.weight"):
        return name.replace("mlp.c_proj.weight", "mlp_proj.weight"), True
    for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc"):
        if part + ".weight" in name:
            return name.replace(part, part.split(".")[1]), True
    return name, False  # layernorm weights (and biases)


def run_alpha(data: str, steps: int, seed: int):
    """(initial params {name: (shape, list)}, batches [(x, y)], rows [{loss, grad_norm, lr}],
    step-1 grads {name: list}, final params {name: list}, vocab size, val batches [(x, y)])."""
    from alpha.core.config import resolve
    from alpha.core.rng import Rng
    from alpha.train.data import BatchSampler
    from alpha.train.trainer import Trainer

    grads1 = {}

    def after_backward(trainer, step):
        if step == 1:
            g = trainer.model.gradients()
            grads1.update({n: trainer.backend.to_array(t).tolist() for n, t in g.items()})

    with tempfile.TemporaryDirectory() as tmp:
        train = {**TRAIN, "data": data, "tokenizer": "char", "seed": seed,
                 "eval_interval": 0, "sample_interval": 0, "checkpoint_interval": 0,
                 "run_dir": os.path.join(tmp, "run")}
        cfg = resolve("text", "", {"model": MODEL, "train": train})
        trainer = Trainer(cfg, out=None, hooks={"after_backward": after_backward})
        gpt = trainer.model
        shapes = dict(gpt.table)
        init = {n: (shapes[n], list(v)) for n, v in gpt.state_dict().items()}
        batches = []
        sampler_next = trainer.sampler.next_batch

        def recording_next():
            x, y = sampler_next()
            batches.append((list(x), list(y)))
            return x, y

        trainer.sampler.next_batch = recording_next
        rows = [trainer._one_step() for _ in range(steps)]
        final = {n: list(v) for n, v in gpt.state_dict().items()}
        trainer.folder.close()
        # the validation batches Trainer.evaluate draws for this seed
        tc = trainer.train_config
        val_sampler = BatchSampler(trainer.data.val, tc.batch_size,
                                   trainer.model_config.block_size, Rng(tc.seed), stream="eval")
        val = [tuple(map(list, val_sampler.next_batch())) for _ in range(tc.eval_iters)]
    return init, batches, rows, grads1, final, trainer.model_config.vocab_size, val


def twin(params, vocab: int, dtype):
    """The torch twin holding Alpha's parameters {name: (shape, values)}."""
    import torch

    from train_speed import torch_gpt

    model = torch_gpt(vocab, MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"],
                      MODEL["block_size"], bias=MODEL["bias"], dropout=MODEL["dropout"]).to(dtype)
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, (shape, values) in params.items():
            tname, transpose = torch_name(name)
            t = torch.tensor(values, dtype=torch.float64).view(shape)
            own[tname].copy_(t.T if transpose else t)
    return model


def val_loss(model, val) -> float:
    """Mean loss over the (x, y) validation batches, in eval mode."""
    import torch

    B, T = TRAIN["batch_size"], MODEL["block_size"]
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, y in val:
            xb = torch.tensor(x, dtype=torch.long).view(B, T)
            yb = torch.tensor(y, dtype=torch.long).view(B, T)
            total += model(xb, yb)[1].item()
    model.train()
    return total / len(val)


def run_torch(init, batches, vocab: int, dtype, n_iters: int):
    """The twin on the same weights and batches: (losses, grad norms, step-1 grads, model)."""
    import torch

    from train_speed import torch_optimizer

    B, T = TRAIN["batch_size"], MODEL["block_size"]
    model = twin(init, vocab, dtype)
    own = dict(model.named_parameters())
    opt = torch_optimizer(model, TRAIN["lr"], TRAIN["weight_decay"], TRAIN["beta1"],
                          TRAIN["beta2"])
    losses, norms, grads1 = [], [], {}
    for step, (x, y) in enumerate(batches, start=1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], n_iters)
        xb = torch.tensor(x, dtype=torch.long).view(B, T)
        yb = torch.tensor(y, dtype=torch.long).view(B, T)
        _, loss = model(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:
            grads1 = {n: p.grad.detach().to(torch.float64).clone() for n, p in own.items()}
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        losses.append(loss.item())
        norms.append(float(norm))
    return losses, norms, grads1, model


def rel(a, b) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def tensor_rel(a, b) -> float:
    """||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--data", default=DATA)
    p.add_argument("--every", type=int, default=10, help="print every n-th step")
    p.add_argument("--no-f64", action="store_true", help="skip the float64 reference run")
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("needs torch: run it with .venv-bench/bin/python", file=sys.stderr)
        return 2
    torch.set_num_threads(2)

    init, batches, rows, ga, fa, vocab, val = run_alpha(args.data, args.steps, args.seed)
    n_iters = TRAIN["iters"]
    l32, n32, g32, m32 = run_torch(init, batches, vocab, torch.float32, n_iters)
    if args.no_f64:
        l64, n64, g64, m64 = l32, n32, g32, m32  # distances below are then to torch f32
    else:
        l64, n64, g64, m64 = run_torch(init, batches, vocab, torch.float64, n_iters)
    ref = "torch f32" if args.no_f64 else "f64"
    f32 = {n: p.detach().to(torch.float64) for n, p in m32.named_parameters()}
    f64 = {n: p.detach().to(torch.float64) for n, p in m64.named_parameters()}

    shapes = {n: s for n, (s, _) in init.items()}

    def alpha_tensor(values, name):
        t = torch.tensor(values, dtype=torch.float64).view(shapes[name])
        return t.T if torch_name(name)[1] else t

    print(f"step 1 gradients, ||g - g_ref|| / ||g_ref||, ref = {ref} (vocab {vocab}, "
          f"seed {args.seed}):")
    print(f"  {'parameter':<28}{'alpha f32':>12}{'torch f32':>12}")
    for name in shapes:
        tname = torch_name(name)[0]
        ea = tensor_rel(alpha_tensor(ga[name], name), g64[tname])
        et = tensor_rel(g32[tname], g64[tname])
        print(f"  {name:<28}{ea:>12.2e}{et:>12.2e}")

    print(f"\nper step: loss (alpha, torch f32, {ref}), relative distance to {ref}, grad norms")
    print(f"  {'step':>5}{'alpha':>10}{'torch32':>10}{'ref':>10}{'a-ref':>10}{'t32-ref':>10}"
          f"{'a-t32':>10}{'|g| alpha':>11}{'|g| t32':>10}{'lr a/t':>9}")
    worst = {"a": 0.0, "t": 0.0}
    for i, row in enumerate(rows):
        step = i + 1
        la, lt, l6 = row["loss"], l32[i], l64[i]
        worst["a"] = max(worst["a"], rel(la, l6))
        worst["t"] = max(worst["t"], rel(lt, l6))
        lr_t = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], n_iters)
        if step <= 5 or step % args.every == 0 or step == len(rows):
            print(f"  {step:>5}{la:>10.5f}{lt:>10.5f}{l6:>10.5f}{rel(la, l6):>10.1e}"
                  f"{rel(lt, l6):>10.1e}{rel(la, lt):>10.1e}{row['grad_norm']:>11.4f}"
                  f"{n32[i]:>10.4f}{row['lr'] / lr_t:>9.6f}")
    print(f"  worst relative loss distance to {ref}: alpha {worst['a']:.2e}, "
          f"torch f32 {worst['t']:.2e}")

    print(f"\nparameters after {len(rows)} steps, ||p - p_ref|| / ||p_ref||:")
    tot_a = tot_t = 0.0
    for name in shapes:
        tname = torch_name(name)[0]
        tot_a = max(tot_a, tensor_rel(alpha_tensor(fa[name], name), f64[tname]))
        tot_t = max(tot_t, tensor_rel(f32[tname], f64[tname]))
    print(f"  worst parameter: alpha f32 {tot_a:.2e}, torch f32 {tot_t:.2e}")

    final_alpha = {n: (shapes[n], fa[n]) for n in shapes}
    va = val_loss(twin(final_alpha, vocab, torch.float32), val)
    print(f"\nvalidation loss after {len(rows)} steps ({len(val)} batches, Alpha's eval windows): "
          f"alpha {va:.4f}, torch f32 {val_loss(m32, val):.4f}"
          + ("" if args.no_f64 else f", torch f64 {val_loss(m64, val):.4f}"))
    return 0

if __name__ == "__main__":
    sys.exit(main())
