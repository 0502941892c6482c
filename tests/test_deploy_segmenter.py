"""The shipped Segmenter, integerized by relax_passes, runs bit-exact on a board (RISC-V: the fastest
to emulate): equal to the TVM host build and to the passes' numpy reference, float-free, arena at
the lower bound, small stack frames."""
from common.paths import IMAGES_DIR, MODEL_DIR
from deploy.flow import deploy_module, integer_module, load_image


def test_segmenter_on_riscv32(tmp_path):
    quantized = integer_module(MODEL_DIR / "segmenter.onnx", IMAGES_DIR / "test_000.png")
    image = load_image(IMAGES_DIR / "test_001.png", tuple(quantized.input_shape))
    report = deploy_module(quantized.mod, "riscv32", [image], tmp_path / "rv32", numpy_reference=quantized.reference,
                           model_name="segmenter").report
    assert report["run"]["bit_exact"] and report["run_vs_numpy"]["bit_exact"]
    assert report["float_free"]["ok"], report["float_free"]
    assert report["memory_plan"]["arena_ratio"] <= 1.05
    assert report["stack_bytes_max_function"] < 4096
    assert report["total_macs"] > 10_000_000
