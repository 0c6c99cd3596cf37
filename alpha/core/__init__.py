"""Alpha's core: configs, domains, RNG, the Backend protocol and errors. Depends on nothing else."""

from alpha.core.config import (  # noqa: F401
    DomainConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig, config_hash, resolve,
)
from alpha.core.errors import (  # noqa: F401
    AlphaError, BackendUnavailable, CheckpointError, ConfigError, DataError, StoreError,
)
from alpha.core.rng import Rng  # noqa: F401
