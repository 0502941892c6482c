"""The microcontroller search space: design spaces exist for the Segmenter's matmul and conv kernels, have no
parallel or vector loops, tile the reduction, and sampled schedules stay bit-exact on the emulated board."""
import pytest
from tvm.s_tir import meta_schedule as ms

from schedules.kernels import KERNELS, kernel_case
from schedules.measure import FirmwareKit, measure_module
from schedules.space import MAX_INNERMOST_FACTOR, microcontroller_space, skip_foreign_tensor_intrinsics
from schedules.tuning_log import tuning_target, workload
from targets import get_board


def _design_spaces(case):
    skip_foreign_tensor_intrinsics()
    context = ms.TuneContext(mod=workload(case.mod[case.name]), target=tuning_target("cortex-m55"),
                             space_generator=microcontroller_space(), task_name=case.name)
    return context.generate_design_space()


@pytest.mark.parametrize("name", ["qkv", "patch_embed"])
def test_design_spaces_tile_without_parallel_or_vector_loops(name):
    spaces = _design_spaces(kernel_case(KERNELS[name]))
    assert len(spaces) >= 2  # tiled sketches with and without a local write-back tile
    instructions = [str(inst.kind.name) for sch in spaces for inst in sch.trace.insts]
    assert "SamplePerfectTile" in instructions and "Split" in instructions
    for sch in spaces:
        text = sch.mod.script()
        assert "T.parallel" not in text and "T.vectorized" not in text and "T.thread_binding" not in text
    tiles = [inst for sch in spaces for inst in sch.trace.insts if inst.kind.name == "SamplePerfectTile"]
    assert all(int(inst.attrs[1]) <= MAX_INNERMOST_FACTOR for inst in tiles)


def test_every_design_space_of_a_matmul_is_bit_exact_in_qemu(tmp_path):
    case = kernel_case(KERNELS["proj"])
    kit = FirmwareKit(get_board("cortex-m55"), case, tmp_path)
    counts = [measure_module(kit, sch.mod) for sch in _design_spaces(case)]
    assert all(count > 0 for count in counts)
