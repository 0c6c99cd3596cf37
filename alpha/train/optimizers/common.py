"""What every optimizer shares: the walk over the model's parameter table, and the checkpoint
contract (a header entry {"name", "step"} plus named flat f32 state tensors).

An optimizer works on the model's flat buffers (`model.params`, `model.grads`, laid out by
`alpha.model.params.param_table`): it takes views of them, so an update is a few backend calls
and never copies a parameter. Its state lives in buffers it allocates; `state_tensors()` names
them for the checkpoint and `load_state` copies saved values back into them (views into them
stay valid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alpha.train.optim import merge_segments


@dataclass(frozen=True)
class Entry:
    """One named parameter of the flat buffers."""
    name: str
    offset: int  # in elements
    shape: tuple[int, ...]
    decays: bool  # inside the model's weight-decay range

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def entries(model) -> list[Entry]:
    """The model's parameter table with offsets and decay flags, in flat-buffer order."""
    out, off = [], 0
    start, end = model.decay_range
    for name, shape in model.table:
        out.append(Entry(name, off, tuple(shape), start <= off < end))
        off += math.prod(shape)
    return out


def view(flat, e: Entry):
    """The (shaped) view of entry `e` in a flat buffer laid out like the parameters."""
    return flat.narrow(0, e.offset, e.numel).view(e.shape)


class Optimizer:
    """The checkpoint side of an optimizer. Subclasses set `name`, `backend`, `step` (updates
    applied so far) and implement `update(lr, grad_scale)` and `state_tensors()`."""

    name = "?"

    def state(self) -> dict:
        return {"name": self.name, "step": self.step}

    def state_tensors(self) -> dict:
        """{checkpoint tensor name: flat f32 Tensor} (the buffers themselves, not copies)."""
        raise NotImplementedError

    def load_state(self, state: dict, tensors: dict) -> None:
        """Restore from a checkpoint's header entry and tensors (name -> host values). A
        checkpoint without "name" was written by AdamW (before there was a choice). Raises
        KeyError for a missing tensor, ValueError for the wrong optimizer or size."""
        saved = state.get("name", "adamw")
        if saved != self.name:
            raise ValueError(f"its optimizer is {saved}, this run's is {self.name} (the state of "
                             f"one does not carry over to another: resume with --optimizer "
                             f"{saved}, or start a new run)")
        own = self.state_tensors()
        for key, t in own.items():
            if len(tensors[key]) != t.numel:
                raise ValueError(f"optimizer state {key!r} holds {len(tensors[key])} values, "
                                 f"need {t.numel}")
        be = self.backend
        for key, t in own.items():
            be.copy(t, be.from_array(tensors[key], t.shape, "f32"))
        self.step = int(state["step"])


def without(segments, skip):
    """`segments` (start, length, decays) minus the [start, end) ranges in `skip`."""
    out = []
    for start, length, decays in segments:
        pieces = [(start, start + length)]
        for a, b in skip:
            pieces = [q for s, e in pieces for q in ((s, min(e, a)), (max(s, b), e)) if q[1] > q[0]]
        out += [(s, e - s, decays) for s, e in pieces]
    return out


class Elementwise(Optimizer):
    """An optimizer whose rule is elementwise (AdamW, Lion, SGD): its state is buffers of the
    parameters' size, and one update is one backend step per run of parameters that share a
    weight-decay setting. Subclasses list their buffers in `buffers` as (checkpoint name,
    attribute) and implement `update` over `runs()`."""

    buffers: tuple = ()

    def __init__(self, backend, model, weight_decay: float, skip=()):
        params, grads = model.params.view(-1), model.grads.view(-1)
        if params.numel != grads.numel:
            raise ValueError(f"params ({params.numel}) and grads ({grads.numel}) differ in size")
        self.backend = backend
        self.params, self.grads = params, grads
        for _, attr in self.buffers:
            setattr(self, attr, backend.zeros((params.numel,), "f32"))
        self.weight_decay = weight_decay
        self.step = 0  # updates applied so far
        self.segments = without(merge_segments(params.numel, [model.decay_range]), skip)

    def runs(self):
        """(param, grad, [state views], weight decay) for each run of the flat buffers."""
        for start, length, decays in self.segments:
            yield (self.params.narrow(0, start, length), self.grads.narrow(0, start, length),
                   [getattr(self, attr).narrow(0, start, length) for _, attr in self.buffers],
                   self.weight_decay if decays else 0.0)

    def state_tensors(self) -> dict:
        return {name: getattr(self, attr) for name, attr in self.buffers}
