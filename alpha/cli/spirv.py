"""`python -m alpha spirv dis FILE.spv`: disassemble a SPIR-V module (alpha.spirv.disasm);
`python -m alpha spirv dump-kernels DIR`: write every helios kernel as DIR/<name>.spv."""

from __future__ import annotations

import os
import sys
from array import array


def register(sub):
    p = sub.add_parser("spirv", help="SPIR-V tools: disassemble a module, dump helios kernels")
    sp = p.add_subparsers(dest="spirv_command", metavar="ACTION")
    d = sp.add_parser("dis", help="disassemble FILE.spv to text")
    d.add_argument("file")
    k = sp.add_parser("dump-kernels", help="write every helios kernel as DIR/<name>.spv")
    k.add_argument("dir")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.core.errors import ConfigError
    if args.spirv_command == "dis":
        from alpha.spirv.disasm import disassemble
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read {args.file}: {e.strerror}") from None
        if len(data) % 4:
            raise ConfigError(f"{args.file}: size {len(data)} is not a multiple of 4")
        words = array("I", data)
        if words and words[0] == 0x03022307:
            words.byteswap()
        try:
            sys.stdout.write(disassemble(words))
        except ValueError as e:
            raise ConfigError(f"{args.file}: {e}") from None
        return 0
    if args.spirv_command == "dump-kernels":
        from alpha.helios.kernels.catalog import builders
        os.makedirs(args.dir, exist_ok=True)
        for name, build in builders().items():
            with open(os.path.join(args.dir, f"{name}.spv"), "wb") as f:
                f.write(array("I", build().finish()).tobytes())
        print(f"wrote {len(builders())} kernels to {args.dir}")
        return 0
    print("usage: python -m alpha spirv {dis FILE.spv | dump-kernels DIR}", file=sys.stderr)
    return 2
