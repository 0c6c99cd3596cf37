"""Alpha: a GPT training system written from scratch in Python (stdlib only at run time)."""

__version__ = "0.1.0"
