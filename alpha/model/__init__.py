"""The GPT model (`gpt.py`), its parameter table (`params.py`) and the KV-cache inference engine
(`inference.py`)."""

from alpha.model.gpt import GPT  # noqa: F401
from alpha.model.inference import InferenceEngine  # noqa: F401
from alpha.model.sampling import sample_from_probs, sample_token  # noqa: F401
from alpha.model.kvcache import KVCache  # noqa: F401
from alpha.model.params import decay_ranges, num_params, param_offsets, param_table  # noqa: F401
