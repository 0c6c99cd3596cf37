"""`python -m alpha export`: write a checkpoint as a Hugging Face GPT-2 folder.

    python -m alpha export --checkpoint outputs/<run>/checkpoints/step-2000.ckpt --out my-gpt2/
    python -m alpha export --run <run> --out my-gpt2/          # the run's latest checkpoint

The folder (config.json, model.safetensors, generation_config.json, and GPT-2's tokenizer files
when the model uses GPT-2's tokenizer) loads with `GPT2LMHeadModel.from_pretrained("my-gpt2")`.
A model HF's GPT-2 cannot express (activation swiglu) is refused, naming the setting.
"""

from __future__ import annotations

import sys
import time


def register(sub):
    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face GPT-2 folder",
                       description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a checkpoint file")
    src.add_argument("--run", help="a run folder or run id (uses its latest checkpoint)")
    p.add_argument("--out", metavar="DIR", required=True, help="the folder to write")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.interop.export import export_checkpoint
    from alpha.train.checkpoint import find as find_checkpoint

    t0 = time.perf_counter()
    path = find_checkpoint(args.checkpoint or args.run)
    result = export_checkpoint(path, args.out)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"exported {path} ({result.n_params:,} parameters) to {result.folder} in "
          f"{time.perf_counter() - t0:.1f}s: "
          + ", ".join(f.rsplit("/", 1)[-1] for f in result.files))
    return 0
