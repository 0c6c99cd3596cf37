"""Weights interop: safetensors files, and Hugging Face GPT-2 folders in and out.

- `safetensors`: the format's strict reader (memory-mapped) and atomic writer, on the stdlib.
- `hf_gpt2`: the config fields and tensor names of HF's GPT2LMHeadModel against Alpha's.
- `export`: an Alpha checkpoint -> an HF GPT-2 folder (`python -m alpha export`).
- `hf_import`: an HF GPT-2 folder or .safetensors file -> an Alpha checkpoint
  (`python -m alpha import`).
- `init_from`: `train --init-from`, a new run from an Alpha checkpoint or a GPT-2 model.
GPT-2's tokenizer lives with the other tokenizers: `alpha.tokenizers.gpt2`.
"""
