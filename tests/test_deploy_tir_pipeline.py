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


def build_and_run(tmp_path, sources: dict[str, str]) -> str:
    """Write ``sources`` (file name -> C text), build them with the host gcc (C99, warnings as errors), run, stdout."""
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
    exe = tmp_path / "program"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *(str(tmp_path / n) for n in sources),
                    "-o", str(exe)], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout


def test_kernel_c_is_plain_c99_and_numerically_right(tmp_path):
    source = clean_kernel_source(kernels_to_c(tvm.IRModule({"scale": before})))
    assert "void scale(int8_t* A, int32_t* B)" in source
    for forbidden in ("TVMFFI", "TVMBackend", "math.h", "tvm/", "TVM_DLL"):
        assert forbidden not in source
    printed = build_and_run(tmp_path, {
        "kernel.c": source,
        "main.c": "#include <stdio.h>\n#include <stdint.h>\nvoid scale(int8_t* A, int32_t* B);\n"
                  "int main(void) { int8_t a[4] = {-128, -1, 0, 127}; int32_t b[4];\n"
                  "  scale(a, b); printf(\"%d %d %d %d\\n\", b[0], b[1], b[2], b[3]); return 0; }\n",
    }).split()
    np.testing.assert_array_equal(np.array(printed, int), np.array([-128, -1, 0, 127]) * 3 - 1)


@T.prim_func
def calls_extern(A: T.Buffer((8,), "int8"), B: T.Buffer((8,), "int8"), C: T.Buffer((1,), "int32")):
    T.func_attr({"global_symbol": "dot"})
    C[0] = T.call_extern("int32", "my_dot_s8", A.access_ptr("r"), B.access_ptr("r"), 8, 0)


MY_DOT = ("#include <stdint.h>\nint32_t my_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc);\n"
          "int32_t my_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc)\n"
          "{\n    for (int32_t k = 0; k < n; k++) {\n        acc += a[k] * b[k];\n    }\n    return acc;\n}\n")


def test_extern_micro_kernel_call_links_with_its_source(tmp_path):
    source = clean_kernel_source(kernels_to_c(tvm.IRModule({"dot": calls_extern})))
    assert "my_dot_s8((&(A[0])), (&(B[0])), 8, 0)" in source
    printed = build_and_run(tmp_path, {
        "kernel.c": source,
        "my_dot.c": MY_DOT,
        "main.c": "#include <stdio.h>\n#include <stdint.h>\nvoid dot(int8_t* A, int8_t* B, int32_t* C);\n"
                  "int main(void) { int8_t a[8] = {1, 2, 3, 4, 5, 6, 7, -8}, b[8] = {1, 1, 1, 1, 1, 1, 1, 1};\n"
                  "  int32_t c; dot(a, b, &c); printf(\"%d\\n\", c); return 0; }\n",
    })
    assert printed.strip() == "20"
