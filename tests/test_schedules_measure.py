"""schedules.kernels references and the QEMU builder/runner: exact, repeatable instruction counts for right
kernels, error results (never a cost) for wrong or unbuildable ones."""
import numpy as np
import pytest
import tvm
import tvm.script
from tvm.s_tir import meta_schedule as ms

from deploy.schedule import apply_default_schedules
from schedules.kernels import KERNELS, RATIO, kernel_case, random_case
from schedules.measure import (FirmwareKit, QemuBuilder, QemuRunner, candidate_c_source, measure_module,
                               reference_check)
from targets import get_board

DSP_MACS_PER_INSTRUCTION = 2  # SMLAD: the most int8 MACs one scalar/DSP instruction can do


@pytest.fixture(scope="module")
def proj():
    return kernel_case(KERNELS["proj"])


@pytest.fixture(scope="module")
def kit(proj, tmp_path_factory):
    return FirmwareKit(get_board("cortex-m55"), proj, tmp_path_factory.mktemp("kit"))


@pytest.mark.parametrize("name", list(KERNELS))
def test_numpy_reference_equals_unscheduled_llvm_build(name):
    reference_check(kernel_case(KERNELS[name]))


def test_reference_is_not_trivial(proj):
    """The reference output uses the int8 range (a kernel writing zeros or saturating everything fails)."""
    assert len(np.unique(proj.expected)) > 200
    assert np.mean((proj.expected == 127) | (proj.expected == -128)) < 0.1


def _with_multiplier(mod: tvm.IRModule, new: int) -> tvm.IRModule:
    """A wrong kernel: the requantize multiplier replaced by ``new`` (every output changes)."""
    text, old = mod.script(), f"T.int64({int(RATIO.multiplier)})"
    assert old in text
    return tvm.script.from_source(text.replace(old, f"T.int64({new})"))


def test_default_schedule_is_measured_exactly_and_repeatably(proj, kit):
    scheduled = apply_default_schedules(proj.mod)
    first, second = measure_module(kit, scheduled), measure_module(kit, scheduled)
    assert first == second
    assert first >= proj.macs / DSP_MACS_PER_INSTRUCTION


def test_builder_runner_give_costs_only_to_bit_exact_candidates(proj, kit):
    good = apply_default_schedules(proj.mod)
    wrong = _with_multiplier(good, int(RATIO.multiplier) // 3)
    target = tvm.target.Target({"kind": "c", "mcpu": "cortex-m55"})
    builder, runner = QemuBuilder(kit), QemuRunner(kit)
    built = builder.build([ms.builder.BuilderInput(m, target) for m in (good, wrong)])
    assert [b.error_msg for b in built] == [None, None]
    futures = runner.run([ms.runner.RunnerInput(b.artifact_path, "cpu", []) for b in built])
    good_result, wrong_result = (f.result() for f in futures)
    assert good_result.error_msg is None
    assert int(good_result.run_secs[0].value) == measure_module(kit, good)
    assert wrong_result.run_secs is None and "not bit-exact" in wrong_result.error_msg


def test_unscheduled_kernel_with_big_stack_arrays_is_an_error_not_a_cost(proj, kit):
    """Without a schedule the matmul keeps a 64 KiB int32 intermediate on the stack: the builder refuses it (deploy
    would drop such a schedule), and the firmware would not run anyway (over the 64 KiB stack)."""
    target = tvm.target.Target({"kind": "c", "mcpu": "cortex-m55"})
    built, = QemuBuilder(kit).build([ms.builder.BuilderInput(proj.mod, target)])
    assert built.artifact_path is None and "B of arrays on the stack (> 32768 B)" in built.error_msg
    elf = kit.link(_write(kit, candidate_c_source(proj.mod, "cortex-m55", kit.headers)))
    result, = (f.result() for f in QemuRunner(kit).run([ms.runner.RunnerInput(str(elf), "cpu", [])]))
    assert result.run_secs is None and result.error_msg


def _write(kit, source: str):
    directory = kit.directory / "big_stack"
    directory.mkdir(exist_ok=True)
    (directory / "kernel.c").write_text(source)
    return directory / "kernel.c"


def test_random_case_of_a_network_kernel_is_bit_exact_on_the_board(proj, tmp_path):
    """Kernels of a lowered network get random inputs and the unscheduled llvm build as reference."""
    constants = {i: a for i, a in enumerate(proj.arguments) if i > 0}  # weights, bias, requantize shift
    case = random_case("net_kernel", proj.mod["proj"], proj.macs, seed=3, given=constants)
    assert case.expected.shape == proj.expected.shape and len(set(case.expected.ravel().tolist())) > 200
    kit = FirmwareKit(get_board("cortex-m55"), case, tmp_path)
    assert measure_module(kit, apply_default_schedules(case.mod)) >= proj.macs / DSP_MACS_PER_INSTRUCTION
