"""Tokenizer benchmark: BPE training time (5 MB -> 4096 tokens) and encoding speed, against targets.

    python bench/tokenizers.py [--mb 5] [--vocab-size 4096]

The corpus: /work/shared/data/tinyshakespeare.txt (or ../shared/data/… next to the repo) followed
by the Python standard library's top-level sources until it holds --mb megabytes; without the
Shakespeare file, the stdlib sources alone; without those either, generated text. Prints one line
per measurement with the target and PASS/FAIL, and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import sysconfig
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from alpha.tokenizers import train_tokenizer  # noqa: E402

TRAIN_TARGET_S = 60.0
ENCODE_TARGET_MBS = 2.0


def corpus(n_bytes: int) -> tuple[str, str]:
    """(text of about n_bytes UTF-8 bytes, a description of where it came from)."""
    parts: list[str] = []
    sources = []
    for candidate in ("/work/shared/data/tinyshakespeare.txt",
                      os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", newline="") as f:
                parts.append(f.read())
            sources.append("tinyshakespeare")
            break
    total = sum(len(p.encode("utf-8")) for p in parts)
    n_files = 0
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        if total >= n_bytes:
            break
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        total += len(text.encode("utf-8"))
        n_files += 1
    if n_files:
        sources.append(f"{n_files} stdlib .py files")
    if total < n_bytes:
        parts.append(_generated(n_bytes - total))
        sources.append("generated text")
    text = "".join(parts)
    text = text.encode("utf-8")[:n_bytes].decode("utf-8", "ignore")
    return text, " + ".join(sources)


def _generated(n_bytes: int) -> str:
    """Deterministic pseudo-prose (a word list walked by an LCG) of about n_bytes."""
    words = ("the of and to in is that for it as with was on be by at this from or an are not "
             "have which one you all were her she there would their we him been has when who "
             "will more no if out so said what up its about into than them can only other new "
             "some could time these two may then do first any my now such like our over man me "
             "even most made after also did many before must through back years where much "
             "your way well down should because each just those people how too little state "
             "good very make world still own see men work long get here between both life being "
             "under never day same another know while last might us great old year off come "
             "since against go came right used take three").split()
    out = []
    x = 12345
    size = 0
    while size < n_bytes:
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        w = words[x % len(words)]
        sep = ".\n" if x % 17 == 0 else (", " if x % 7 == 0 else " ")
        out.append(w + sep)
        size += len(w) + len(sep)
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=5.0, help="corpus size in MB (default 5)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args(argv)

    text, where = corpus(int(args.mb * 1e6))
    n_bytes = len(text.encode("utf-8"))
    print(f"corpus: {n_bytes / 1e6:.2f} MB ({where})")

    t0, c0 = time.perf_counter(), time.process_time()
    tok = train_tokenizer("bpe", text, args.vocab_size, ["<|end_of_text|>"])
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0

    # Encoding, best of 3 (other processes share this machine), each with an empty word cache.
    cold = []
    for _ in range(3):
        tok._cache = {}
        t0, c0 = time.perf_counter(), time.process_time()
        ids = tok.encode(text)
        cold.append((time.perf_counter() - t0, time.process_time() - c0))
    cold_s, cold_cpu = min(cold)
    t0 = time.perf_counter()
    tok.encode(text)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = tok.decode(ids)
    decode_s = time.perf_counter() - t0
    if back != text:
        print("FAIL: decode(encode(text)) != text")
        return 1

    mb = n_bytes / 1e6
    ok_train = train_s < TRAIN_TARGET_S
    ok_encode = mb / cold_s >= ENCODE_TARGET_MBS
    print(f"bpe train  {train_s:7.2f} s     {mb:.1f} MB -> {tok.vocab_size} tokens, cpu "
          f"{train_cpu:.2f} s (target < {TRAIN_TARGET_S:.0f} s)  {'PASS' if ok_train else 'FAIL'}")
    print(f"encode     {mb / cold_s:7.2f} MB/s  empty word cache, cpu {mb / cold_cpu:.2f} MB/s "
          f"(target >= {ENCODE_TARGET_MBS:.0f} MB/s)  {'PASS' if ok_encode else 'FAIL'}")
    print(f"encode     {mb / warm_s:7.2f} MB/s  warm word cache")
    print(f"decode     {mb / decode_s:7.2f} MB/s")
    print(f"ratio      {n_bytes / len(ids):7.2f} bytes/token ({len(ids):,} tokens)")
    return 0 if ok_train and ok_encode else 1


if __name__ == "__main__":
    sys.exit(main())
