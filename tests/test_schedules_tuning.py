"""Tuning end to end on a small kernel (few trials): the log, resuming it, applying it (the applied schedule
reproduces the recorded instruction count, bit-exact), and every way a log can be wrong for this build."""
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tvm
import tvm_ffi

from deploy.examples import toy_segmenter, toy_segmenter_reference
from deploy.lower import lower_to_static_program
from deploy.tir_pipeline import kernels_to_c
from schedules import TuningLogWarning, apply_tuning_log
from schedules.kernels import KERNELS, kernel_case
from schedules.measure import FirmwareKit, measure_module
from schedules.tensorize import microkernel_sources
from schedules.tune import BUILTIN_MODEL, COMMITTED_LOGS, first_call_arguments, markdown_table, tune
from schedules.tuning_log import METADATA_FILE, RECORD_FILE, WORKLOAD_FILE, measured_trials, open_database
from targets import get_board

TRIALS = 6
TARGET = "cortex-m55"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("log")
    results, _ = tune(BUILTIN_MODEL, TARGET, TRIALS, log_dir, kernels=["proj"],
                      scratch=tmp_path_factory.mktemp("scratch"))
    return log_dir, results[0]


@pytest.fixture(scope="module")
def proj():
    return kernel_case(KERNELS["proj"])


def _copy(log_dir, tmp_path):
    shutil.copytree(log_dir, tmp_path / "log")
    return tmp_path / "log"


def test_log_files_and_metadata(tuned):
    log_dir, result = tuned
    assert {WORKLOAD_FILE, RECORD_FILE, METADATA_FILE} <= {p.name for p in log_dir.iterdir()}
    metadata = json.loads((log_dir / METADATA_FILE).read_text())
    assert metadata["target"] == TARGET and metadata["tvm_version"] == tvm.__version__
    assert set(metadata["kernels"]) == set(KERNELS) and "instructions" in metadata["cost_unit"]  # the whole model
    assert result.trials == TRIALS
    records = [json.loads(line) for line in (log_dir / RECORD_FILE).read_text().splitlines()]
    costs = [r[1][1][0] for r in records if r[1][1] and r[1][1][0] < 1e9]
    assert result.tuned_instructions == min(costs)
    assert "| proj |" in markdown_table([result])


def test_resume_measures_nothing_when_the_log_has_enough_trials(tuned, tmp_path):
    log_dir, result = tuned
    again, _ = tune(BUILTIN_MODEL, TARGET, TRIALS, log_dir, kernels=["proj"], scratch=tmp_path)
    assert again[0].trials == TRIALS and again[0].tuned_instructions == result.tuned_instructions


def test_tuning_another_kernel_into_the_log_keeps_the_first(tuned, tmp_path):
    log_dir = _copy(tuned[0], tmp_path)  # a fresh process: no tensor intrinsic registered before the log loads
    subprocess.run([sys.executable, "-m", "schedules.tune", "--kernel", "mlp_down", "--trials", "2", "--log-dir",
                    str(log_dir)], check=True, capture_output=True)
    cases = [kernel_case(KERNELS[name]) for name in ("proj", "mlp_down")]
    both = tvm.IRModule({gv: f for c in cases for gv, f in c.mod.functions.items()})
    _, names = apply_tuning_log(both, TARGET, log_dir)
    assert sorted(names) == ["mlp_down", "proj"]


def test_applied_log_reproduces_the_recorded_instructions_bit_exactly(tuned, proj, tmp_path):
    log_dir, result = tuned
    applied, names = apply_tuning_log(proj.mod, TARGET, log_dir)
    assert names == ["proj"]
    assert not tvm_ffi.structural_equal(applied["proj"], proj.mod["proj"])
    assert "iseg_gemm_s16_s16_" in kernels_to_c(applied, "cortex-m55")  # the best: a widened tensorized design
    kit = FirmwareKit(get_board(TARGET), proj, tmp_path, microkernel_sources())
    assert measure_module(kit, applied) == result.tuned_instructions  # exact and bit-exact (harness checks)


def _apply_warns(kernels, target, log_dir, match, **kwargs):
    with pytest.warns(TuningLogWarning, match=match):
        return apply_tuning_log(kernels, target, log_dir, **kwargs)


@pytest.mark.parametrize("field,value,match", [
    ("target", "cortex-m4", "tuned for target 'cortex-m4'"),
    ("tvm_version", "0.26.0", "tuned with TVM 0.26.0"),
])
def test_log_for_another_target_or_tvm_is_not_applied(tuned, proj, tmp_path, field, value, match):
    log_dir = _copy(tuned[0], tmp_path)
    metadata = json.loads((log_dir / METADATA_FILE).read_text())
    metadata[field] = value
    (log_dir / METADATA_FILE).write_text(json.dumps(metadata))
    assert _apply_warns(proj.mod, TARGET, log_dir, match) == (proj.mod, [])


def test_log_applied_to_another_board_is_not_applied(tuned, proj):
    assert _apply_warns(proj.mod, "cortex-m7", tuned[0], "tuned for target 'cortex-m55'") == (proj.mod, [])


def test_log_of_another_model_is_not_applied(tuned, proj):
    assert _apply_warns(proj.mod, TARGET, tuned[0], "another model", model_hash="0" * 64) == (proj.mod, [])


@pytest.mark.parametrize("damage", ["no metadata", "metadata not json", "no database"])
def test_missing_or_unreadable_files_are_not_applied(tuned, proj, tmp_path, damage):
    log_dir = _copy(tuned[0], tmp_path)
    if damage == "no metadata":
        (log_dir / METADATA_FILE).unlink()
    elif damage == "metadata not json":
        (log_dir / METADATA_FILE).write_text("{ half")
    else:
        (log_dir / RECORD_FILE).unlink()
    match = "database files are missing" if damage == "no database" else "no readable metadata.json"
    assert _apply_warns(proj.mod, TARGET, log_dir, match) == (proj.mod, [])


def test_corrupt_lines_are_skipped_and_the_good_records_still_apply(tuned, proj, tmp_path):
    log_dir = _copy(tuned[0], tmp_path)
    with open(log_dir / RECORD_FILE, "a") as records:
        records.write('[0, {"truncated": \n')
        records.write("[7, []]\n")
    with open(log_dir / WORKLOAD_FILE, "a") as workloads:
        workloads.write('["123", "not base64 json"]\n')
    applied, names = _apply_warns(proj.mod, TARGET, log_dir, "skipped")
    assert names == ["proj"]
    kit = FirmwareKit(get_board(TARGET), proj, tmp_path / "kit", microkernel_sources())
    assert measure_module(kit, applied) == tuned[1].tuned_instructions


def test_kernels_the_log_does_not_know_stay_untouched(tuned, proj):
    qkv = kernel_case(KERNELS["qkv"])
    both = tvm.IRModule({**dict(proj.mod.functions.items()), **dict(qkv.mod.functions.items())})
    applied, names = apply_tuning_log(both, TARGET, tuned[0])
    assert names == ["proj"]
    assert applied["qkv"].script() == qkv.mod["qkv"].script()


def test_trials_already_in_the_log_are_counted(tuned, proj):
    database = open_database(tuned[0])
    assert measured_trials(database, proj.mod["proj"]) == TRIALS


@pytest.mark.parametrize("log_dir", sorted((COMMITTED_LOGS / BUILTIN_MODEL).iterdir()), ids=lambda p: p.name)
def test_committed_log_applies_to_every_segmenter_kernel(log_dir):
    cases = [kernel_case(spec) for spec in KERNELS.values()]
    kernels = tvm.IRModule({gv: f for c in cases for gv, f in c.mod.functions.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningLogWarning)
        _, names = apply_tuning_log(kernels, log_dir.name, log_dir)
    assert sorted(names) == sorted(KERNELS)


@pytest.mark.parametrize("argv,message", [
    (["--trials", "0"], "--trials must be at least 1"),
    (["--kernel", "nope"], "unknown kernel(s) nope"),
    (["--model", "missing.onnx"], "model file missing.onnx not found"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path):
    from schedules.tune import main

    assert main([*argv, "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_log_applies_to_deploys_kernel_names(tuned):
    """deploy names its kernels fused_matmul_...: records are found by structure, the name is kept."""
    from deploy.lower import lower_to_static_program
    from relax_passes.requantize import emit_requantize
    from schedules.kernels import RATIO, operands
    from tvm import relax

    inputs, weight, bias = operands(KERNELS["proj"])
    bb = relax.BlockBuilder()
    x = relax.Var("image", relax.TensorType(list(inputs[0].shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            acc = bb.emit(relax.op.add(bb.emit(relax.op.matmul(x, relax.const(weight), out_dtype="int32")),
                                       relax.const(bias)))
            out = bb.emit_output(emit_requantize(bb, acc, RATIO, "int8"))
        bb.emit_func_output(out)
    kernels = lower_to_static_program(bb.get()).kernels
    (name,) = [gv.name_hint for gv in kernels.get_global_vars()]
    applied, names = apply_tuning_log(kernels, TARGET, tuned[0])
    assert names == [name] and name.startswith("fused_matmul")
    assert applied[name].attrs["global_symbol"] == name


def test_first_call_arguments_replay_the_network_on_the_host():
    """The captured inputs of the network's last kernel reproduce the numpy reference's class map."""
    program = lower_to_static_program(toy_segmenter())
    image = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    last = program.calls[-1]
    arguments = first_call_arguments(program, image, {last.kernel})[last.kernel]
    func = program.kernels[last.kernel]
    out = tvm.runtime.tensor(np.zeros([int(d) for d in func.params[-1].shape], str(func.params[-1].dtype)))
    tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), "llvm")["main"](
        *[tvm.runtime.tensor(a) for a in arguments], out)
    np.testing.assert_array_equal(out.numpy().reshape(1, 16, 16), toy_segmenter_reference(image))
