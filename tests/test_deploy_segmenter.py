"""The shipped Segmenter, integerized by relax_passes, on the boards in QEMU.

- Its C is generated once and runs on every scalar board on three committed images: bit-identical to the
  TVM llvm host build and to the passes' numpy reference, float-free, arena at the lower bound.
- With the committed cortex-m55 tuning log: tuned kernels listed, still bit-exact.
- On cortex-m55-mve: the int8 matmuls tensorized with the MVE micro-kernel, bit-exact, fewer instructions,
  the proofs pass (MVE integer only).
"""
import hashlib

import pytest

from common.paths import IMAGES_DIR
from deploy.build import default_model
from deploy import proofs
from deploy.flow import deploy_module, deploy_to_boards, float_model, integer_module, load_image
from deploy.tuning import COMMITTED_LOGS, committed_log
from schedules.tuning_log import read_metadata
from targets import BOARDS

SCALAR_BOARDS = [name for name, board in BOARDS.items() if not (board.mve or board.fpu)]
IMAGES = ["test_001.png", "test_002.png", "test_003.png"]


@pytest.fixture(scope="module")
def quantized():
    return integer_module(default_model(), IMAGES_DIR / "test_000.png")


@pytest.fixture(scope="module")
def images(quantized):
    return [load_image(IMAGES_DIR / name, tuple(quantized.input_shape)) for name in IMAGES]


def test_generated_once_bit_exact_on_every_board(quantized, images, tmp_path):
    results = deploy_to_boards(quantized.mod, SCALAR_BOARDS, images, tmp_path, numpy_reference=quantized.reference,
                               model_name="segmenter")
    assert sorted(results) == sorted(SCALAR_BOARDS) and len(SCALAR_BOARDS) == 5
    sources = {(r.directory / "src" / "isegmenter_kernels.c").read_text() for r in results.values()}
    assert len(sources) == 1, "every board builds the same generated C"
    for name, result in results.items():
        report = result.report
        assert report["run"]["bit_exact"] and report["run"]["images"] == 3, (name, report["run"])
        assert report["run_vs_numpy"]["bit_exact"], (name, report["run_vs_numpy"])
        assert report["float_free"]["ok"], (name, report["float_free"])
        assert report["memory_plan"]["arena_ratio"] <= 1.05
        assert report["stack_bytes_max_function"] < 4096
        assert report["total_macs"] > 10_000_000
        assert report["instructions"]["network_per_image"] > report["total_macs"] / 2


def test_committed_lookup_prefers_the_model_log_with_its_file_hash(tmp_path):
    model = tmp_path / "net.onnx"
    model.write_bytes(b"not really a model")
    (tmp_path / "logs" / "net" / "cortex-m4").mkdir(parents=True)
    (tmp_path / "logs" / "segmenter-kernels" / "riscv32").mkdir(parents=True)
    own = committed_log(model, "cortex-m4", tmp_path / "logs")
    assert own.log_dir == tmp_path / "logs" / "net" / "cortex-m4" and own.source == "committed"
    assert own.model_hash == hashlib.sha256(b"not really a model").hexdigest()
    fallback = committed_log(model, "riscv32", tmp_path / "logs")
    assert fallback.log_dir == tmp_path / "logs" / "segmenter-kernels" / "riscv32"
    assert fallback.model_hash == read_metadata(COMMITTED_LOGS / "segmenter-kernels" / "cortex-m55")["model_hash"]
    assert committed_log(model, "cortex-m7", tmp_path / "logs").log_dir is None
    assert committed_log(None, "cortex-m4", tmp_path / "logs").log_dir is None


def test_committed_m55_log_tunes_kernels_and_stays_bit_exact(quantized, images, tmp_path):
    log = COMMITTED_LOGS / default_model().stem / "cortex-m55"
    report = deploy_module(quantized.mod, "cortex-m55", images[:1], tmp_path / "m55", tuning_log=log,
                           numpy_reference=quantized.reference, model_name="segmenter").report
    # The log applies; a tuned schedule that caches a whole output tile on the stack is dropped (and said so).
    assert all("on the stack" in w for w in report["tuning_warnings"]), report["tuning_warnings"]
    assert len(report["tuned_kernels"]) >= 10 and report["stack_bytes_max_function"] < BOARDS["cortex-m55"].stack_size
    assert report["tuning_log"] == str(log)
    assert report["run"]["bit_exact"] and report["run_vs_numpy"]["bit_exact"]
    assert report["float_free"]["ok"]
    assert "| yes |" in (tmp_path / "m55" / "report.md").read_text()


def test_mve_board_tensorizes_matmuls_bit_exact(quantized, images, tmp_path):
    report = deploy_module(quantized.mod, "cortex-m55-mve", images[:1], tmp_path / "mve",
                           numpy_reference=quantized.reference, model_name="segmenter").report
    assert len(report["tensorized_kernels"]) >= 10
    assert report["run"]["bit_exact"] and report["run_vs_numpy"]["bit_exact"]
    assert report["float_free"]["ok"], report["float_free"]
    per_kernel = report["instructions"]["per_kernel_per_image"]
    assert not any(name.startswith("iseg_gemm") for name in per_kernel), "micro-kernels inlined into the kernels"
    assert all(per_kernel[name] > 0 for name in report["tensorized_kernels"])
    disassembly = proofs._tool(BOARDS["cortex-m55-mve"], "objdump", "-d", "-marmv8.1-m.main",
                               str(tmp_path / "mve" / "firmware.elf"))
    assert "vmlava.s8" in disassembly


def test_fp32_build_on_the_fpu_board_matches_the_tvm_float_build(tmp_path):
    model = float_model(default_model())
    images = model.inputs([load_image(IMAGES_DIR / "test_001.png", model.image_shape)])
    result = deploy_module(model.mod, "cortex-m55-fp", images, tmp_path / "fp", precision="fp32", model_name="fp32")
    run = result.report["run"]
    assert run["argmax_identical"] and run["within_tolerance"], run
    assert result.report["float_free"]["ok"] is None and "fp32" in result.report["float_free"]["not_applied"]
    board = BOARDS["cortex-m55-fp"]
    assert not proofs.fp_instructions(board, result.directory / "firmware.elf")["ok"], "uses the hardware FPU"
