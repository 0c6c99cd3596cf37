"""The domain registry: what kind of text a run trains on, and the defaults that suit it.

A domain picks the tokenizer, the special tokens the tokenizer must keep whole, and config overrides
(resolved below the user's file and flags; see `alpha.core.config.resolve`).
"""

from __future__ import annotations

from alpha.core.config import DomainConfig
from alpha.core.errors import ConfigError

USER, ASSISTANT, END_OF_TEXT = "<|user|>", "<|assistant|>", "<|end_of_text|>"

_REGISTRY: dict[str, DomainConfig] = {}


def register(domain: DomainConfig) -> DomainConfig:
    _REGISTRY[domain.name] = domain
    return domain


def get_domain(name: str) -> DomainConfig:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):  # TypeError: a list or dict from a JSON file
        raise ConfigError(
            f"unknown domain {name!r} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def all_domains() -> list[DomainConfig]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


register(DomainConfig(
    name="text",
    description="plain prose, character level",
    tokenizer="char",
))

register(DomainConfig(
    name="code",
    description="source code, byte-level BPE",
    tokenizer="bpe",
    special_tokens=(END_OF_TEXT,),
    model={"vocab_size": 4096, "block_size": 256},
    sample={"temperature": 0.6},
))

register(DomainConfig(
    name="chat",
    description="dialogue turns between a user and an assistant, byte-level BPE",
    tokenizer="bpe",
    special_tokens=(USER, ASSISTANT, END_OF_TEXT),
    model={"vocab_size": 4096, "block_size": 256},
    sample={"stop": [END_OF_TEXT, USER]},
))
