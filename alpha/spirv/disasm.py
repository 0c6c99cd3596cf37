"""SPIR-V disassembler and the matching text assembler (lossless round trip).

`disassemble(words)` prints one instruction per line, `%id = OpName operands`, with ids as `%n`,
literal strings quoted, value enumerants by name (Capability Shader, StorageClass Workgroup...) and
every other word as a decimal number. `assemble(text)` parses exactly that form back to words,
so `assemble(disassemble(w)) == w` for any well-formed module.
"""

from __future__ import annotations

import re
import shlex
import struct

from alpha.spirv.grammar import ENUMS, OPS
from alpha.spirv.module import MAGIC, encode, string_words

BY_CODE = {code: (name, kinds.split()) for name, (code, kinds) in OPS.items()}
ID_KINDS = {"IdResultType", "IdResult", "IdRef", "IdScope", "IdMemorySemantics"}
VALUE_ENUMS = {"SourceLanguage", "ExecutionModel", "AddressingModel", "MemoryModel",
               "ExecutionMode", "StorageClass", "Decoration", "BuiltIn", "Capability",
               "GroupOperation"}
ENUM_NAMES = {kind: {v: n for n, v in reversed(list(vals.items()))}
              for kind, vals in ENUMS.items()}


def _read_string(words: list[int], i: int) -> tuple[str, int]:
    data = b""
    while i < len(words):
        chunk = struct.pack("<I", words[i])
        i += 1
        data += chunk
        if b"\0" in chunk:
            break
    return data.split(b"\0", 1)[0].decode(), i


def disassemble(words) -> str:
    words = list(words)
    if len(words) < 5 or words[0] != MAGIC:
        raise ValueError("not a SPIR-V module (bad magic number)")
    ver = words[1]
    lines = [f"; SPIR-V {ver >> 16 & 0xFF}.{ver >> 8 & 0xFF} generator {words[2]} "
             f"bound {words[3]} schema {words[4]}"]
    i = 5
    while i < len(words):
        n, code = words[i] >> 16, words[i] & 0xFFFF
        if n == 0 or i + n > len(words):
            raise ValueError(f"truncated instruction at word {i}")
        ops = words[i + 1:i + n]
        i += n
        if code not in BY_CODE:
            lines.append(f"OpUnknown{code} " + " ".join(str(w) for w in ops))
            continue
        name, kinds = BY_CODE[code]
        parts, result, j = [], None, 0
        for kind in kinds:
            base = kind.rstrip("?*")
            repeat = kind.endswith("*")
            while j < len(ops):
                if base == "IdResult":
                    result = f"%{ops[j]}"
                    j += 1
                elif base in ID_KINDS:
                    parts.append(f"%{ops[j]}")
                    j += 1
                elif base == "LiteralString":
                    s, j2 = _read_string(ops, j)
                    if string_words(s) != ops[j:j2]:  # odd padding: keep raw words
                        break
                    parts.append('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
                    j = j2
                elif base in VALUE_ENUMS and ops[j] in ENUM_NAMES.get(base, {}):
                    parts.append(ENUM_NAMES[base][ops[j]])
                    j += 1
                    if base == "Decoration" and parts[-1] == "BuiltIn" and j < len(ops) \
                            and ops[j] in ENUM_NAMES["BuiltIn"]:
                        parts.append(ENUM_NAMES["BuiltIn"][ops[j]])
                        j += 1
                elif base == "LiteralInteger":
                    parts.append(str(ops[j]))
                    j += 1
                else:
                    break  # numbers (and bitmask operands) are printed raw below
                if not repeat:
                    break
            else:
                continue
            if base not in ID_KINDS and base not in ("LiteralString", "LiteralInteger") and \
                    base not in VALUE_ENUMS:
                break
        parts += [str(w) for w in ops[j:]]
        text = " ".join([name] + parts)
        lines.append(f"{result} = {text}" if result else text)
    return "\n".join(lines) + "\n"


def assemble(text: str) -> list[int]:
    header = None
    body: list[int] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(";"):
            m = re.match(r"; SPIR-V (\d+)\.(\d+) generator (\d+) bound (\d+) schema (\d+)", line)
            if m:
                a, b, gen, bound, schema = map(int, m.groups())
                header = [MAGIC, (a << 16) | (b << 8), gen, bound, schema]
            continue
        result = None
        if "=" in line.split('"', 1)[0]:
            lhs, line = line.split("=", 1)
            result = int(lhs.strip()[1:])
        toks = shlex.split(line, posix=False)
        name, toks = toks[0], toks[1:]
        if name not in OPS:
            raise ValueError(f"unknown instruction {name}")
        kinds = OPS[name][1].split()
        operands: list = []
        if result is not None:
            if kinds and kinds[0] == "IdResultType":
                operands.append(int(toks[0][1:]))
                toks = toks[1:]
            operands.append(result)
        for tok in toks:
            if tok.startswith("%"):
                operands.append(int(tok[1:]))
            elif tok.startswith('"'):
                operands.append(tok[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
            elif re.fullmatch(r"\d+", tok):
                operands.append(int(tok))
            else:
                for kind in VALUE_ENUMS:
                    if tok in ENUMS.get(kind, {}):
                        operands.append(ENUMS[kind][tok])
                        break
                else:
                    raise ValueError(f"{name}: cannot parse operand {tok!r}")
        body += encode(name, operands)
    if header is None:
        raise ValueError("missing '; SPIR-V' header line")
    return header + body
