"""Startup code on every board in QEMU: semihosting print + exit code, the fault handler catching a
real FP instruction (the FPU is off), and the instruction-count plugin counting exactly."""
import subprocess

import pytest

from common.errors import UserError
from deploy import measure, proofs, qemu
from deploy.project import COMMON_CFLAGS
from targets import BOARDS, EXIT_FAULT, STARTUP_DIR
from targets.linker import linker_script

HELLO = '#include "semihost.h"\nint main(void) { semihost_write0("hello from the board\\n"); return 7; }\n'
FLOAT = ('#include "semihost.h"\nvolatile float x = 1.5f;\n'
         'int main(void) { x = x * 3.0f; semihost_write0("FP instruction did not fault\\n"); return (int)x; }\n')
# A loop with a known number of retired instructions: 1 + 2 * 1000 + 1.
COUNTED = {
    "arm": '__attribute__((naked)) void counted(void) { __asm__ volatile('
           '"movw r0, #1000\\n1: subs r0, r0, #1\\n bne 1b\\n bx lr\\n"); }',
    "riscv": '__attribute__((naked)) void counted(void) { __asm__ volatile('
             '"li t0, 1000\\n1: addi t0, t0, -1\\n bnez t0, 1b\\n ret\\n"); }',
}
COUNTED_MAIN = '#include "semihost.h"\nvoid counted(void);\nint main(void) { counted(); return 0; }\n'


def build(tmp_path, board, source, cflags, name="prog"):
    (tmp_path / f"{name}.c").write_text(source)
    (tmp_path / "board.ld").write_text(linker_script(board))
    elf = tmp_path / f"{name}.elf"
    flags = [f for f in COMMON_CFLAGS if f != "-fstack-usage"]
    subprocess.run([board.cc, *cflags, *flags, f"-I{STARTUP_DIR}", "-T", str(tmp_path / "board.ld"),
                    str(tmp_path / f"{name}.c"), *map(str, board.startup_sources), "-nostdlib", "-lgcc", "-o", str(elf)],
                   check=True, capture_output=True, text=True)
    return elf


@pytest.mark.parametrize("name", list(BOARDS))
def test_semihosting_print_and_exit_code(tmp_path, name):
    board = BOARDS[name]
    elf = build(tmp_path, board, HELLO, board.cflags)
    result = subprocess.run(qemu.qemu_command(board, elf), capture_output=True, text=True, timeout=30)
    assert result.returncode == 7
    assert "hello from the board" in result.stdout + result.stderr


@pytest.mark.parametrize("name", list(BOARDS))
def test_fp_instruction_is_detected(tmp_path, name):
    board = BOARDS[name]
    elf = build(tmp_path, board, FLOAT, board.fp_test_cflags)
    assert not proofs.fp_instructions(board, elf)["ok"], "the float program must contain FP instructions"


@pytest.mark.parametrize("name", [name for name, board in BOARDS.items() if not (board.mve or board.fpu)])
def test_fp_instruction_faults(tmp_path, name):
    """With CP10/CP11 off the first FP instruction faults. (MVE and float boards grant CP10/CP11, which enables
    the FPU: on MVE boards only the static proofs apply, see test_mve_board_runs_mve_but_no_float_proof.)"""
    board = BOARDS[name]
    elf = build(tmp_path, board, FLOAT, board.fp_test_cflags)
    with pytest.raises(UserError, match=f"hard fault \\(exit code {EXIT_FAULT}\\)"):
        qemu.run_firmware(board, elf, timeout_s=30)


MVE_PROGRAM = ('#include <arm_mve.h>\n#include "semihost.h"\nvolatile int8_t a[16] = {1, 2, 3};\n'
               'int main(void) { return vmladavq_s8(vld1q_s8((const int8_t *)a), vld1q_s8((const int8_t *)a)); }\n')


def test_mve_board_runs_mve_but_no_float_proof(tmp_path):
    """The MVE board's startup grants MVE (the program runs: 1 + 4 + 9), its proofs accept MVE integer
    instructions and still reject the float program."""
    board = BOARDS["cortex-m55-mve"]
    elf = build(tmp_path, board, MVE_PROGRAM, board.cflags)
    assert proofs.prove_float_free(board, elf)["ok"]
    assert "vmlav.s8" in proofs._tool(board, "objdump", "-d", "-marmv8.1-m.main", str(elf))
    result = subprocess.run(qemu.qemu_command(board, elf), capture_output=True, text=True, timeout=30)
    assert result.returncode == 14
    float_elf = build(tmp_path, board, FLOAT, board.fp_test_cflags, name="float")
    assert not proofs.prove_float_free(board, float_elf)["ok"]


@pytest.mark.parametrize("name", ["cortex-m55", "riscv32"])
def test_instruction_counts_are_exact(tmp_path, name):
    board = BOARDS[name]
    elf = build(tmp_path, board, COUNTED_MAIN + COUNTED[board.arch], board.cflags)
    counts = tmp_path / "counts.txt"
    qemu.run_firmware(board, elf, 30, measure.plugin_path(), counts)
    assert measure.instructions_per_symbol(board, elf, counts)["counted"] == 1 + 2 * 1000 + 1
