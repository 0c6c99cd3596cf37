"""The write record: values computed from an allocation's contents (its bf16 packing, the row
log-sum-exp of logits, "all zero"), kept until a recorded command writes that allocation.

The command stream runs in recording order behind full barriers, so a value derived from an
allocation's contents as of some point in the stream stays exact while no later command writes
it. Every command says which allocations it writes (`wrote`); one that does not say
(`wrote(None)`: a dispatch recorded outside the runtime, a replayed decode step) forgets
everything. A derived value lives as long as its allocation and no longer.

This is what lets a linear layer's backward reuse the bf16 packing its forward made of the same
activation (any GPU write used to invalidate every packing), and the cross-entropy backward the
forward's log-sum-exp.
"""

from __future__ import annotations

import weakref


class WriteRecord:
    def __init__(self):
        self._by_alloc: dict = {}  # id(allocation) -> (weakref to it, {key: value})

    def get(self, alloc, key):
        """The value derived from `alloc` under `key`, or None (never made, or written since)."""
        entry = self._by_alloc.get(id(alloc))
        if entry is None or entry[0]() is not alloc:
            return None
        return entry[1].get(key)

    def put(self, alloc, key, value) -> None:
        """Record `value` as derived from `alloc`'s contents as of the last recorded command."""
        i = id(alloc)
        entry = self._by_alloc.get(i)
        if entry is None or entry[0]() is not alloc:
            ref = weakref.ref(alloc, lambda r, i=i: self._drop(i, r))
            entry = self._by_alloc[i] = (ref, {})
        entry[1][key] = value

    def _drop(self, i, ref) -> None:
        entry = self._by_alloc.get(i)
        if entry is not None and entry[0] is ref:
            del self._by_alloc[i]

    def wrote(self, allocs) -> None:
        """A command recorded now writes `allocs` (None: unknown, maybe any allocation)."""
        d = self._by_alloc
        if not d:
            return
        if allocs is None:
            d.clear()
            return
        for a in allocs:
            d.pop(id(a), None)

    def keep_only(self, keep) -> None:
        """Forget every value whose key `keep(key)` refuses (a recorded step must not skip GPU
        work on a fact from before it: alpha/helios/capture.py)."""
        for entry in list(self._by_alloc.values()):
            for key in [k for k in entry[1] if not keep(k)]:
                del entry[1][key]

    def __len__(self) -> int:
        return len(self._by_alloc)
