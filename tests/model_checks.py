"""Checks shared by the model tests: weights moved off the init, the model's gradients against
central finite differences of its own loss (float64 reference models), and the naive float64
forward the model must match."""

from __future__ import annotations

import math

from alpha.core.rng import Rng, Stream
from alpha.model import GPT, param_offsets
from alpha.tensor import get_backend


def perturbed(cfg, backend=None, dtype="f64", seed=1, scale=0.3):
    """A GPT (on the float64 reference backend unless given another) whose weights are far
    enough from the init (norm weights != 1) that every option and path shows in the output."""
    backend = backend or get_backend("reference")
    m = GPT(cfg, backend, Rng(seed), dtype=dtype)
    s = Stream((seed, 77))
    backend.copy(m.params, backend.from_array(
        [v + scale * z for v, z in zip(m.params.to_array(), s.normal(m.n_params))],
        (m.n_params,), dtype))
    return m


def assert_grads_match_fd(m, ids, tg, pick: Stream, h: float = 1e-5) -> None:
    """m's backward against (L(p + h) - L(p - h)) / 2h on two entries (drawn from `pick`) of
    every parameter; m is a float64 model on the reference backend. Leaves m in eval mode with
    its weights as they were."""
    be = m.backend
    m.zero_grad()
    m.forward(ids, tg)
    m.backward()
    grads, base = list(m.grads.to_array()), list(m.params.to_array())

    def loss_at(vals):
        be.copy(m.params, be.from_array(vals, (m.n_params,), "f64"))
        return m.forward(ids, tg)[1].item()

    m.eval()
    for name, (off, shape) in param_offsets(m.cfg).items():
        for j in pick.randint(2, math.prod(shape)):
            i = off + j
            vals = list(base)
            vals[i] = base[i] + h
            fp = loss_at(vals)
            vals[i] = base[i] - h
            fm = loss_at(vals)
            fd = (fp - fm) / (2 * h)
            assert abs(fd - grads[i]) <= 1e-6 * (1 + abs(fd)), (name, j, fd, grads[i])
    be.copy(m.params, be.from_array(base, (m.n_params,), "f64"))


def naive_logits(cfg, P, ids):
    """The GPT forward in plain Python lists (float64), every row of ids to its logits: the
    definition the model must match (GPT-2, and the norm, qk-norm, activation and logit-softcap
    options; learned positions, no attention softcap)."""
    C, nh = cfg.n_embd, cfg.n_head
    hs = C // nh
    eps = cfg.layernorm_eps

    def norm(x, w, b):
        if cfg.norm == "rmsnorm":
            r = 1 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
            return [v * r * w[i] for i, v in enumerate(x)]
        m = sum(x) / len(x)
        r = 1 / math.sqrt(sum((v - m) ** 2 for v in x) / len(x) + eps)
        return [(v - m) * r * w[i] + (b[i] if b else 0.0) for i, v in enumerate(x)]

    def rms_heads(x, w):  # every head of x (C,) normalised over its hs dims
        return [y for h in range(nh) for y in norm_rms(x[h * hs:(h + 1) * hs], w)]

    def norm_rms(x, w):
        r = 1 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
        return [v * r * w[i] for i, v in enumerate(x)]

    def lin(x, W, b, K, N):
        return [sum(x[k] * W[k * N + j] for k in range(K)) + (b[j] if b else 0.0)
                for j in range(N)]

    def act(x):
        if cfg.activation == "gelu":
            return [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
                    for v in x]
        if cfg.activation == "relu":
            return [max(v, 0.0) for v in x]
        if cfg.activation == "relu2":
            return [max(v, 0.0) ** 2 for v in x]
        silu = [v / (1 + math.exp(-v)) for v in x]
        if cfg.activation == "silu":
            return silu
        H = len(x) // 2  # swiglu: silu(gate) * up
        return [silu[i] * x[H + i] for i in range(H)]

    H = cfg.hidden_dim
    fc = 2 * H if cfg.activation == "swiglu" else H
    out = []
    for row in ids:
        T = len(row)
        x = [[P["wte"][t * C + c] + P["wpe"][p * C + c] for c in range(C)]
             for p, t in enumerate(row)]
        for i in range(cfg.n_layer):
            g = lambda n: P.get(f"h.{i}.{n}")  # noqa: E731
            a = [norm(v, g("ln_1.weight"), g("ln_1.bias")) for v in x]
            qkv = [lin(v, g("attn.c_attn.weight"), g("attn.c_attn.bias"), C, 3 * C) for v in a]
            if cfg.qk_norm:
                qkv = [rms_heads(v[:C], g("attn.q_norm.weight"))
                       + rms_heads(v[C:2 * C], g("attn.k_norm.weight")) + v[2 * C:] for v in qkv]
            y = [[0.0] * C for _ in range(T)]
            for hd in range(nh):
                for t in range(T):
                    q = qkv[t][hd * hs:(hd + 1) * hs]
                    sc = [sum(q[d] * qkv[s][C + hd * hs + d] for d in range(hs)) / math.sqrt(hs)
                          for s in range(t + 1)]
                    mx = max(sc)
                    e = [math.exp(v - mx) for v in sc]
                    z = sum(e)
                    for s in range(t + 1):
                        for d in range(hs):
                            y[t][hd * hs + d] += e[s] / z * qkv[s][2 * C + hd * hs + d]
            y = [lin(v, g("attn.c_proj.weight"), g("attn.c_proj.bias"), C, C) for v in y]
            x = [[a_ + b_ for a_, b_ in zip(u, v)] for u, v in zip(x, y)]
            m = [norm(v, g("ln_2.weight"), g("ln_2.bias")) for v in x]
            m = [act(lin(v, g("mlp.c_fc.weight"), g("mlp.c_fc.bias"), C, fc)) for v in m]
            m = [lin(v, g("mlp.c_proj.weight"), g("mlp.c_proj.bias"), H, C) for v in m]
            x = [[a_ + b_ for a_, b_ in zip(u, v)] for u, v in zip(x, m)]
        x = [norm(v, P["ln_f.weight"], P.get("ln_f.bias")) for v in x]
        head = P["wte"] if cfg.tie_embeddings else P["lm_head.weight"]
        cap = cfg.logit_softcap
        logits = [[sum(v[c] * head[k * C + c] for c in range(C)) for k in range(cfg.vocab_size)]
                  for v in x]
        if cap:
            logits = [[cap * math.tanh(z / cap) for z in r] for r in logits]
        out.append(logits)
    return out


def decode_on_every_path(m, run) -> list:
    """run() (a list of logits rows) with m decoding op by op, through `block_decode`, through
    `decode_step` (one thread each) and through `decode_step` on two threads: the four runs'
    rows, after checking that the backend declined neither fused op. Leaves the thread count as
    it was and both fused paths on."""
    from alpha.tensor import build

    runs = []
    before = build.num_threads()
    try:
        for threads, fused, step in ((1, False, False), (1, True, False), (1, True, True),
                                     (2, True, True)):
            build.set_num_threads(threads)
            m.fused_decode, m.step_decode = fused, step
            rows = run()
            assert (m.fused_decode, m.step_decode) == (fused, step)  # neither declined
            runs.append(rows)
    finally:
        build.set_num_threads(before)
        m.fused_decode = m.step_decode = True
    return runs


def assert_backends_agree(ref, fast, batch_on) -> None:
    """ref (the reference backend) and fast (a faster backend, the same f32 weights) give the
    same logits, loss and gradients on batch_on(backend)'s (ids, targets, ...) to f32
    rounding."""
    results = []
    for m in (ref, fast):
        ids, tg = batch_on(m.backend)[:2]
        logits, loss = m.forward(ids, tg)
        m.backward()
        results.append((list(logits.to_array()), loss.item(), list(m.grads.to_array())))
    (l0, s0, g0), (l1, s1, g1) = results
    assert all(abs(a - b) < 1e-4 for a, b in zip(l0, l1))
    assert abs(s0 - s1) < 1e-5
    top = max(abs(a) for a in g0)
    assert all(abs(a - b) < 1e-4 * (1 + top) for a, b in zip(g0, g1))
