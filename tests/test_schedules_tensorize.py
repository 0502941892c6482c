"""Tensorization with the shipped int8 dot-product micro-kernel: the C calls it, and the tensorized kernels are
bit-exact on the emulated boards with each micro-kernel build (MVE, DSP, plain C), using the SIMD instruction."""
import subprocess

import pytest

from deploy.schedule import apply_default_schedules
from deploy.tir_pipeline import kernels_to_c
from schedules.kernels import KERNELS, kernel_case
from schedules.measure import FirmwareKit, measure_module
from schedules.tensorize import ENABLE_MVE, microkernel_sources, mve_board, tensorize_matmul
from targets import get_board


@pytest.fixture(scope="module")
def proj():
    return kernel_case(KERNELS["proj"])


@pytest.fixture(scope="module")
def tensorized(proj):
    return tensorize_matmul(proj.mod)


def _disassembly(board, elf) -> str:
    return subprocess.run([board.tool_prefix + "objdump", "-d", "-marmv8.1-m.main", str(elf)], capture_output=True,
                          text=True, check=True).stdout


def test_kernel_c_calls_the_micro_kernel_for_its_inner_product(tensorized):
    source = kernels_to_c(tensorized, "cortex-m55")
    assert "iseg_dot_s8(" in source and "for (int32_t k" not in source


def test_conv_kernel_is_refused(proj):
    with pytest.raises(ValueError, match="2-D matmul"):
        tensorize_matmul(kernel_case(KERNELS["patch_embed"]).mod)


@pytest.mark.parametrize("variant,instruction", [
    ("cortex-m55-mve", "vmlava.s8"), ("cortex-m55", "smlad"), ("cortex-m4", "smlad"), ("riscv32", None)])
def test_tensorized_kernel_is_bit_exact_and_uses_the_simd_instruction(proj, tensorized, tmp_path, variant, instruction):
    mve = variant.endswith("-mve")
    board = mve_board(get_board("cortex-m55")) if mve else get_board(variant)
    kit = FirmwareKit(board, proj, tmp_path, microkernel_sources(), ENABLE_MVE if mve else "")
    instructions = measure_module(kit, tensorized)  # raises unless both calls match the reference exactly
    if instruction is not None:
        elf = next(tmp_path.glob("fixed_*/firmware.elf"))
        assert instruction in _disassembly(board, elf)
    if mve:
        default = measure_module(FirmwareKit(get_board("cortex-m55"), proj, tmp_path / "default"),
                                 apply_default_schedules(proj.mod))
        assert instructions * 2 < default
