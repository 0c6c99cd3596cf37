"""Which Alpha models are GPT-2: the one list of every option GPT-2's architecture lacks.

HF GPT-2 export (`alpha.interop.hf_gpt2.check_exportable`) refuses a model for which `not_gpt2`
names a reason. An option that changes what the model computes away from GPT-2 adds its test
here (and nowhere else), so export never writes a folder that computes something else.
"""

from __future__ import annotations

from alpha.core.config import ModelConfig

# Alpha activation -> HF activation_function (gelu is the tanh approximation, HF's gelu_new)
TO_HF_ACTIVATION = {"gelu": "gelu_new", "relu": "relu", "silu": "silu"}


def not_gpt2(cfg: ModelConfig) -> str | None:
    """One sentence naming the first setting of `cfg` that GPT-2 has no way to express, or None
    when the model is a GPT-2 (up to its sizes, biases and tying)."""
    if cfg.activation == "relu2":
        return (f"activation=relu2: HF GPT-2 has no relu(x)^2 activation; models with "
                f"activation {', '.join(TO_HF_ACTIVATION)} export")
    if cfg.activation not in TO_HF_ACTIVATION:
        return (f"activation={cfg.activation}: GPT-2's MLP is c_fc -> activation -> c_proj with "
                "one input projection, and a gated (SwiGLU) MLP needs two; models with "
                f"activation {', '.join(TO_HF_ACTIVATION)} export")
    if cfg.pos != "learned":
        return f"pos={cfg.pos}: GPT-2 has learned positions (wpe) only"
    if cfg.attn_softcap:
        return f"attn_softcap={cfg.attn_softcap}: GPT-2's attention scores are not capped"
    if cfg.norm != "layernorm":
        return f"norm={cfg.norm}: GPT-2's ln_1, ln_2 and ln_f are LayerNorms"
    if cfg.qk_norm:
        return "qk_norm=True: GPT-2 does not normalise q and k"
    if cfg.logit_softcap:
        return f"logit_softcap={cfg.logit_softcap}: GPT-2's logits are not capped"
    return None
