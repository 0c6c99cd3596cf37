"""Hugging Face GPT-2 <-> Alpha: the config fields and the tensor names, nothing else.

Alpha's model is GPT-2's architecture with GPT-2's parameter names (nanoGPT's), and its matmul
weights are stored (in, out) exactly as GPT-2's Conv1D stores them, so a conversion is a renaming:

    Alpha                      Hugging Face (GPT2LMHeadModel)          OpenAI's GPT-2 files
    wte                        transformer.wte.weight       (V, C)     wte.weight
    wpe                        transformer.wpe.weight       (T, C)     wpe.weight
    h.3.attn.c_attn.weight     transformer.h.3.attn.c_attn.weight      h.3.attn.c_attn.weight
    ...                        (every block tensor likewise; Conv1D weights are (in, out))
    ln_f.weight                transformer.ln_f.weight                 ln_f.weight
    lm_head.weight             lm_head.weight (only when untied)       -
    -                          -                                       h.3.attn.bias (the causal
                                                                       mask, a buffer: skipped)

What HF's GPT-2 cannot express is refused with the setting that blocks it (`activation=swiglu`).
A model without biases is exported with zero biases, which computes the same function.
"""

from __future__ import annotations

import re

from alpha.core.config import ModelConfig
from alpha.core.errors import ConfigError, InteropError
from alpha.interop.compat import TO_HF_ACTIVATION, not_gpt2

ARCHITECTURE = "GPT2LMHeadModel"
MODEL_TYPE = "gpt2"
EOT_TOKEN = "<|endoftext|>"  # GPT-2's end-of-text token (bos, eos and unk of its tokenizer)
HEAD_DIM = 64  # OpenAI's GPT-2 sizes all have 64-wide heads: n_head = n_embd / 64 when unknown

# HF activation_function -> Alpha (gelu_fast and gelu_pytorch_tanh are the same tanh formula)
FROM_HF_ACTIVATION = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu",
                      "relu": "relu", "silu": "silu", "swish": "silu"}

# HF config fields that change what the model computes, with the only value Alpha supports.
_FIXED = {
    "scale_attn_weights": True,  # scores divided by sqrt(head_dim)
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}

_SKIPPED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # causal-mask buffers, not weights


# ---- names -----------------------------------------------------------------------------------


def hf_name(name: str) -> str:
    """Alpha's parameter name -> the name in an HF GPT2LMHeadModel's state dict."""
    if name == "lm_head.weight":
        return name
    if name in ("wte", "wpe"):
        return f"transformer.{name}.weight"
    return "transformer." + name


def alpha_name(name: str) -> str | None:
    """An HF or OpenAI GPT-2 tensor name -> Alpha's name; None for the mask buffers to skip.
    Names that are not GPT-2's come back unchanged (the caller reports them)."""
    if name == "lm_head.weight":
        return name
    name = name.removeprefix("transformer.")
    if _SKIPPED.match(name):
        return None
    if name in ("wte.weight", "wpe.weight"):
        return name[:3]
    return name


# ---- config: Alpha -> HF ------------------------------------------------------------------------


def check_exportable(cfg: ModelConfig) -> None:
    """InteropError naming the first setting HF's GPT-2 has no way to express."""
    reason = not_gpt2(cfg)
    if reason is not None:
        raise InteropError(f"cannot export as Hugging Face GPT-2: {reason}")


def hf_config(cfg: ModelConfig, bos_token_id: int | None, eos_token_id: int | None) -> dict:
    """config.json of an HF GPT2LMHeadModel computing what `cfg` computes."""
    check_exportable(cfg)
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.ffn_dim or None,
        "activation_function": TO_HF_ACTIVATION[cfg.activation],
        "layer_norm_epsilon": cfg.layernorm_eps,
        # Alpha drops out the embeddings and each residual branch, never attention weights.
        "embd_pdrop": cfg.dropout,
        "resid_pdrop": cfg.dropout,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": cfg.tie_embeddings,
        **_FIXED,
        "reorder_and_upcast_attn": False,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "dtype": "float32",
    }


def generation_config(bos_token_id: int | None, eos_token_id: int | None, sample) -> dict:
    """generation_config.json: the special ids, and the run's sampling settings as defaults."""
    out = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
           "max_new_tokens": sample.max_tokens}
    if sample.temperature > 0:
        out.update(do_sample=True, temperature=sample.temperature,
                   top_k=sample.top_k or None, top_p=sample.top_p)
    return out


# ---- config: HF -> Alpha ------------------------------------------------------------------------


def model_config(hf: dict, where: str) -> ModelConfig:
    """The ModelConfig of an HF GPT-2 config.json (a dict); InteropError naming the field that
    Alpha cannot run."""
    model_type = hf.get("model_type")
    archs = [a for a in hf.get("architectures") or [] if isinstance(a, str)] \
        if isinstance(hf.get("architectures"), list) else []
    if model_type != MODEL_TYPE:
        raise InteropError(
            f"{where}: model_type {model_type!r} ({', '.join(archs) or 'no architecture'}) is not "
            "supported; Alpha imports GPT-2 (model_type \"gpt2\") models")
    for key, want in _FIXED.items():
        if key in hf and hf[key] != want:
            raise InteropError(f"{where}: {key}={hf[key]!r} is not supported (Alpha's GPT-2 "
                               f"needs {want!r})")
    act = hf.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in FROM_HF_ACTIVATION:
        hint = (" (the exact erf GELU; Alpha's gelu is the tanh approximation, gelu_new)"
                if act == "gelu" else "")
        raise InteropError(f"{where}: activation_function={act!r}{hint} is not supported; "
                           f"supported: {', '.join(FROM_HF_ACTIVATION)}")
    try:
        return ModelConfig(
            vocab_size=_int(hf, "vocab_size", where),
            n_layer=_int(hf, "n_layer", where),
            n_head=_int(hf, "n_head", where),
            n_embd=_int(hf, "n_embd", where),
            block_size=_int(hf, "n_positions", where),
            ffn_dim=int(hf.get("n_inner") or 0),
            activation=FROM_HF_ACTIVATION[act],
            bias=True,
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            dropout=0.0,  # inference and fine-tuning start without dropout; --dropout sets it
            layernorm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise InteropError(f"{where}: {e}") from None


def _int(hf: dict, key: str, where: str) -> int:
    value = hf.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InteropError(f"{where}: {key}={value!r} is missing or not an integer")
    return value


def infer_config(shapes: dict[str, tuple], n_head: int, where: str) -> ModelConfig:
    """A ModelConfig from the tensor shapes alone (a bare .safetensors file, {Alpha name:
    shape}). Shapes fix every size but the head count: `n_head`, or n_embd / 64 as in all of
    OpenAI's GPT-2 sizes. Activation gelu_new and epsilon 1e-5, as GPT-2."""
    if "wte" not in shapes or "wpe" not in shapes:
        raise InteropError(f"{where} is not a GPT-2 model: it has no wte/wpe embeddings")
    V, C = shapes["wte"]
    T = shapes["wpe"][0]
    layers = {int(m.group(1)) for n in shapes if (m := re.match(r"h\.(\d+)\.", n))}
    n_layer = max(layers) + 1 if layers else 0
    fc = shapes.get("h.0.mlp.c_fc.weight")
    H = fc[1] if fc else 4 * C
    if not n_head:
        if C % HEAD_DIM:
            raise InteropError(f"{where}: cannot tell the number of heads of a {C}-wide model "
                               "from the weights; give --heads")
        n_head = C // HEAD_DIM
    try:
        return ModelConfig(vocab_size=V, n_layer=n_layer, n_head=n_head, n_embd=C, block_size=T,
                           ffn_dim=0 if H == 4 * C else H, activation="gelu", bias=True,
                           tie_embeddings="lm_head.weight" not in shapes, dropout=0.0)
    except ConfigError as e:
        raise InteropError(f"{where}: {e}") from None


def with_heads(cfg: ModelConfig, n_head: int, where: str) -> ModelConfig:
    """`cfg` with n_head replaced (a --heads given with a config.json must agree with it)."""
    if not n_head or n_head == cfg.n_head:
        return cfg
    raise InteropError(f"{where} says n_head={cfg.n_head}; --heads {n_head} disagrees")

