"""Bare-metal TIR pipeline: RawPointerParams (Before/Expected) and the C it produces (no TVM runtime,
raw pointers, compiles with -Werror, computes what numpy computes)."""
import subprocess

import numpy as np
import tvm
from tvm.script import tirx as T

from deploy.emit_c import clean_kernel_source
from deploy.tir_pipeline import RawPointerParams, kernels_to_c


@T.prim_func
def before(A: T.Buffer((4,), "int8"), B: T.Buffer((4,), "int32")):
    T.func_attr({"global_symbol": "scale"})
    for i in range(4):
        B[i] = T.Cast("int32", A[i]) * 3 - 1


@T.prim_func
def expected(a: T.handle("int8"), b: T.handle("int32")):
    T.func_attr({"global_symbol": "scale"})
    A = T.decl_buffer((4,), "int8", data=a)
    B = T.decl_buffer((4,), "int32", data=b)
    for i in range(4):
        B[i] = T.Cast("int32", A[i]) * 3 - 1


def test_raw_pointer_params_structure():
    after = RawPointerParams(tvm.IRModule({"scale": before}))
    tvm.ir.assert_structural_equal(after["scale"], expected)


def test_kernel_c_is_plain_c99_and_numerically_right(tmp_path):
    source = clean_kernel_source(kernels_to_c(tvm.IRModule({"scale": before})))
    assert "void scale(int8_t* A, int32_t* B)" in source
    for forbidden in ("TVMFFI", "TVMBackend", "math.h", "tvm/", "TVM_DLL"):
        assert forbidden not in source
    (tmp_path / "kernel.c").write_text(source)
    (tmp_path / "main.c").write_text(
        "#include <stdio.h>\n#include <stdint.h>\nvoid scale(int8_t* A, int32_t* B);\n"
        "int main(void) { int8_t a[4] = {-128, -1, 0, 127}; int32_t b[4];\n"
        "  scale(a, b); printf(\"%d %d %d %d\\n\", b[0], b[1], b[2], b[3]); return 0; }\n")
    exe = tmp_path / "scale"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", str(tmp_path / "kernel.c"),
                    str(tmp_path / "main.c"), "-o", str(exe)], check=True)
    printed = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    np.testing.assert_array_equal(np.array(printed, int), np.array([-128, -1, 0, 127]) * 3 - 1)
