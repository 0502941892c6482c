"""End to end on every board: toy integer network -> C -> ELF -> QEMU, bit-exact against the TVM llvm
host build and the numpy reference, float-free proofs, memory plan and measurements present."""
import numpy as np
import pytest

from deploy.examples import toy_segmenter, toy_segmenter_reference
from deploy.flow import deploy_module
from targets import BOARDS

IMAGES = [np.random.default_rng(seed).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8) for seed in (3, 4)]


def test_toy_reference_is_not_trivial():
    classes = np.concatenate([toy_segmenter_reference(image).ravel() for image in IMAGES])
    assert len(np.unique(classes)) == 4, "every class must occur, or bit-exactness proves little"


@pytest.mark.parametrize("name", [name for name, board in BOARDS.items() if not board.fpu])
def test_toy_network_bit_exact_and_float_free(tmp_path, name):
    result = deploy_module(toy_segmenter(), name, IMAGES, tmp_path / name, numpy_reference=toy_segmenter_reference)
    report = result.report
    assert report["run"]["bit_exact"] and report["run"]["differing_elements"] == [0, 0]
    assert report["run_vs_numpy"]["bit_exact"]
    assert report["float_free"]["ok"], report["float_free"]
    assert report["memory_plan"]["arena_bytes"] <= 1.05 * report["memory_plan"]["arena_lower_bound_bytes"]
    assert report["total_macs"] == 16 * 16 * 8 * 27 + 256 * 8 * 4
    instructions = report["instructions"]["per_kernel_per_image"]
    matmul = instructions["matmul"] + sum(n for k, n in instructions.items() if k.startswith("iseg_gemm_"))
    macs_per_instruction_limit = 16 if BOARDS[name].mve else 1  # MVE: tensorized, VMLADAVA.S8 does 16 MACs
    assert matmul * macs_per_instruction_limit > 256 * 8 * 4, "no more MACs per instruction than the ISA allows"
    assert report["size"]["flash_bytes"] < BOARDS[name].flash.size
    assert report["stack_bytes_max_function"] < 1024, "kernels must not keep big stack arrays"
    for path in ["src/isegmenter.h", "Makefile", "linker.ld", "metadata.json", "report.md",
                 "zephyr/CMakeLists.txt", "zephyr/prj.conf", "zephyr/src/main.c", "firmware.elf"]:
        assert (result.directory / path).is_file(), path


def test_extern_sources_are_shipped_and_linked(tmp_path):
    import subprocess

    extra = {"iseg_extra.c": "#include <stdint.h>\nint32_t iseg_extra(int32_t x);\n"
                             "int32_t iseg_extra(int32_t x) { return x + 1; }\n"}
    result = deploy_module(toy_segmenter(), "cortex-m4", IMAGES[:1], tmp_path / "m4", run=False, extern_sources=extra)
    assert (result.directory / "src" / "iseg_extra.c").is_file()
    symbols = subprocess.run(["arm-none-eabi-nm", str(result.directory / "firmware.elf")], capture_output=True,
                             text=True, check=True).stdout
    assert " T iseg_extra" in symbols
    assert result.report["tuned_kernels"] == [] and result.report["tuning_log"] is None
