"""The configs: the single source of truth for every tunable of a model, a training run and sampling.

Each config is a frozen dataclass with a commented default per field. Values are checked on
construction; an error names the field and the value (`n_embd=100 is not divisible by n_head=3`).
Configs are resolved from four layers, highest first: CLI flags > a JSON file > the domain's
defaults > the dataclass defaults (`resolve`). `config_hash` is a stable hash of the whole
nested config, saved with every run and checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields

from alpha.core.errors import ConfigError

ACTIVATIONS = ("gelu", "relu", "silu", "swiglu", "relu2")
NORMS = ("layernorm", "rmsnorm")
TOKENIZERS = ("char", "bpe", "word")
BACKENDS = ("cpu", "helios")
MATMUL_DTYPES = ("f32", "bf16")
POSITIONS = ("learned", "rope")
OPTIMIZERS = ("adamw", "lion", "adafactor", "sgd", "muon")  # alpha/train/optimizers


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256  # tokens in the vocabulary (set from the tokenizer when training)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads; n_embd must divide evenly
    n_embd: int = 128  # residual stream width
    block_size: int = 128  # longest context the model sees (positional embeddings)
    ffn_dim: int = 0  # MLP hidden width; 0 means 4*n_embd
    activation: str = "gelu"  # gelu (tanh approximation) | relu | silu | swiglu | relu2 (relu^2)
    bias: bool = True  # biases in linear layers and layernorms
    tie_embeddings: bool = True  # LM head shares the token embedding matrix
    dropout: float = 0.0  # dropout probability on embeddings, attention output and MLP output
    # normalisation and the LM head's logits (helper "norm"; GPT-2: layernorm, no qk-norm, 0)
    norm: str = "layernorm"  # ln_1, ln_2, ln_f: layernorm | rmsnorm (weight only, no bias)
    qk_norm: bool = False  # RMSNorm each head's q and k (per-layer weights of head_dim, Gemma 3)
    logit_softcap: float = 0.0  # logits -> c*tanh(logits/c) before the loss and sampling; 0 = off
    layernorm_eps: float = 1e-5  # epsilon inside every layernorm
    # positions and attention scores (helper "rope"; GPT-2: learned, 0)
    pos: str = "learned"  # learned (GPT-2's wpe) | rope (rotary q, k; NeoX half-split pairs)
    rope_theta: float = 10000.0  # rope's base: pair i turns at theta^(-2i/head_dim) per position
    attn_softcap: float = 0.0  # scores -> c*tanh(scores/c) before the softmax (Gemma 2); 0 = off

    def __post_init__(self):
        _check_types(self)
        _positive(self, "vocab_size", "n_layer", "n_head", "n_embd", "block_size")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}"
            )
        if self.ffn_dim < 0:
            raise ConfigError(f"ffn_dim={self.ffn_dim} must be >= 0 (0 means 4*n_embd)")
        _choice(self, "activation", ACTIVATIONS)
        _fraction(self, "dropout", upper_open=True)
        _choice(self, "norm", NORMS)
        if not (self.logit_softcap >= 0 and math.isfinite(self.logit_softcap)):
            raise ConfigError(f"logit_softcap={self.logit_softcap} must be >= 0 (0 = off)")
        if not self.layernorm_eps > 0:
            raise ConfigError(f"layernorm_eps={self.layernorm_eps} must be > 0")
        _choice(self, "pos", POSITIONS)
        if self.pos == "rope" and self.head_dim % 2:
            raise ConfigError(f"pos=rope needs an even head dim, got n_embd/n_head="
                              f"{self.head_dim}")
        if not self.rope_theta > 1:
            raise ConfigError(f"rope_theta={self.rope_theta} must be > 1")
        if not (self.attn_softcap >= 0 and math.isfinite(self.attn_softcap)):
            raise ConfigError(f"attn_softcap={self.attn_softcap} must be >= 0 (0 = off)")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        """The MLP's hidden width (what ffn_dim=0 resolves to)."""
        return self.ffn_dim or 4 * self.n_embd


@dataclass(frozen=True)
class TrainConfig:
    # data and run layout
    data: str = ""  # training text file ("" = the domain's default corpus)
    val_data: str = ""  # validation text file ("" = the last 10% of data)
    tokenizer: str = ""  # char | bpe | word ("" = the domain's tokenizer)
    backend: str = "cpu"  # cpu | helios
    dtype: str = "f32"  # f32 | bf16 (bf16: matmuls in bf16, fp32 weights and optimizer; helios)
    run_dir: str = ""  # where the run folder goes ("" = outputs/<run_id>)
    # optimisation
    batch_size: int = 16  # sequences per micro-batch
    iters: int = 2000  # optimizer steps
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_iters: int = 100  # linear warmup steps
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.99  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.1  # decoupled weight decay (not on norms, biases, embeddings)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    accum_steps: int = 1  # micro-batches per optimizer step
    # the optimizer (alpha/train/optimizers; lr, betas, eps and weight_decay above are shared)
    optimizer: str = "adamw"  # adamw | lion | adafactor | sgd | muon
    sgd_momentum: float = 0.9  # sgd: momentum (0 = plain SGD)
    sgd_nesterov: bool = False  # sgd: Nesterov momentum
    adafactor_eps: float = 1e-30  # adafactor: added to g^2 (the paper's eps1)
    adafactor_clip: float = 1.0  # adafactor: an update's RMS is clipped to this (the paper's d)
    adafactor_decay: float = 0.8  # adafactor: second-moment decay 1 - step^-adafactor_decay
    muon_lr: float = 0.02  # muon: peak lr of the blocks' matrices (the rest uses lr)
    muon_momentum: float = 0.95  # muon: Nesterov momentum of the blocks' matrices
    # cadence (0 turns each off)
    eval_interval: int = 250  # steps between validation passes
    eval_iters: int = 20  # batches per validation pass
    sample_interval: int = 500  # steps between samples
    checkpoint_interval: int = 500  # steps between checkpoints
    log_interval: int = 1  # steps between progress lines
    keep_checkpoints: int = 3  # checkpoints kept besides the best-val one
    max_bad_steps: int = 5  # consecutive NaN/Inf steps before training stops
    seed: int = 1337  # one seed for every RNG stream
    # memory (alpha.autograd.checkpoint)
    activation_checkpointing: bool = False  # keep block inputs only, recompute blocks in backward
    # stability, data order and observability (issue 14 items 2, 4, 6: trainer)
    spike_threshold: float = 0.0  # skip a step whose pre-clip gradient norm exceeds this (0 = off)
    emb_grad_scale: float = 1.0  # scale the gradient from the embedding lookup (GLM-130B; 1 = off)
    packed: bool = False  # every window of the corpus once per epoch, in a shuffled order
    layer_stats_interval: int = 0  # steps between per-layer gradient-norm rows (0 = off)
    strict_planning: bool = False  # planning warnings (tokens/param, passes, intervals) are errors

    def __post_init__(self):
        _check_types(self)
        _positive(self, "batch_size", "iters", "accum_steps", "eval_iters")
        _non_negative(self, "spike_threshold", "emb_grad_scale", "layer_stats_interval")
        _non_negative(
            self, "warmup_iters", "eval_interval", "sample_interval", "checkpoint_interval",
            "log_interval", "keep_checkpoints", "seed", "weight_decay", "grad_clip", "min_lr",
        )
        if self.max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps={self.max_bad_steps} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a positive number")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr={self.min_lr} is larger than lr={self.lr}")
        _fraction(self, "beta1", upper_open=True)
        _fraction(self, "beta2", upper_open=True)
        if not self.eps > 0:
            raise ConfigError(f"eps={self.eps} must be > 0")
        _choice(self, "optimizer", OPTIMIZERS)
        _fraction(self, "sgd_momentum", upper_open=True)
        _fraction(self, "muon_momentum", upper_open=True)
        if not (self.muon_lr > 0 and math.isfinite(self.muon_lr)):
            raise ConfigError(f"muon_lr={self.muon_lr} must be a positive number")
        if not (self.adafactor_eps > 0 and math.isfinite(self.adafactor_eps)):
            raise ConfigError(f"adafactor_eps={self.adafactor_eps} must be a positive number")
        if not (self.adafactor_clip > 0 and math.isfinite(self.adafactor_clip)):
            raise ConfigError(f"adafactor_clip={self.adafactor_clip} must be a positive number")
        if not 0 < self.adafactor_decay <= 1:
            raise ConfigError(f"adafactor_decay={self.adafactor_decay} must be in (0, 1]")
        if self.tokenizer:
            _choice(self, "tokenizer", TOKENIZERS)
        _choice(self, "backend", BACKENDS)
        _choice(self, "dtype", MATMUL_DTYPES)
        if self.dtype != "f32" and self.backend != "helios":
            raise ConfigError(f"dtype={self.dtype} needs backend=helios (the CPU kernels are "
                              "fp32 only)")


@dataclass(frozen=True)
class SampleConfig:
    max_tokens: int = 200  # tokens to generate
    temperature: float = 0.8  # 0 means greedy
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # nucleus sampling mass (1.0 = off)
    seed: int = 1337  # sampling RNG seed
    prompt: str = ""  # text to continue
    stop: tuple = ()  # strings that end generation

    def __post_init__(self):
        if isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        _check_types(self)
        _non_negative(self, "max_tokens", "top_k", "seed")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature={self.temperature} must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1]")


@dataclass(frozen=True)
class DomainConfig:
    name: str  # registry key: text | code | chat
    description: str = ""  # one line for `--help` and the dashboards
    tokenizer: str = "char"  # default tokenizer for this domain
    special_tokens: tuple = ()  # tokens never split nor merged by the tokenizer
    model: dict = field(default_factory=dict)  # ModelConfig overrides this domain prefers
    train: dict = field(default_factory=dict)  # TrainConfig overrides this domain prefers
    sample: dict = field(default_factory=dict)  # SampleConfig overrides this domain prefers

    def __post_init__(self):
        if isinstance(self.special_tokens, list):
            object.__setattr__(self, "special_tokens", tuple(self.special_tokens))
        _check_types(self)
        _choice(self, "tokenizer", TOKENIZERS)
        for section, cls in (("model", ModelConfig), ("train", TrainConfig), ("sample", SampleConfig)):
            _check_keys(cls, getattr(self, section), f"domain {self.name!r} {section}")


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_types(cfg) -> None:
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        want = hints[f.name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(cfg, f.name, float(value))
            continue
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{f.name}={value!r} has type {type(value).__name__}, expected {want.__name__}"
            )


def _positive(cfg, *names):
    for n in names:
        if getattr(cfg, n) <= 0:
            raise ConfigError(f"{n}={getattr(cfg, n)} must be > 0")


def _non_negative(cfg, *names):
    for n in names:
        v = getattr(cfg, n)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"{n}={v} must be >= 0")


def _fraction(cfg, name, upper_open=False):
    v = getattr(cfg, name)
    if not (0 <= v < 1 if upper_open else 0 <= v <= 1):
        raise ConfigError(f"{name}={v} must be in [0, 1{')' if upper_open else ']'}")


def _choice(cfg, name, choices):
    v = getattr(cfg, name)
    if v not in choices:
        raise ConfigError(f"{name}={v!r} is not one of {', '.join(choices)}")


def _check_keys(cls, overrides: dict, where: str) -> None:
    known = {f.name for f in fields(cls)}
    for key in overrides:
        if key not in known:
            raise ConfigError(f"unknown {cls.__name__} field {key!r} in {where}")


# --------------------------------------------------------------------------------------------
# resolution: CLI > file > domain > defaults


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run: the domain and the three resolved configs."""

    domain: str
    model: ModelConfig
    train: TrainConfig
    sample: SampleConfig

    def __post_init__(self):
        if not isinstance(self.domain, str):
            raise ConfigError(f"domain={self.domain!r} has type {type(self.domain).__name__}, "
                              "expected str")

    def to_dict(self) -> dict:
        return {
            "domain": self.domain,
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "sample": {**dataclasses.asdict(self.sample), "stop": list(self.sample.stop)},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        _check_keys_dict(d, {"domain", "model", "train", "sample"}, "run config")
        return cls(
            domain=d.get("domain", "text"),
            model=build(ModelConfig, d.get("model", {}), "model"),
            train=build(TrainConfig, d.get("train", {}), "train"),
            sample=build(SampleConfig, d.get("sample", {}), "sample"),
        )

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


def _check_keys_dict(d: dict, known: set, where: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    for key in d:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {where} (known: {', '.join(sorted(known))})")


def build(cls, values: dict, where: str = ""):
    """Construct `cls` from a dict, naming the section in errors about unknown keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__} must be a JSON object")
    _check_keys(cls, values, where or cls.__name__)
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}" if where else str(e)) from None


def load_config_file(path: str) -> dict:
    """Read a JSON config file: {"domain": ..., "model": {...}, "train": {...}, "sample": {...}}.
    ConfigError for a file that is missing, not a regular file, not UTF-8, not JSON, or not of
    that shape; the field values are checked when the configs are built."""
    from alpha.core.files import read_json

    data = read_json(path, "config file", ConfigError)
    where = f"config file {path}"
    _check_keys_dict(data, {"domain", "model", "train", "sample"}, where)
    if "domain" in data and not isinstance(data["domain"], str):
        raise ConfigError(f"{where}: \"domain\" must be a string, got "
                          f"{type(data['domain']).__name__}")
    for section in ("model", "train", "sample"):
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"{where}: \"{section}\" must be a JSON object, got "
                              f"{type(data[section]).__name__}")
    return data


def resolve(
    domain: str = "",
    file_path: str = "",
    cli: dict | None = None,
) -> RunConfig:
    """Merge the layers, highest first: `cli` > the JSON file > the domain's defaults > defaults.

    `cli` has the same shape as the file: {"model": {...}, "train": {...}, "sample": {...}} with only
    the fields the user actually gave. The domain comes from `domain`, else the file, else "text".
    """
    from alpha.core.domains import get_domain

    cli = cli or {}
    file_data = load_config_file(file_path) if file_path else {}
    name = domain or cli.get("domain") or file_data.get("domain") or "text"
    dom = get_domain(name)
    merged = {}
    for section in ("model", "train", "sample"):
        merged[section] = {
            **getattr(dom, section),
            **file_data.get(section, {}),
            **cli.get(section, {}),
        }
    return RunConfig.from_dict({"domain": dom.name, **merged})


def config_hash(obj) -> str:
    """A stable hash of a nested config: sha256 over canonical JSON, first 16 hex digits."""
    if dataclasses.is_dataclass(obj):
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list, allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def diff_fields(a, b) -> list[str]:
    """Names of the fields where two configs of the same type differ (for refusal messages)."""
    return [f.name for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]
