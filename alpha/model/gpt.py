"""The GPT: GPT-2's architecture (nanoGPT's model.py), on any backend, through the autograd tape.

    ids (B, T) -> wte[ids] + wpe[0..T) -> dropout
               -> n_layer x Block: x = x + dropout(attn(ln_1(x)));  x = x + dropout(mlp(ln_2(x)))
               -> ln_f -> logits = x @ wte^T (or lm_head.weight^T) -> mean cross-entropy

Options beyond GPT-2 (ModelConfig): `pos="rope"` drops wpe and turns q and k of every head by
their positions inside attention (`ops.rope` on the packed qkv, tables from `alpha.model.rope`);
`attn_softcap` caps the attention scores (c * tanh(s / c)) before the softmax. `norm="rmsnorm"`
makes ln_1, ln_2 and ln_f RMSNorms (weight only); `qk_norm` RMS-normalises every head of q and k
right after c_attn (ops.qk_norm on the packed qkv, before rope; the KV cache holds the normalised
k); `logit_softcap` c maps the logits to c * tanh(logits / c) before the loss, and in inference
before sampling.

All parameters live in ONE flat buffer (`params`), their gradients in another (`grads`), laid out by
`alpha.model.params.param_table`; each named parameter is a view. The optimizer state (AdamW m, v)
is the trainer's: two more flat buffers of the same length, updated over `decay_ranges`.

Modes: `train()` records the tape and applies dropout; `eval()` does neither. Buffers of a forward
are reused by the next forward (see `alpha.autograd.tape`): read the logits and loss you need
before running another.

Inference is this same forward with a KV cache (`forward(ids, cache=..., slots=...)`, see
`alpha.model.kvcache`): eval mode, no tape, positions offset by each sequence's cache length, and
attention over each sequence's own cache (`kv_attention`). One new token per sequence (decode)
runs as the backend's whole-step `decode_step` when it has one (helios: a replayed command
buffer), else each block as its fused `block_decode` when it has one (the same bits; at small
batches the Python between ops costs as much as their arithmetic) and otherwise op by op; its
products are `matmul_rows`, so every row's logits are the same bits whatever else is in the
batch (what makes a served request's tokens independent of the other requests).
"""

from __future__ import annotations

import math
from array import array

from alpha.autograd import ops
from alpha.autograd.checkpoint import checkpoint
from alpha.autograd.tape import Tape, Var
from alpha.core.config import ModelConfig
from alpha.core.errors import CheckpointError, ConfigError
from alpha.core.rng import Rng
from alpha.model import params as P
from alpha.model.kvcache import InferenceTape, KVCache  # noqa: F401  (KVCache: re-exported)
from alpha.model.rope import tables as rope_tables

# a block's parameters in the order the fused `block_decode` takes them
BLOCK_PARAMS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


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
        # activation checkpointing (TrainConfig.activation_checkpointing): the training forward
        # keeps each block's input only; the backward recomputes the block on `_block_tape`
        self.checkpointing = False
        self._block_tape: Tape | None = None
        self._layer_params: list[tuple] | None = None  # per layer, for _checkpointed_block
        self._positions: dict[int, object] = {}  # T -> i32 tensor 0..T-1
        self._rope: tuple | None = None  # (cos, sin) (block_size, head_dim/2) with pos=rope
        self._loss: Var | None = None
        self._itape: InferenceTape | None = None  # the cached forward's scratch (made on first use)
        self._block_params: list[tuple] | None = None  # per layer, for block_decode
        self.fused_decode = True  # False once the backend declines block_decode
        self.step_decode = True  # False once the backend declines decode_step
        self.step_prefill = True  # False once the backend declines prefill_step
        self._step_params: tuple | None = None  # (cache, params) for decode_step
        self.emb_grad_scale = 1.0  # gradient factor into wte/wpe from the lookup (the trainer's)
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

    def _rope_tables(self) -> tuple:
        """(cos, sin) tensors (block_size, head_dim/2) for pos=rope, made once."""
        if self._rope is None:
            cfg = self.cfg
            shape = (cfg.block_size, cfg.head_dim // 2)
            self._rope = tuple(self.backend.from_array(a, shape, self.dtype) for a in
                               rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_theta))
        return self._rope

    def forward(self, ids, targets=None, *, cache: KVCache | None = None, slots=None,
                last_only: bool = False):
        """ids (B, T) i32 -> (logits (B, T, V), loss (1,) or None). In training mode the tape
        records, ready for `backward()`. Both results live until the next forward.

        With a `cache`: inference (see the module docstring). Row b continues the sequence in
        cache slot `slots[b]` (default: slot b) at position `cache.lengths[slot]`, and the T new
        positions are appended to it. Returns logits (B, T, V), or (B, V) of the last position
        with `last_only` — a tensor reused by the next cached forward."""
        if cache is not None:
            if targets is not None:
                raise ValueError("forward with a cache is inference: no targets")
            return self._forward_cached(ids, cache, slots, last_only)
        cfg, t, p = self.cfg, self.tape, self.vars
        B, T = ids.shape
        if T > cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {cfg.block_size}")
        t.reset()
        t.recording = self.training
        drop = self.rng.stream("dropout") if self.training and cfg.dropout > 0 else None
        pdrop = cfg.dropout

        x = ops.embedding(t, ids, p["wte"])  # (B, T, C)
        if cfg.pos == "learned":
            pos = ops.embedding(t, self._positions_for(T), p["wpe"])  # (T, C)
            x = ops.add(t, x, pos)
        # train.emb_grad_scale (GLM-130B): only the gradient into the lookup tables shrinks
        x = ops.grad_scale(t, x, self.emb_grad_scale)
        x = ops.dropout(t, x, pdrop, drop)  # (B, T, C)
        branch = None  # the last block's MLP output, not yet added to x: the next norm adds it
        for i in range(cfg.n_layer):
            if self.checkpointing and t.recording:  # a whole block each: no branch left over
                x = self._checkpointed_block(x, i, drop)
            else:
                x, branch = self._block(x, i, drop, branch)
        x = self._add_norm(t, x, branch, "ln_f.")[1]
        head = p["wte"] if cfg.tie_embeddings else p["lm_head.weight"]  # (V, C)
        logits = ops.linear(t, x, head, transpose_w=True)  # (B, T, V)
        if cfg.logit_softcap:
            logits = ops.softcap(t, logits, cfg.logit_softcap)
        if targets is None:
            self._loss = None
            return logits.data, None
        loss = ops.crossentropy(t, logits, targets)  # (1,)
        self._loss = loss
        return logits.data, loss.data

    def _norm(self, t, x: Var, prefix: str) -> Var:
        """ln_1, ln_2 or ln_f (`prefix` "h.{i}.ln_1." ...): GPT-2's LayerNorm, or RMSNorm."""
        p, eps = self.vars, self.cfg.layernorm_eps
        if self.cfg.norm == "rmsnorm":
            return ops.rmsnorm(t, x, p[prefix + "weight"], eps)
        return ops.layernorm(t, x, p[prefix + "weight"], p.get(prefix + "bias"), eps)

    def _add_norm(self, t, x: Var, y: Var | None, prefix: str) -> tuple[Var, Var]:
        """(x + y, its norm): the residual add and the norm after it, one op for LayerNorm
        (`ops.add_layernorm`: one kernel on helios); y None: (x, the norm of x)."""
        if y is None:
            return x, self._norm(t, x, prefix)
        if self.cfg.norm == "rmsnorm":
            x = ops.add(t, x, y)
            return x, self._norm(t, x, prefix)
        p, eps = self.vars, self.cfg.layernorm_eps
        return ops.add_layernorm(t, x, y, p[prefix + "weight"], p.get(prefix + "bias"), eps)

    def _qk_norm(self, t, qkv: Var, h: str) -> Var:
        """The packed qkv with every head of q and k RMS-normalised (qk_norm), else as is."""
        if not self.cfg.qk_norm:
            return qkv
        p = self.vars
        return ops.qk_norm(t, qkv, p[h + "attn.q_norm.weight"], p[h + "attn.k_norm.weight"],
                           self.cfg.n_head, self.cfg.layernorm_eps)

    def _block(self, x: Var, i: int, drop, branch: Var | None = None) -> tuple[Var, Var]:
        """Block i on x + branch (the previous block's MLP output, or None): (x, m) with x the
        stream after the attention and m the MLP's output, its add left to the next norm, which
        does it in the same pass (`_add_norm`)."""
        cfg, t, p = self.cfg, self.tape, self.vars
        h = f"h.{i}."
        pdrop = cfg.dropout
        # attention: x = x + dropout(c_proj(attention(c_attn(ln_1(x)))))
        x, a = self._add_norm(t, x, branch, h + "ln_1.")
        qkv = ops.linear(t, a, p[h + "attn.c_attn.weight"], p.get(h + "attn.c_attn.bias"))
        qkv = self._qk_norm(t, qkv, h)  # (B, T, 3C)
        if cfg.pos == "rope":  # q, k turned by their positions 0..T-1
            cos, sin = self._rope_tables()
            T = qkv.data.shape[1]
            qkv = ops.rope(t, qkv, self._positions_for(T), cos, sin, cfg.n_head)
        a = ops.attention(t, qkv, cfg.n_head, cfg.attn_softcap)  # (B, T, C)
        a = ops.linear(t, a, p[h + "attn.c_proj.weight"], p.get(h + "attn.c_proj.bias"))
        # MLP: x = x + dropout(c_proj(act(c_fc(ln_2(x)))))
        x, m = self._add_norm(t, x, ops.dropout(t, a, pdrop, drop), h + "ln_2.")
        m = ops.linear(t, m, p[h + "mlp.c_fc.weight"], p.get(h + "mlp.c_fc.bias"))  # (B, T, H|2H)
        m = ops.ACTIVATIONS[cfg.activation](t, m)  # (B, T, H)
        m = ops.linear(t, m, p[h + "mlp.c_proj.weight"], p.get(h + "mlp.c_proj.bias"))
        return x, ops.dropout(t, m, pdrop, drop)

    def _checkpointed_block(self, x: Var, i: int, drop) -> Var:
        """`_block` i through `alpha.autograd.checkpoint`: recomputed in the backward pass."""
        if self._block_tape is None:
            self._block_tape = Tape(self.backend)
        params = self._layer_vars()[i]

        def block(tape: Tape, xin: Var, stream) -> Var:
            return self._block_on(tape, xin, i, stream)
        last = i == self.cfg.n_layer - 1  # its backward comes first: no need to recompute it
        return checkpoint(self.tape, self._block_tape, block, x, drop, params,
                          recompute=not last)

    def _layer_vars(self) -> list[tuple]:
        """Per layer, the Vars of its parameters (what a checkpointed block's op holds), made
        once."""
        if self._layer_params is None:
            self._layer_params = [tuple(v for name, v in self.vars.items()
                                        if name.startswith(f"h.{i}."))
                                  for i in range(self.cfg.n_layer)]
        return self._layer_params

    def _block_on(self, tape: Tape, x: Var, i: int, drop) -> Var:
        """`_block` recorded on `tape` instead of the model's: the very same code (whatever
        options it grows), so a recomputed block cannot drift from the one it replaces."""
        main, self.tape = self.tape, tape
        try:
            return ops.add(tape, *self._block(x, i, drop))
        finally:
            self.tape = main

    # ---- inference: the same forward with a KV cache ------------------------------------------
    def _forward_cached(self, ids, cache: KVCache, slots, last_only: bool):
        cfg, be, p = self.cfg, self.backend, self.vars
        B, T = ids.shape
        C, V = cfg.n_embd, cfg.vocab_size
        slots = list(range(B)) if slots is None else list(slots)
        if len(slots) != B or len(set(slots)) != B:
            raise ValueError(f"forward: {B} rows need {B} distinct cache slots, got {slots}")
        starts = [cache.lengths[s] for s in slots]
        if max(starts) + T > cache.max_len:
            raise ValueError(f"forward: positions up to {max(starts) + T - 1} exceed the cache "
                             f"length {cache.max_len}")
        if self._itape is None:
            self._itape = InferenceTape(be)
        t = self._itape
        t.reset()
        if last_only and self.step_decode and (T == 1 or self.step_prefill):
            logits = self._whole_step(ids, cache, slots, starts)  # one backend op
            if logits is not None:
                return logits
        if cache.kv_dtype != "f32":  # only the whole-step ops read and write a 16-bit cache
            raise ConfigError(
                f"an {cache.kv_dtype} KV cache needs the {be.name} backend's decode_step and "
                f"prefill_step for this model{'' if last_only else ' and last_only=True'}; "
                "use an f32 cache (serve --kv-dtype f32)")
        # products row by row (matmul_rows, `_rows_linear`), prefill too: a row's bits depend
        # neither on the other rows of the batch nor on where its prompt was cut into chunks, so
        # the server may prefill several prompts in one forward; one new token per row may run
        # fused (block_decode)

        positions = be.from_array([s + j for s in starts for j in range(T)], (B, T), "i32")
        x = ops.embedding(t, ids, p["wte"])  # (B, T, C)
        if cfg.pos == "learned":
            pos = ops.embedding(t, positions, p["wpe"])  # (B, T, C): each row's own positions
            x = ops.add(t, x, pos)
        fused = T == 1 and self.fused_decode
        if fused:
            options = self._decode_options()
            if self._block_params is None:
                self._block_params = [tuple(self.vars[f"h.{i}.{n}"].data
                                            if f"h.{i}.{n}" in self.vars else None
                                            for n in BLOCK_PARAMS)
                                      for i in range(cfg.n_layer)]
            x2 = x.data.view(B, C)
            try:
                for i in range(cfg.n_layer):
                    be.block_decode(x2, cache.layers[i], slots, starts, self._block_params[i],
                                    cfg.n_head, cfg.activation, cfg.layernorm_eps, **options)
            except NotImplementedError:
                if i:  # a backend declines before doing anything, never halfway
                    raise
                self.fused_decode = fused = False
        if not fused:
            for i in range(cfg.n_layer):
                x = self._block_cached(t, x, i, cache, slots, starts, positions)
        for s in slots:
            cache.lengths[s] += T

        if last_only and T > 1:
            x = Var(x.data.narrow(1, T - 1, 1))  # (B, 1, C) strided
        x = self._norm(t, x, "ln_f.")
        cap = cfg.logit_softcap
        if last_only:  # the head as (C, V) rows: see KVCache.head_t
            logits = t.buffer((B, V), x.data.dtype)
            be.matmul_rows(logits, x.data.view(B, C), cache.head_t)
            if cap:
                be.softcap_forward(logits, logits, cap)
            return logits
        logits = self._rows_linear(t, x, Var(cache.head_t), None)  # (B, T, V)
        return (ops.softcap(t, logits, cap) if cap else logits).data

    def _whole_step(self, ids, cache: KVCache, slots, starts):
        """The cached forward as one backend op: `decode_step` for one new token per row
        (helios replays one recorded command buffer per batch size: alpha/helios/replay.py; the
        CPU makes one C call), `prefill_step` for T > 1 (the CPU: one C call, the op-by-op path's
        bits). The last position's logits (B, V), or None once the backend declines (then the
        per-block or op-by-op path runs, for good)."""
        cfg, be = self.cfg, self.backend
        T = ids.shape[1]
        op = be.decode_step if T == 1 else be.prefill_step
        try:
            logits = op(ids, cache.layers, slots, starts, self._step_weights(cache), cfg.n_head,
                        cfg.activation, cfg.layernorm_eps, **self._step_options())
        except NotImplementedError:
            if T == 1:
                self.step_decode = False
            else:
                self.step_prefill = False
            return None
        for s in slots:
            cache.lengths[s] += T
        return logits

    def _step_weights(self, cache: KVCache) -> tuple:
        """decode_step's / prefill_step's params for this cache (its head_t), made once."""
        cfg = self.cfg
        if self._step_params is None or self._step_params[0] is not cache:
            p = self.vars
            blocks = tuple(tuple(p[f"h.{i}.{n}"].data if f"h.{i}.{n}" in p else None
                                 for n in BLOCK_PARAMS) for i in range(cfg.n_layer))
            params = (p["wte"].data, p["wpe"].data if cfg.pos == "learned" else None, blocks,
                      p["ln_f.weight"].data, p["ln_f.bias"].data if "ln_f.bias" in p else None,
                      cache.head_t)
            self._step_params = (cache, params)
        return self._step_params[1]

    def _step_options(self) -> dict:
        options = self._decode_options()
        if self.cfg.logit_softcap:
            options["logit_softcap"] = self.cfg.logit_softcap
        return options

    def _rows_linear(self, t, x: Var, w: Var, b: Var | None) -> Var:
        """x @ w (+ b) as the batch-invariant product (`matmul_rows`): w is (K, N)."""
        be = self.backend
        K, N = w.data.shape
        out = t.buffer(x.data.shape[:-1] + (N,), x.data.dtype)
        out2 = out.view(-1, N)
        be.matmul_rows(out2, x.data.view(-1, K), w.data)
        if b is not None:
            be.binary(out2, "add", out2, b.data)
        return Var(out)

    def _decode_options(self) -> dict:
        """The non-GPT-2 settings `block_decode` must honour (or decline), only those set."""
        cfg, options = self.cfg, {}
        if cfg.pos == "rope":
            options["rope"] = self._rope_tables()
        if cfg.attn_softcap:
            options["softcap"] = cfg.attn_softcap
        if cfg.norm != "layernorm":
            options["norm"] = cfg.norm
        if cfg.qk_norm:
            options["qk_norm"] = True
        return options

    def _block_cached(self, t, x: Var, i: int, cache: KVCache, slots, starts,
                      positions) -> Var:
        """`_block` in eval mode over a KV cache: the new positions' k, v go into their slots and
        each row attends over its own sequence. positions (B, T) i32: each row's own (rope
        turns q and k by them, so the cache holds turned keys)."""
        cfg, p, be = self.cfg, self.vars, self.backend
        h = f"h.{i}."
        C = cfg.n_embd
        B, T, _ = x.data.shape
        a = self._norm(t, x, h + "ln_1.")
        qkv = self._rows_linear(t, a, p[h + "attn.c_attn.weight"], p.get(h + "attn.c_attn.bias"))
        qkv = self._qk_norm(t, qkv, h).data  # (B, T, 3C): q, k normalised before k is cached
        if cfg.pos == "rope":
            cos, sin = self._rope_tables()
            turned = t.buffer(qkv.shape, qkv.dtype)
            be.rope_forward(turned, qkv, positions, cos, sin, cfg.n_head)
            qkv = turned
        cap = cfg.attn_softcap
        att = t.buffer((B, T, C), qkv.dtype)
        layer = cache.layers[i]
        s0 = slots[0]
        if slots == list(range(s0, s0 + B)) and starts.count(starts[0]) == B:  # one block
            span = layer.narrow(0, s0, B)
            be.copy(span.narrow(1, starts[0], T), qkv.narrow(2, C, 2 * C))
            be.kv_attention(att, qkv.narrow(2, 0, C), span.narrow(2, 0, C), span.narrow(2, C, C),
                            cfg.n_head, starts[0], cap)
        else:  # sequences of different lengths: one row at a time
            for b, (s, start) in enumerate(zip(slots, starts)):
                span = layer.narrow(0, s, 1)
                q = qkv.narrow(0, b, 1)
                be.copy(span.narrow(1, start, T), q.narrow(2, C, 2 * C))
                be.kv_attention(att.narrow(0, b, 1), q.narrow(2, 0, C), span.narrow(2, 0, C),
                                span.narrow(2, C, C), cfg.n_head, start, cap)
        a = self._rows_linear(t, Var(att), p[h + "attn.c_proj.weight"],
                              p.get(h + "attn.c_proj.bias"))
        x = ops.add(t, x, a)
        m = self._norm(t, x, h + "ln_2.")
        m = self._rows_linear(t, m, p[h + "mlp.c_fc.weight"], p.get(h + "mlp.c_fc.bias"))
        if B > 1:  # activations one row at a time, as the fused block does
            g = t.buffer((B, T, cfg.hidden_dim), m.data.dtype)
            act = getattr(be, cfg.activation + "_forward")
            for b in range(B):
                act(g.narrow(0, b, 1), m.data.narrow(0, b, 1))
            m = Var(g)
        else:
            m = ops.ACTIVATIONS[cfg.activation](t, m)  # (B, T, H)
        m = self._rows_linear(t, m, p[h + "mlp.c_proj.weight"], p.get(h + "mlp.c_proj.bias"))
        return ops.add(t, x, m)

    def backward(self) -> None:
        """Add d(loss)/d(params) of the last training forward into `grads`."""
        if self._loss is None:
            raise RuntimeError("backward needs a forward with targets in training mode first")
        if not self.training:
            raise RuntimeError("backward after an eval forward: call model.train() and forward")
        self.tape.backward(self._loss)
        self._loss = None
