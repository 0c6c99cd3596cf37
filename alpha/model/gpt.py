"""The GPT: GPT-2's architecture (nanoGPT's model.py), on any backend, through the autograd tape.

    ids (B, T) -> wte[ids] + wpe[0..T) -> dropout
               -> n_layer x Block: x = x + dropout(attn(ln_1(x)));  x = x + dropout(mlp(ln_2(x)))
               -> ln_f -> logits = x @ wte^T (or lm_head.weight^T) -> mean cross-entropy

All parameters live in ONE flat buffer (`params`), their gradients in another (`grads`), laid out by
`alpha.model.params.param_table`; each named parameter is a view. The optimizer state (AdamW m, v)
is the trainer's: two more flat buffers of the same length, updated over `decay_ranges`.

Modes: `train()` records the tape and applies dropout; `eval()` does neither (and is what the
inference engine must match). Buffers of a forward are reused by the next forward (see
`alpha.autograd.tape`): read the logits and loss you need before running another.
"""

from __future__ import annotations

import math
from array import array

from alpha.autograd import ops
from alpha.autograd.tape import Tape, Var
from alpha.core.config import ModelConfig
from alpha.core.errors import CheckpointError
from alpha.core.rng import Rng
from alpha.model import params as P


class GPT:
    def __init__(self, cfg: ModelConfig, backend, rng: Rng | None = None, *, dtype: str = "f32",
                 init: bool = True):
        """A model with GPT-2 init from `rng`'s "init" stream (seed 1337 when None). `rng`'s
        "dropout" stream masks dropout during training; the trainer saves `rng.state()`."""
        self.cfg = cfg
        self.backend = backend
        self.dtype = dtype
        self.rng = rng if rng is not None else Rng(1337)
        self.table = P.param_table(cfg)  # [(name, shape)] in flat order
        self.n_params = P.num_params(cfg)
        ranges = P.decay_ranges(cfg)
        self.decay_range = ranges["decay"]  # (start, end) of the weight-decayed parameters
        self.no_decay_range = ranges["no_decay"]  # (start, end) of the rest
        self.params = backend.zeros((self.n_params,), dtype)  # flat (n_params,)
        self.grads = backend.zeros((self.n_params,), dtype)  # flat (n_params,)
        self.vars: dict[str, Var] = {}  # name -> Var(param view, grad view)
        off = 0
        for name, shape in self.table:
            n = math.prod(shape)
            value = self.params.narrow(0, off, n).view(shape)
            grad = self.grads.narrow(0, off, n).view(shape)
            self.vars[name] = Var(value, grad)
            off += n
        self.tape = Tape(backend)
        self.training = True
        self._positions: dict[int, object] = {}  # T -> i32 tensor 0..T-1
        self._loss: Var | None = None
        if init:
            self.init_weights()

    # ---- parameters ------------------------------------------------------------------------
    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02); residual projections N(0, 0.02/sqrt(2 n_layer)); biases 0,
        norm weights 1. Normals come from the "init" stream, in table order."""
        be, stream = self.backend, self.rng.stream("init")
        for name, shape in self.table:
            view = self.vars[name].data
            std = P.init_std(self.cfg, name)
            if std is None:
                be.fill(view, P.init_constant(name))
                continue
            n = view.numel
            pos = stream.take(2 * ((n + 1) // 2))
            if self.dtype == "f32":
                be.rng_normal(view, stream.key, pos, 0.0, std)
            else:  # draw in f32 like every run, then widen: f64 models start where f32 ones do
                tmp = be.empty(shape, "f32")
                be.rng_normal(tmp, stream.key, pos, 0.0, std)
                be.cast(view, tmp)

    def parameters(self) -> dict:
        """{name: Tensor view into the flat params buffer}, in table order."""
        return {name: v.data for name, v in self.vars.items()}

    def gradients(self) -> dict:
        """{name: Tensor view into the flat grads buffer}, in table order."""
        return {name: v.grad for name, v in self.vars.items()}

    def num_params(self) -> int:
        return self.n_params

    def param_groups(self) -> list[tuple[object, object, bool]]:
        """[(params slice, grads slice, weight_decay?)]: the flat ranges AdamW steps over."""
        out = []
        for (s, e), decay in ((self.decay_range, True), (self.no_decay_range, False)):
            if e > s:
                out.append((self.params.narrow(0, s, e - s), self.grads.narrow(0, s, e - s), decay))
        return out

    def zero_grad(self) -> None:
        self.backend.fill(self.grads, 0.0)

    def state_dict(self) -> dict[str, array]:
        """{name: array of the parameter, row-major} for checkpoints."""
        return {name: self.backend.to_array(v.data) for name, v in self.vars.items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy {name: sequence of numbers} into the parameters. Every name of the table must be
        present with the right number of elements; an unknown name is an error."""
        missing = [n for n, _ in self.table if n not in state]
        unknown = [n for n in state if n not in self.vars]
        if missing or unknown:
            raise CheckpointError(
                f"state does not match the model: missing {missing[:5]}, unknown {unknown[:5]}"
            )
        for name, shape in self.table:
            v = self.vars[name]
            values = state[name]
            if len(values) != v.data.numel:
                raise CheckpointError(
                    f"parameter {name}: {len(values)} values for shape {shape}"
                )
            self.backend.copy(v.data, self.backend.from_array(values, shape, self.dtype))

    # ---- modes ------------------------------------------------------------------------------
    def train(self) -> "GPT":
        self.training = True
        return self

    def eval(self) -> "GPT":
        self.training = False
        return self

    # ---- forward / backward -------------------------------------------------------------------
    def _positions_for(self, T: int):
        pos = self._positions.get(T)
        if pos is None:
            pos = self._positions[T] = self.backend.from_array(range(T), (T,), "i32")
        return pos

    def forward(self, ids, targets=None):
        """ids (B, T) i32 -> (logits (B, T, V), loss (1,) or None). In training mode the tape
        records, ready for `backward()`. Both results live until the next forward."""
        cfg, t, p = self.cfg, self.tape, self.vars
        B, T = ids.shape
        if T > cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {cfg.block_size}")
        t.reset()
        t.recording = self.training
        drop = self.rng.stream("dropout") if self.training and cfg.dropout > 0 else None
        pdrop = cfg.dropout

        tok = ops.embedding(t, ids, p["wte"])  # (B, T, C)
        pos = ops.embedding(t, self._positions_for(T), p["wpe"])  # (T, C)
        x = ops.dropout(t, ops.add(t, tok, pos), pdrop, drop)  # (B, T, C)
        for i in range(cfg.n_layer):
            x = self._block(x, i, drop)
        x = ops.layernorm(t, x, p["ln_f.weight"], p.get("ln_f.bias"), cfg.layernorm_eps)
        head = p["wte"] if cfg.tie_embeddings else p["lm_head.weight"]  # (V, C)
        logits = ops.linear(t, x, head, transpose_w=True)  # (B, T, V)
        if targets is None:
            self._loss = None
            return logits.data, None
        loss = ops.crossentropy(t, logits, targets)  # (1,)
        self._loss = loss
        return logits.data, loss.data

    def _block(self, x: Var, i: int, drop) -> Var:
        cfg, t, p = self.cfg, self.tape, self.vars
        h = f"h.{i}."
        eps, pdrop = cfg.layernorm_eps, cfg.dropout
        # attention: x = x + dropout(c_proj(attention(c_attn(ln_1(x)))))
        a = ops.layernorm(t, x, p[h + "ln_1.weight"], p.get(h + "ln_1.bias"), eps)
        qkv = ops.linear(t, a, p[h + "attn.c_attn.weight"], p.get(h + "attn.c_attn.bias"))
        a = ops.attention(t, qkv, cfg.n_head)  # (B, T, C)
        a = ops.linear(t, a, p[h + "attn.c_proj.weight"], p.get(h + "attn.c_proj.bias"))
        x = ops.add(t, x, ops.dropout(t, a, pdrop, drop))
        # MLP: x = x + dropout(c_proj(act(c_fc(ln_2(x)))))
        m = ops.layernorm(t, x, p[h + "ln_2.weight"], p.get(h + "ln_2.bias"), eps)
        m = ops.linear(t, m, p[h + "mlp.c_fc.weight"], p.get(h + "mlp.c_fc.bias"))  # (B, T, H|2H)
        m = ops.ACTIVATIONS[cfg.activation](t, m)  # (B, T, H)
        m = ops.linear(t, m, p[h + "mlp.c_proj.weight"], p.get(h + "mlp.c_proj.bias"))
        return ops.add(t, x, ops.dropout(t, m, pdrop, drop))

    def backward(self) -> None:
        """Add d(loss)/d(params) of the last training forward into `grads`."""
        if self._loss is None:
            raise RuntimeError("backward needs a forward with targets in training mode first")
        if not self.training:
            raise RuntimeError("backward after an eval forward: call model.train() and forward")
        self.tape.backward(self._loss)
        self._loss = None
