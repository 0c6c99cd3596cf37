"""The parameter table: one function turns a ModelConfig into the ordered (name, shape) list that
lays out the flat parameter buffer (and, identically, the gradient and AdamW m/v buffers).

Names are GPT-2's (as in nanoGPT), so loading GPT-2 weights is a key copy. Matmul weights are stored
(in, out) like GPT-2's Conv1D; the token embedding wte and an untied lm_head.weight are (V, C).

Order: every parameter that gets weight decay (the 2-D matmul weights of the blocks, and an untied
LM head) comes first, as one contiguous range; the rest (embeddings, layernorm weights, biases)
follow as a second range. AdamW is then two calls, one per range (`decay_ranges`).

Options beyond GPT-2: `norm="rmsnorm"` drops the norms' biases (ln_1, ln_2, ln_f keep a weight);
`qk_norm` adds per layer `attn.q_norm.weight` and `attn.k_norm.weight` (head_dim,), initialised
to 1 and never decayed, like every norm weight.
"""

from __future__ import annotations

import math

from alpha.core.config import ModelConfig

DECAY = True
NO_DECAY = False


def _entries(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...], bool]]:
    C, V, H = cfg.n_embd, cfg.vocab_size, cfg.hidden_dim
    fc_out = 2 * H if cfg.activation == "swiglu" else H  # swiglu: [gate | up]
    decay, no_decay = [], []
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        decay += [
            (p + "attn.c_attn.weight", (C, 3 * C)),
            (p + "attn.c_proj.weight", (C, C)),
            (p + "mlp.c_fc.weight", (C, fc_out)),
            (p + "mlp.c_proj.weight", (H, C)),
        ]
    if not cfg.tie_embeddings:
        decay.append(("lm_head.weight", (V, C)))
    no_decay.append(("wte", (V, C)))
    if cfg.pos == "learned":  # rope has no position parameters
        no_decay.append(("wpe", (cfg.block_size, C)))
    ln_bias = cfg.bias and cfg.norm == "layernorm"  # rmsnorm has a weight only
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        no_decay.append((p + "ln_1.weight", (C,)))
        if ln_bias:
            no_decay.append((p + "ln_1.bias", (C,)))
        if cfg.bias:
            no_decay += [
                (p + "attn.c_attn.bias", (3 * C,)),
                (p + "attn.c_proj.bias", (C,)),
            ]
        if cfg.qk_norm:  # one weight for every head of q, one for k
            no_decay += [(p + "attn.q_norm.weight", (cfg.head_dim,)),
                         (p + "attn.k_norm.weight", (cfg.head_dim,))]
        no_decay.append((p + "ln_2.weight", (C,)))
        if ln_bias:
            no_decay.append((p + "ln_2.bias", (C,)))
        if cfg.bias:
            no_decay += [
                (p + "mlp.c_fc.bias", (fc_out,)),
                (p + "mlp.c_proj.bias", (C,)),
            ]
    no_decay.append(("ln_f.weight", (C,)))
    if ln_bias:
        no_decay.append(("ln_f.bias", (C,)))
    return [(n, s, DECAY) for n, s in decay] + [(n, s, NO_DECAY) for n, s in no_decay]


def param_table(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape)] in flat-buffer order: decayed weights first, then everything else."""
    return [(n, s) for n, s, _ in _entries(cfg)]


def param_offsets(cfg: ModelConfig) -> dict[str, tuple[int, tuple[int, ...]]]:
    """{name: (offset in elements, shape)} into the flat buffer."""
    out, off = {}, 0
    for name, shape in param_table(cfg):
        out[name] = (off, shape)
        off += math.prod(shape)
    return out


def num_params(cfg: ModelConfig) -> int:
    """Exact number of parameters (the flat buffers' length). A tied LM head counts once."""
    return sum(math.prod(s) for _, s in param_table(cfg))


def decay_ranges(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """{"decay": (start, end), "no_decay": (start, end)} in elements of the flat buffers."""
    n_decay = sum(math.prod(s) for _, s, d in _entries(cfg) if d)
    return {"decay": (0, n_decay), "no_decay": (n_decay, num_params(cfg))}


def init_std(cfg: ModelConfig, name: str) -> float | None:
    """GPT-2 init: the std of a normal init, or None for constants (biases 0, norm weights 1).
    Residual projections (attn.c_proj, mlp.c_proj) are scaled by 1/sqrt(2 * n_layer)."""
    if name.endswith(".bias") or ".ln_" in name or name.startswith("ln_f") or "_norm." in name:
        return None
    if name.endswith("c_proj.weight"):
        return 0.02 / math.sqrt(2 * cfg.n_layer)
    return 0.02


def init_constant(name: str) -> float:
    """The value of a constant-initialised parameter: 1 for norm weights, 0 for biases."""
    return 0.0 if name.endswith(".bias") else 1.0
