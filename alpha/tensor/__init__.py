"""Tensors and backends. `get_backend(name)` returns the shared instance of a backend:
"cpu" (C kernels), "reference" (float64 pure Python, the definition of every op), "helios" (Vulkan).
"""

from __future__ import annotations

import importlib

from alpha.core.errors import BackendUnavailable, ConfigError
from alpha.tensor.tensor import Tensor  # noqa: F401

_BACKENDS = {
    "cpu": ("alpha.tensor.cpu", "CPUBackend"),
    "reference": ("alpha.tensor.reference", "ReferenceBackend"),
    "helios": ("alpha.helios.backend", "HeliosBackend"),
}
_instances: dict = {}


def get_backend(name: str = "cpu"):
    if name not in _BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (known: {', '.join(_BACKENDS)})")
    if name not in _instances:
        module, cls = _BACKENDS[name]
        try:
            _instances[name] = getattr(importlib.import_module(module), cls)()
        except ImportError as e:
            raise BackendUnavailable(f"backend {name!r} is not available here ({e})") from None
    return _instances[name]
