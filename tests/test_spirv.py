"""The SPIR-V assembler: every kernel helios emits passes spirv-val, and the disassembler
round-trips (binary -> text -> the same binary). No GPU needed."""

from __future__ import annotations

import shutil
import subprocess
from array import array

import pytest

from conftest import require_peer
from alpha.spirv.disasm import assemble, disassemble
from alpha.spirv.dsl import Kernel
from alpha.spirv.module import Module, string_words
from alpha.helios.kernels.catalog import builders

KERNELS = builders()


def _val(words, tmp_path, name="k"):
    require_peer(shutil.which("spirv-val") is not None, "spirv-val not installed (spirv-tools)")
    path = tmp_path / f"{name}.spv"
    path.write_bytes(array("I", words).tobytes())
    r = subprocess.run(["spirv-val", "--target-env", "vulkan1.2", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{name}: spirv-val rejected the module:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_validates(name, tmp_path):
    _val(KERNELS[name]().finish(), tmp_path, name)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_disassembler_round_trip(name):
    words = KERNELS[name]().finish()
    text = disassemble(words)
    assert "OpEntryPoint GLCompute" in text
    assert assemble(text) == words


def test_spirv_dis_agrees_on_instruction_count(tmp_path):
    require_peer(shutil.which("spirv-dis") is not None, "spirv-dis not installed (spirv-tools)")
    words = KERNELS["softmax_forward"]().finish()
    path = tmp_path / "k.spv"
    path.write_bytes(array("I", words).tobytes())
    r = subprocess.run(["spirv-dis", "--raw-id", str(path)], capture_output=True, text=True)
    assert r.returncode == 0
    theirs = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith(";")]
    ours = [ln for ln in disassemble(words).splitlines() if not ln.startswith(";")]
    assert len(theirs) == len(ours)


def test_types_and_constants_are_deduplicated():
    m = Module()
    f32 = m.type_float(32)
    assert m.type_float(32) == f32
    assert m.constant(f32, 1.5) == m.constant(f32, 1.5)
    assert m.constant(f32, 1.5) != m.constant(f32, 2.5)
    assert m.type_pointer("Workgroup", f32) == m.type_pointer("Workgroup", f32)


def test_string_literals_are_nul_padded():
    assert string_words("main") == [0x6E69616D, 0]
    assert string_words("abc") == [0x00636261]


def test_unknown_instruction_and_enum_are_errors():
    m = Module()
    with pytest.raises(ValueError, match="unknown SPIR-V"):
        m.capability("NoSuchCapability")
    with pytest.raises(ValueError, match="unknown SPIR-V instruction"):
        from alpha.spirv.module import encode
        encode("OpNoSuchThing", [])


def test_dsl_control_flow_and_subgroup_ops(tmp_path):
    k = Kernel("t", local=(64, 1, 1), params=[("y", "f32*"), ("n", "u32")])
    y, n = k.params()
    k.m.capability("GroupNonUniform", "GroupNonUniformArithmetic")
    total = k.var("f32", 0.0)
    with k.loop(k.gid, n, k.nthreads) as i:
        with k.if_(i % 2 > 0):
            total.set(total.get() + y[i])
    s = k.op("OpGroupNonUniformFAdd", "f32", k.const(3, "u32").id, 0, total.get().id)
    with k.if_(k.local_id(0).eq(0)):
        y[k.group_id(0)] = s
    _val(k.finish(), tmp_path, "subgroup")


def test_cooperative_matrix_opcodes_are_known():
    from alpha.spirv.grammar import ENUMS, OPS
    assert OPS["OpTypeCooperativeMatrixKHR"][0] == 4456
    assert OPS["OpCooperativeMatrixMulAddKHR"][0] == 4459
    assert ENUMS["Capability"]["CooperativeMatrixKHR"] == 6022


def test_cli_dis(tmp_path, capsys):
    from alpha.cli.main import main
    path = tmp_path / "k.spv"
    path.write_bytes(array("I", KERNELS["row_sum"]().finish()).tobytes())
    assert main(["spirv", "dis", str(path)]) == 0
    assert "OpEntryPoint GLCompute" in capsys.readouterr().out
    bad = tmp_path / "bad.spv"
    bad.write_bytes(b"\0" * 8)
    assert main(["spirv", "dis", str(bad)]) == 2


def test_grammar_is_what_its_generator_writes():
    """alpha/spirv/grammar.py is generated: regenerating it from Khronos' grammar JSON (Debian's
    spirv-headers) gives the checked-in file to the byte, so no one edits it by hand."""
    import os

    from alpha.spirv import gen_grammar

    have = os.path.isfile(os.path.join(gen_grammar.HEADERS, "spirv.core.grammar.json"))
    require_peer(have, f"no SPIR-V grammar JSON in {gen_grammar.HEADERS} (apt-get install "
                       "spirv-headers)")
    text, _ = gen_grammar.render()
    path = os.path.join(os.path.dirname(gen_grammar.__file__), "grammar.py")
    with open(path) as f:
        checked_in = f.read()
    assert text == checked_in, "grammar.py differs from its generator's output: run " \
                               "python -m alpha.spirv.gen_grammar"
