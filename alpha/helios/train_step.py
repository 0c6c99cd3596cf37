"""One training step of a GPT on helios (AdamW, Lion or SGD) as GPU work only, recorded once
and replayed.

    step = TrainStep(model, optimizer, grad_clip=1.0)
    loss, norm, skipped = step.run([(xs, ys)], (B, T), lr)  # [(xs, ys)] * accum micro-batches

The step: zero the gradients, forward and backward of each micro-batch (its loss copied aside,
the gradients added up), the gradient's sum of squares (partials), `clip_finish` (the global
norm, the clip factor and the skip verdict, on the GPU), then the update reading lr, AdamW's
bias corrections, the factor and the verdict from a small argument buffer
(`kernels/optim.update_args`). Nothing in it is read back or decided on the host, so the same
command buffers serve every step: per step the host writes the batch into the step's input
tensors (its ids checked there, on the host copy), lr and the bias corrections into the
argument buffer, submits, and reads (loss, norm, skip) once. A skipped step (NaN/Inf loss or
norm, or a norm above `spike_threshold`) changes no parameter or optimizer state and does not
count as an update.
Why: recording op by op costs ~75 ms of Python per GPT-2 small step on the H200. Fed as it is
recorded, the GPU hides most of that under its own ~88 ms (92.2 -> 90.3 ms a step replayed,
bench/gpu_results.md), but the host is busy for the whole step; replayed, it is free.

Replay (alpha/helios/capture.py): the first step of a key is recorded while it runs; the next
steps with that key replay it. The key is what the recording depends on: the batch shape, the
backend view and its switches (matmul dtype, flash, bias epilogue...), the model's mode and
options, the optimizer's constants, the clip and spike settings, and the memory of the
parameters, gradients and moments (a model or optimizer re-created, or a checkpoint loaded into
new tensors, records again; one loaded into the same tensors is read live). Op by op instead,
said once in the debug log (logger `alpha.helios.train_step`) and in `why_not`: with
ALPHA_HELIOS_REPLAY_STEP=0, with ALPHA_HELIOS_PROFILE=1, or when a read-back happened while
recording. Both ways record the same commands: the losses and weights are the same bits.
Dropout replays too: its masks' words are recorded as offsets from the dropout stream's
position, which the host writes before each step (`rows.rng_uniform(based=True)`), and the
stream then advances by the words a step takes, as the forward would have advanced it.
"""

from __future__ import annotations

import logging
import os
import weakref
from array import array

from alpha.helios.capture import Capture
from alpha.helios.kernels import optim as kopt
from alpha.helios.kernels import rows as krows
from alpha.helios.ops_nn import HOST_COPY
from alpha.helios.runtime import HeliosStorage, groups
from alpha.tensor.tensor import Tensor

log = logging.getLogger(__name__)
# recordings of one key tried before it runs op by op for good: a second try can succeed where
# the first read back what it then knows (an id tensor's bounds, kept in the write record)
RECORD_TRIES = 2


def update_rule(optimizer) -> str:
    """The `kernels/optim.update_args` rule of an optimizer (AdamW, Lion, SGD; the others need
    the host between their kernels or have no such kernel: NotImplementedError)."""
    name = optimizer.name
    if name == "sgd":
        return "sgd_nesterov" if optimizer.nesterov else "sgd"
    if name in ("adamw", "lion"):
        return name
    raise NotImplementedError(f"need a GPU-only training step for {name}")


class TrainStep:
    def __init__(self, model, optimizer, *, grad_clip: float = 1.0,
                 spike_threshold: float = 0.0, replay: bool | None = None):
        self.rule = update_rule(optimizer)
        self.model, self.opt = model, optimizer
        self.be = model.backend
        self.rt, self.dev = self.be.rt, self.be.dev
        self.grad_clip, self.spike = float(grad_clip), float(spike_threshold)
        if replay is None:
            replay = os.environ.get("ALPHA_HELIOS_REPLAY_STEP", "1") != "0"
        self.replay = replay
        self.args = self.rt.new((len(kopt.ARGS),))
        self.rng_base = self.rt.new((2,), "u32")  # the dropout stream's position (lo, hi)
        self._draws = 0  # dropout words a step takes
        self.stats = self._host_tensor(len(kopt.STATS))
        self.acc_t = "f64" if self.be.float64 else "f32"
        self.why_not: str | None = None  # why the last step ran op by op (None: replayable)
        self.recorded = self.replayed = 0  # steps recorded into a capture / replayed
        self._capture: Capture | None = None
        self._key = None
        self._refs: list = []
        self._inputs: dict = {}  # (micro-batches, B, T) -> [(ids, targets)], written every step
        self._failed: dict = {}  # key -> (recordings that could not be replayed, why)

    def _host_tensor(self, n: int) -> Tensor:
        """Host memory the GPU writes and the host reads without a copy, where it is coherent."""
        dev = self.dev
        if not dev.host_coherent:
            return self.rt.new((n,))
        return Tensor(self.be, HeliosStorage(dev.host_pool.alloc(4 * n), 4 * n), (n,), "f32")

    # ---- one step --------------------------------------------------------------------------
    def run(self, batches, shape, lr: float) -> tuple[float, float, bool]:
        """One step on the micro-batches [(xs, ys), ...]: ids and targets, flat i32 arrays of
        `shape` (B, T) each, their gradients added up (accumulation): (mean loss, norm of the
        averaged gradient before clipping, skipped)."""
        pairs = self._upload(batches, tuple(shape))
        opt = self.opt
        opt.step += 1  # bias corrections count this update (taken back when it is skipped)
        t = opt.step
        if self.rule == "adamw":
            vals = array("f", [lr, 1.0 - opt.beta1 ** t, 1.0 - opt.beta2 ** t])
        else:
            vals = array("f", [lr, 1.0, 1.0])  # no bias corrections
        self.rt.write_bytes(self.args.storage.alloc, 0, vals.tobytes())
        stream = self._dropout()
        if stream is not None:
            pos = stream.position
            self.rt.write_bytes(self.rng_base.storage.alloc, 0,
                                array("I", [pos & 0xFFFFFFFF, pos >> 32]).tobytes())
        key = self._key_of((len(pairs),) + tuple(shape), stream)
        why = self._declined()
        tries, reason = self._failed.get(key, (0, None))
        if why is None and tries >= RECORD_TRIES:
            why = reason  # this key's recordings were not replayable
        cap = self._capture
        if why is None and cap is not None and self._key == key and self._alive():
            cap.replay()
            if stream is not None:
                stream.position += self._draws  # as the forward would have taken them
            self.replayed += 1
        else:
            self.release()
            if why is None:
                why = self._record(pairs, key, stream)
                if why is not None:
                    self._failed[key] = (tries + 1, why)
            else:
                self._body(pairs)
        if why != self.why_not and why is not None:
            log.debug("helios train step runs op by op: %s", why)
        self.why_not = why
        loss, norm, skip = self.rt.host_values(self.stats)
        if skip:
            opt.step -= 1
        return float(loss), float(norm), bool(skip)

    def _record(self, pairs, key, stream) -> str | None:
        cap = Capture(self.dev)
        start = stream.position if stream is not None else 0
        if stream is not None:
            cap.rng = (stream.key, start, self.rng_base)
        cap.start()
        try:
            self._body(pairs)
        except BaseException:
            cap.release()
            raise
        cap.stop()
        self._draws = stream.position - start if stream is not None else 0
        if cap.why_not is not None:
            cap.release()
            return cap.why_not
        self._capture, self._key = cap, key
        self._refs = [weakref.ref(a) for a in self._keyed()]
        self.recorded += 1
        return None

    def _body(self, pairs) -> None:
        """The step's GPU work (the same commands recorded or not)."""
        model, rt, opt = self.model, self.rt, self.opt
        model.zero_grad()
        losses = rt.new((len(pairs),))
        for i, (ids, targets) in enumerate(pairs):
            _, loss = model.forward(ids, targets)
            rt.copy(losses.narrow(0, i, 1), loss)  # the next forward frees it
            model.backward()  # adds into the gradients
        g = model.grads.view(-1)
        n = g.numel
        ng = groups(n, 256, 256)
        acc_t = self.acc_t
        part = rt.new((ng * (2 if acc_t == "f64" else 1),))
        rt.launch(("partial", "sumsq", acc_t), lambda: krows.partial_reduce("sumsq", acc_t),
                  [rt.addr(part), rt.addr(g), n], (ng, 1, 1), [part])
        rt.launch(("clip_finish", acc_t), lambda: kopt.clip_finish(acc_t),
                  [rt.addr(self.stats), rt.addr(self.args), rt.addr(part), rt.addr(losses),
                   ng, len(pairs), self.grad_clip, self.spike], (1, 1, 1),
                  [self.stats, self.args])
        A, rule = rt.addr, self.rule
        if rule == "adamw":
            consts = [opt.beta1, opt.beta2, opt.eps]
        elif rule == "lion":
            consts = [opt.beta1, opt.beta2]
        else:
            consts = [opt.momentum]
        for param, grad, state, wd in opt.runs():
            k = param.numel
            if k:
                rt.launch(("update_args", rule), lambda: kopt.update_args(rule),
                          [A(param), A(grad)] + [A(t) for t in state] + [A(self.args)]
                          + consts + [wd, k], (groups(k), 1, 1), [param] + list(state))

    # ---- the batch -------------------------------------------------------------------------
    def _upload(self, batches, shape):
        """The step's input tensors holding the micro-batches, their ids checked here (host
        copies)."""
        key = (len(batches),) + shape
        pairs = self._inputs.get(key)
        if pairs is None:
            self._inputs.clear()  # one shape at a time
            pairs = self._inputs[key] = [(self.rt.new(shape, "i32"), self.rt.new(shape, "i32"))
                                         for _ in batches]
        V = self.model.cfg.vocab_size
        for pair, batch in zip(pairs, batches):
            for t, host in zip(pair, batch):
                if not (isinstance(host, array) and host.typecode == "i"):
                    host = array("i", host)
                if len(host) != t.numel:
                    raise ValueError(f"train step: {len(host)} ids for a batch of shape {shape}")
                self.rt.write_bytes(t.storage.alloc, 0, host.tobytes())
                self.dev.derived.put(t.storage.alloc, HOST_COPY, array("i", host))
            self.be._need_ids("train step", pair[0], V)
            self.be._need_targets("train step", pair[1], V)
        return pairs

    # ---- what a recording depends on ---------------------------------------------------------
    def _dropout(self):
        """The model's dropout stream when the step draws from it, else None."""
        m = self.model
        return m.rng.stream("dropout") if m.training and m.cfg.dropout > 0 else None

    def _declined(self) -> str | None:
        if not self.replay:
            return "ALPHA_HELIOS_REPLAY_STEP=0"
        if self.dev.profiling:
            return "ALPHA_HELIOS_PROFILE=1"
        return None

    def _keyed(self) -> list:
        """The allocations a recording reads and writes in place."""
        inputs = [t for pair in self._inputs[next(iter(self._inputs))] for t in pair]
        state = list(self.opt.state_tensors().values())
        return [t.storage.alloc for t in [self.model.params, self.model.grads] + state + inputs]

    def _alive(self) -> bool:
        keyed = self._keyed()
        return len(keyed) == len(self._refs) and all(r() is a for r, a in zip(self._refs, keyed))

    def _key_of(self, shape, stream) -> tuple:
        be, m, o = self.be, self.model, self.opt
        # the backend view's switches (matmul dtype, flash, bias epilogue, coop2, emulation...)
        # are its plain attributes: a switch added later is in the key without naming it here
        switches = tuple(sorted((k, v) for k, v in vars(be).items()
                                if isinstance(v, (bool, int, float, str, type(None)))))
        constants = tuple(getattr(o, a, None) for a in ("beta1", "beta2", "eps", "momentum",
                                                          "nesterov", "weight_decay"))
        return (shape, id(be), switches, m.training, m.checkpointing, m.emb_grad_scale, m.cfg,
                self.rule, constants, tuple(o.segments), self.grad_clip, self.spike,
                None if stream is None else tuple(stream.key))

    def gpu_seconds(self, repeat: int = 3) -> float | None:
        """GPU seconds per replay of the recorded step, between two timestamps (each replay is
        one more training step with the last step's batch and lr); None when none is recorded.
        For benchmarks: the wall time of a step against its GPU time is the host's share."""
        if self._capture is None:
            return None
        return self.dev.gpu_seconds(self._capture.replay, repeat)

    def release(self) -> None:
        """Drop the recording (its command buffers and memory go back to the device)."""
        if self._capture is not None:
            self._capture.release()
            self._capture, self._key, self._refs = None, None, []
