"""`python -m alpha tokenizer build|encode|decode|info`: train, inspect and use tokenizer artifacts.

    python -m alpha tokenizer build --kind bpe --vocab-size 4096 --data corpus.txt --out tok.json
    python -m alpha tokenizer encode --tokenizer tok.json --text "hello"      # prints ids
    python -m alpha tokenizer decode --tokenizer tok.json --ids "104 101"     # prints text
"""

from __future__ import annotations

import sys
import time

from alpha.core.errors import ConfigError, DataError


def register(sub):
    p = sub.add_parser("tokenizer", help="build, inspect and use tokenizers (bpe, char, word)")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    tsub.required = True

    b = tsub.add_parser("build", help="train a tokenizer on a text file and save it as JSON")
    b.add_argument("--kind", choices=("bpe", "char", "word"), default=None,
                   help="tokenizer kind (default: the domain's, else bpe)")
    b.add_argument("--vocab-size", type=int, default=None,
                   help="total tokens including special tokens (bpe default 4096, word 8192, "
                        "char 0 = every character)")
    b.add_argument("--data", required=True, help="UTF-8 text file to train on")
    b.add_argument("--out", required=True, help="where to write the tokenizer JSON")
    b.add_argument("--domain", default="", help="take special tokens (and kind) from a domain: "
                                                "text, code, chat")
    b.add_argument("--special", action="append", default=[], metavar="TOKEN",
                   help="an extra special token (repeatable)")
    b.add_argument("--max-train-mb", type=float, default=None,
                   help="train BPE/word on at most the first N MB (default 8 for bpe, 32 word)")
    b.set_defaults(func=run_build)

    e = tsub.add_parser("encode", help="print the token ids of a text")
    e.add_argument("--tokenizer", required=True, help="tokenizer JSON")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to encode")
    src.add_argument("--file", help="encode this file's text")
    e.add_argument("--no-special", action="store_true",
                   help="encode special-token text as ordinary text")
    e.add_argument("--show", action="store_true", help="print each token's text beside its id")
    e.set_defaults(func=run_encode)

    d = tsub.add_parser("decode", help="print the text of token ids")
    d.add_argument("--tokenizer", required=True, help="tokenizer JSON")
    d.add_argument("--ids", required=True, help='ids separated by spaces or commas: "1 2 3"')
    d.set_defaults(func=run_decode)

    i = tsub.add_parser("info", help="describe a tokenizer JSON")
    i.add_argument("--tokenizer", required=True, help="tokenizer JSON")
    i.set_defaults(func=run_info)


def run(args) -> int:
    return int(args.func(args) or 0)


def run_build(args) -> int:
    from alpha.core.domains import get_domain
    from alpha.tokenizers import train_from_file

    specials: list[str] = []
    kind = args.kind
    if args.domain:
        dom = get_domain(args.domain)
        specials.extend(dom.special_tokens)
        kind = kind or dom.tokenizer
    kind = kind or "bpe"
    for tok in args.special:
        if tok not in specials:
            specials.append(tok)
    vocab_size = args.vocab_size
    if vocab_size is None:
        vocab_size = {"bpe": 4096, "word": 8192, "char": 0}[kind]
    if vocab_size < 0:
        raise ConfigError(f"--vocab-size {vocab_size} must be >= 0")
    max_bytes = None
    if args.max_train_mb is not None:
        if args.max_train_mb <= 0:
            raise ConfigError(f"--max-train-mb {args.max_train_mb} must be > 0")
        max_bytes = int(args.max_train_mb * 1e6)
    t0 = time.perf_counter()
    tok = train_from_file(kind, args.data, vocab_size, specials, max_bytes=max_bytes,
                          log=lambda line: print(line, file=sys.stderr))
    seconds = time.perf_counter() - t0
    tok.save(args.out)
    extra = f", specials: {' '.join(tok.special_tokens)}" if tok.special_tokens else ""
    print(f"{kind} tokenizer with {tok.vocab_size} tokens{extra} -> {args.out} ({seconds:.1f}s)")
    if kind == "bpe" and tok.vocab_size < vocab_size:
        print(f"note: the text ran out of pairs to merge before {vocab_size} tokens",
              file=sys.stderr)
    return 0


def run_encode(args) -> int:
    from alpha.tokenizers import load

    tok = load(args.tokenizer)
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8", newline="") as f:
                text = f.read()
        except FileNotFoundError:
            raise DataError(f"file not found: {args.file}") from None
        except UnicodeDecodeError:
            raise DataError(f"file {args.file} is not UTF-8 text") from None
    else:
        text = args.text
    ids = tok.encode(text, allow_special=not args.no_special)
    if args.show:
        for i in ids:
            print(f"{i}\t{tok.decode([i])!r}")
    else:
        print(" ".join(str(i) for i in ids))
    return 0


def run_decode(args) -> int:
    from alpha.tokenizers import load

    tok = load(args.tokenizer)
    ids = []
    for part in args.ids.replace(",", " ").split():
        try:
            ids.append(int(part))
        except ValueError:
            raise DataError(f"--ids: {part!r} is not an integer token id") from None
    sys.stdout.write(tok.decode(ids) + "\n")
    return 0


def run_info(args) -> int:
    from alpha.tokenizers import load

    tok = load(args.tokenizer)
    print(f"kind         {tok.kind}")
    print(f"vocab_size   {tok.vocab_size}")
    print(f"specials     {tok.special_tokens or 'none'}")
    print(f"fingerprint  {tok.fingerprint()[:16]}")
    return 0
