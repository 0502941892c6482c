"""The generated C built for the host under ASan + UBSan: clean and equal to the TVM host build on real
inputs; and the harness does report a planted out-of-bounds write (so a clean result means something)."""
import numpy as np

from deploy.emit_c import emit_sources
from deploy.examples import toy_segmenter
from deploy.host import sanitized_outputs, tvm_host_outputs
from deploy.lower import lower_to_static_program
from deploy.memory_plan import plan_arena
from deploy.schedule import apply_default_schedules

IMAGES = [np.random.default_rng(seed).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8) for seed in (5, 6)]


def write_sources(directory, sources):
    directory.mkdir()
    for name, text in sources.items():
        (directory / name).write_text(text)


def test_generated_c_is_sanitizer_clean_and_bit_exact(tmp_path):
    mod = toy_segmenter()
    program = lower_to_static_program(mod)
    program.kernels = apply_default_schedules(program.kernels)
    write_sources(tmp_path / "src", emit_sources(program, plan_arena(program)))
    outputs, reports = sanitized_outputs(tmp_path / "src", IMAGES, "uint8", (1, 16, 16))
    assert reports == []
    for output, reference in zip(outputs, tvm_host_outputs(mod, IMAGES)):
        np.testing.assert_array_equal(output, reference)


def test_sanitizers_report_an_out_of_bounds_write(tmp_path):
    sources = {
        "isegmenter.h": "#include <stdint.h>\n#define ISEGMENTER_INPUT_SIZE 4\n#define ISEGMENTER_OUTPUT_SIZE 4\n"
                        "int isegmenter_run(const uint8_t *image, uint8_t *class_map);\n",
        "isegmenter.c": '#include "isegmenter.h"\nstatic uint8_t arena[4];\n'
                        "int isegmenter_run(const uint8_t *image, uint8_t *class_map)\n"
                        "{ uint8_t *p = arena; for (int i = 0; i <= 4; i++) { p[i] = image[i % 4]; }\n"
                        "  class_map[0] = arena[0]; return 0; }\n",
        "isegmenter_kernels.c": "typedef int empty_translation_unit;\n",
    }
    write_sources(tmp_path / "src", sources)
    _, reports = sanitized_outputs(tmp_path / "src", [np.zeros(4, np.uint8)], "uint8", (4,))
    assert reports and "isegmenter.c:4" in reports[0], "the report must point at the planted write"
