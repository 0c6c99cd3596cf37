"""The optimizers `--optimizer` chooses from, one file each, all over the model's flat buffers:

    adamw      AdamW (adamw.py)                  the default
    lion       Lion, sign updates (lion.py)
    adafactor  factored second moment (adafactor.py)
    sgd        SGD with (Nesterov) momentum (sgd.py)
    muon       Newton-Schulz orthogonalised momentum for the blocks' matrices + AdamW (muon.py)

Every one is built as `cls(backend, model, tc)` and offers `update(lr, grad_scale)`, `step`,
`state()`, `state_tensors()` and `load_state(state, tensors)` (common.py). Each update rule is
one fused backend op (`alpha.core.backend_optim`) with a C and a helios kernel.
"""

from __future__ import annotations

from alpha.train.optimizers.adafactor import Adafactor
from alpha.train.optimizers.adamw import AdamW
from alpha.train.optimizers.lion import Lion
from alpha.train.optimizers.muon import Muon
from alpha.train.optimizers.sgd import SGD

OPTIMIZERS = {"adamw": AdamW, "lion": Lion, "adafactor": Adafactor, "sgd": SGD, "muon": Muon}


def build_optimizer(backend, model, tc):
    """The optimizer `tc.optimizer` names, over `model`'s flat buffers."""
    return OPTIMIZERS[tc.optimizer](backend, model, tc)
