"""The instruction classifier of the float-free proofs: on the integer-MVE board MVE integer instructions
pass, every VFP / MVE-float form still fails; on the scalar boards every vector instruction fails."""
import pytest

from deploy.proofs import is_fp_instruction
from targets import BOARDS

MVE_INTEGER = ["vmlava.s8\tr0, q3, q2", "vldrb.u8\tq2, [r1], #16", "vadd.i32\tq0, q0, q1",
               "vmov.32\tq0[1], r2", "vpush\t{d8-d15}", "vpop\t{d8-d15}"]
FLOATING = ["vadd.f32\tq0, q1, q2", "vmul.f32\ts0, s1, s2", "vmov\ts0, r1", "vmov\tr0, r1, d0", "vldr\td0, [r0]",
            "vmrs\tr0, fpscr", "vcvt.s32.f32\ts0, s0", "vfma.f16\tq0, q1, q2", "vpush\t{d0-d7}"]


@pytest.mark.parametrize("text", MVE_INTEGER)
def test_mve_integer_instruction_is_accepted_on_the_mve_board_only(text):
    assert not is_fp_instruction(BOARDS["cortex-m55-mve"], text)
    assert is_fp_instruction(BOARDS["cortex-m55"], text)


@pytest.mark.parametrize("text", FLOATING)
def test_float_instruction_is_rejected_everywhere(text):
    assert is_fp_instruction(BOARDS["cortex-m55-mve"], text)
    assert is_fp_instruction(BOARDS["cortex-m55"], text)


def test_integer_instructions_are_not_float():
    for text in ["mul\tr0, r1, r2", "smlad\tr0, r1, r2, r3", "ldr\tr0, [r1]"]:
        assert not is_fp_instruction(BOARDS["cortex-m55-mve"], text)
        assert not is_fp_instruction(BOARDS["cortex-m55"], text)
    assert is_fp_instruction(BOARDS["riscv32"], "fadd.s\tfa0, fa1, fa2")
    assert not is_fp_instruction(BOARDS["riscv32"], "fence")
