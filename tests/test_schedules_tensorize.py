"""Tensorization with the register-blocked GEMM micro-kernels: the kernel C calls one micro-kernel per output
tile; tensorized kernels (int8 linear, widened int8 linear, int16 batched attention-style matmul) are bit-exact on
the emulated boards with each micro-kernel build (MVE, DSP, plain C) and use the SIMD instruction; the
tensorized designs are in MetaSchedule's space and replay from their trace."""
import subprocess

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from deploy.lower import lower_relax
from deploy.schedule import apply_default_schedules
from deploy.tir_pipeline import kernels_to_c
from schedules.kernels import KERNELS, kernel_case, random_case
from schedules.measure import FirmwareKit, measure_module
from schedules.space import postprocs, skip_foreign_tensor_intrinsics
from schedules.tensorize import (TILES, WIDENED_TILES, gemm_space, is_gemm, microkernel_sources, register_intrinsics,
                                 tensorize_matmul)
from schedules.tuning_log import tuning_target, workload
from targets import get_board


@pytest.fixture(scope="module")
def proj():
    return kernel_case(KERNELS["proj"])


def _int16_batched(length: int):
    """A batched int16 x int16 -> int32 matmul, as attention's probabilities x V."""
    bb = relax.BlockBuilder()
    p = relax.Var("p", relax.TensorType([1, 2, 8, length], "int16"))
    v = relax.Var("v", relax.TensorType([1, 2, length, 6], "int16"))
    with bb.function("main", [p, v]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(p, v, out_dtype="int32"))
        bb.emit_func_output(out)
    lowered = lower_relax(bb.get())
    gv, func = next((gv, f) for gv, f in lowered.functions.items() if gv.name_hint != "main")
    case = random_case("pv", func, 2 * 8 * length * 6)
    p_value, v_value = case.arguments
    assert np.array_equal(case.expected, p_value.astype(np.int32) @ v_value.astype(np.int32))  # numpy reference
    return case


@pytest.fixture(scope="module")
def int16_batched():
    """Reduction of 18: with DSP, four groups of 4 by LDRD, then one pair."""
    return _int16_batched(18)


@pytest.fixture(scope="module")
def int16_batched_odd():
    """Reduction of 19: odd row strides, which LDRD cannot take (the word-by-word loop and a last single MAC)."""
    return _int16_batched(19)


def _disassembly(board, elf) -> str:
    arch = ("-marmv8.1-m.main",) if board.arch == "arm" else ()
    return subprocess.run([board.tool_prefix + "objdump", "-d", *arch, str(elf)], capture_output=True, text=True,
                          check=True).stdout


def test_kernel_c_calls_one_micro_kernel_per_output_tile(proj):
    source = kernels_to_c(tensorize_matmul(proj.mod, (2, 4)), "cortex-m55")
    assert "iseg_gemm_s8_s8_2x4(" in source and "for (int32_t k" not in source
    assert "int32_t matmul_intermediate_ptr[8];" in source  # the accumulator is one 2x4 tile


def test_conv_kernel_is_refused():
    assert not is_gemm(kernel_case(KERNELS["patch_embed"]).mod["patch_embed"])
    with pytest.raises(ValueError, match="GEMM"):
        tensorize_matmul(kernel_case(KERNELS["patch_embed"]).mod)


def test_tile_that_does_not_divide_the_output_is_refused(int16_batched):
    with pytest.raises(ValueError, match="3x2"):
        tensorize_matmul(int16_batched.mod, (3, 2))  # 8 rows, 6 columns


@pytest.mark.parametrize("variant,instruction,tile", [
    ("cortex-m55-mve", "vmlava.s8", (2, 4)), ("cortex-m55-mve", "vmlava.s8", (2, 2)),  # 2x2: the inline-asm loop
    ("cortex-m55", "smlad", (2, 4)), ("cortex-m55", "smlad", (2, 2)), ("cortex-m4", "smlad", (2, 4)),
    ("riscv32", None, (2, 4))])
def test_tensorized_int8_kernel_is_bit_exact_and_uses_the_simd_instruction(proj, tmp_path, variant, instruction,
                                                                           tile):
    board = get_board(variant)
    kit = FirmwareKit(board, proj, tmp_path, microkernel_sources())
    instructions = measure_module(kit, tensorize_matmul(proj.mod, tile))  # raises unless bit-exact twice
    disassembly = _disassembly(board, next(tmp_path.glob("fixed_*/firmware.elf")))
    assert "iseg_gemm" not in disassembly  # the micro-kernel tiles are inlined: no symbol, no call
    if instruction is not None:
        assert instruction in disassembly
    default = measure_module(FirmwareKit(board, proj, tmp_path / "default"), apply_default_schedules(proj.mod))
    assert instructions < default


@pytest.mark.parametrize("variant,tile", [("cortex-m55-mve", (2, 3)), ("cortex-m55-mve", (2, 2)), ("cortex-m55", (2, 2)),
                                          ("riscv32", (4, 2))])
def test_tensorized_int16_batched_kernel_is_bit_exact(int16_batched, tmp_path, variant, tile):
    kit = FirmwareKit(get_board(variant), int16_batched, tmp_path, microkernel_sources())
    assert measure_module(kit, tensorize_matmul(int16_batched.mod, tile)) > 0


@pytest.mark.parametrize("variant,tile", [("cortex-m55", (2, 2)), ("cortex-m55", (2, 4)), ("cortex-m4", (4, 2)),
                                          ("riscv32", (2, 2))])
def test_widened_int8_kernel_is_bit_exact_and_beats_the_int8_tile(proj, tmp_path, variant, tile):
    board = get_board(variant)
    widened_mod = tensorize_matmul(proj.mod, tile, widened=True)
    source = kernels_to_c(widened_mod, board.mcpu)
    assert f"iseg_gemm_s16_s16_{tile[0]}x{tile[1]}(" in source and "int16_t param_0_global_ptr[4096];" in source
    widened = measure_module(FirmwareKit(board, proj, tmp_path, microkernel_sources()), widened_mod)  # bit-exact
    if board.widens_int8_gemms:
        assert "ldrd" in _disassembly(board, next(tmp_path.glob("fixed_*/firmware.elf")))
        plain = measure_module(FirmwareKit(board, proj, tmp_path / "int8", microkernel_sources()),
                               tensorize_matmul(proj.mod, tile))
        assert widened < plain


def test_int16_kernel_with_odd_strides_is_bit_exact(int16_batched_odd, tmp_path):
    kit = FirmwareKit(get_board("cortex-m55"), int16_batched_odd, tmp_path, microkernel_sources())
    assert measure_module(kit, tensorize_matmul(int16_batched_odd.mod, (2, 2))) > 0


def test_search_space_has_one_tensorized_design_per_fitting_tile_and_they_replay(proj):
    skip_foreign_tensor_intrinsics()
    context = ms.TuneContext(mod=workload(proj.mod["proj"]), target=tuning_target("cortex-m55"),
                             space_generator=gemm_space(postprocs()), task_name="proj")
    spaces = context.generate_design_space()
    assert len(spaces) == len([(r, c) for r, c in TILES if 256 % r == 0 and 64 % c == 0]) == 3  # 256 x 64 output
    register_intrinsics(proj.mod["proj"])
    for sch in spaces:
        assert any(inst.kind.name == "Tensorize" for inst in sch.trace.insts)
        replayed = tvm.s_tir.Schedule(workload(proj.mod["proj"]))
        sch.trace.apply_to_schedule(replayed, remove_postproc=False)
        tvm.ir.assert_structural_equal(replayed.mod, sch.mod)


def test_search_space_widens_int8_gemms_whose_packed_operands_fit(proj):
    skip_foreign_tensor_intrinsics()
    packed = 2 * 64 * (64 + 4)  # B (64 x 64) and at most 4 rows of A, as int16

    def designs(widen_within: int) -> list:
        context = ms.TuneContext(mod=workload(proj.mod["proj"]), target=tuning_target("cortex-m55"),
                                 space_generator=gemm_space(postprocs(), widen_within), task_name="proj")
        return context.generate_design_space()

    widened = designs(packed)
    assert len(widened) == len(WIDENED_TILES)
    assert all("from_int8" in str(inst.attrs) for sch in widened for inst in sch.trace.insts
               if inst.kind.name == "Tensorize")
    assert len(designs(packed - 1)) == 3  # does not fit: the int8 tiles
    register_intrinsics(proj.mod["proj"])
    for sch in widened:
        replayed = tvm.s_tir.Schedule(workload(proj.mod["proj"]))
        sch.trace.apply_to_schedule(replayed, remove_postproc=False)
        tvm.ir.assert_structural_equal(replayed.mod, sch.mod)
