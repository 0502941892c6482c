"""Host-side references for the deployed C: the TVM llvm build of the same integer module, and the
generated C itself built for the host under AddressSanitizer + UndefinedBehaviorSanitizer."""
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from deploy.emit_c import c_type

SANITIZER_FLAGS = ("-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror")

_HOST_MAIN = """\
#include <stdio.h>
#include "isegmenter.h"
static {in_type} image[ISEGMENTER_INPUT_SIZE];
static {out_type} class_map[ISEGMENTER_OUTPUT_SIZE];
int main(void)
{{
    if (fread(image, sizeof(image), 1, stdin) != 1) {{
        return 2;
    }}
    isegmenter_run(image, class_map);
    return fwrite(class_map, sizeof(class_map), 1, stdout) == 1 ? 0 : 3;
}}
"""


def tvm_host_outputs(mod: tvm.IRModule, images: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``mod`` built with ``tvm.compile(mod, "llvm")`` and run in the Relax VM."""
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return [vm["main"](tvm.runtime.tensor(image)).numpy() for image in images]


def sanitized_outputs(source_dir: Path, images: list[np.ndarray], output_dtype: str,
                      output_shape: tuple[int, ...]) -> tuple[list[np.ndarray], list[str]]:
    """Build ``source_dir``'s C with ASan+UBSan for the host, run it on each image.

    Returns the outputs and the sanitizer reports (empty when clean)."""
    with tempfile.TemporaryDirectory() as tmp:
        main = Path(tmp) / "host_main.c"
        main.write_text(_HOST_MAIN.format(in_type=c_type(str(images[0].dtype)), out_type=c_type(output_dtype)))
        exe = Path(tmp) / "isegmenter_host"
        sources = [*map(str, sorted(source_dir.glob("*.c"))), str(main)]
        subprocess.run(["gcc", *SANITIZER_FLAGS, f"-I{source_dir}", *sources, "-o", str(exe)], check=True,
                       capture_output=True, text=True)
        outputs, reports = [], []
        for image in images:
            result = subprocess.run([str(exe)], input=np.ascontiguousarray(image).tobytes(), capture_output=True,
                                    env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
            if result.returncode != 0 or result.stderr:
                reports.append(result.stderr.decode(errors="replace") or f"exit code {result.returncode}")
            raw = np.frombuffer(result.stdout, dtype=output_dtype)
            outputs.append(raw.reshape(output_shape) if raw.size == np.prod(output_shape) else None)
        return outputs, reports
