"""Typed errors. The library raises these; only the CLI turns them into messages and exit codes.

Every error that a user can cause by what they typed or gave us is an `AlphaError`; the CLI prints
its message on one line and exits with code 2, without a traceback.
"""


class AlphaError(Exception):
    """Base of every error caused by user input or the environment (not by a bug in Alpha)."""

    exit_code = 2


class ConfigError(AlphaError, ValueError):
    """A config field has a bad value or type, or an unknown key was given."""


class DataError(AlphaError, ValueError):
    """Training data is missing, empty, too short or unreadable."""


class CheckpointError(AlphaError, ValueError):
    """A checkpoint is corrupt, truncated, or incompatible with the requested config."""


class BackendUnavailable(AlphaError, RuntimeError):
    """A backend cannot run here (no C compiler, no Vulkan device...); the message says what to do."""


class CompilerNotFound(BackendUnavailable):
    """No working C compiler for the CPU kernels."""


class StoreError(AlphaError, RuntimeError):
    """The run database rejected a request or could not be reached."""


class RunFolderError(AlphaError):
    """A run folder cannot be created, written or locked (another process holds it, a file is in
    the way, the disk is read-only)."""


class WriteError(AlphaError):
    """A file cannot be written: permission denied, a read-only filesystem, a folder in the way."""


class DiskFullError(WriteError):
    """A write ran out of space. The message names the file, the bytes it needed and the bytes
    free; what was written before (earlier checkpoints, metrics) is intact."""


class MemoryBudgetError(AlphaError):
    """A model (with its gradients, optimizer state and activations) does not fit in memory."""


class InteropError(CheckpointError):
    """A model file from elsewhere (safetensors, a Hugging Face folder) is corrupt, or a model
    cannot be converted to or from that format; the message names the tensor or setting."""


class DistributedError(AlphaError, RuntimeError):
    """Data-parallel training cannot go on: a rank's parameters diverged, a rank died or stopped
    answering, the ranks disagree about the run, or MPI failed."""


class MPIUnavailable(DistributedError):
    """`--distributed` was asked for but no MPI library can be loaded; the message says what to
    install."""
