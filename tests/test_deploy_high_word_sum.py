"""HighWordSum: int32((int64(x) * m + int64(y) * m) >> 32) -> iseg_mulhi_sum and int32((int64(x) * m) >> 32) ->
iseg_mulhi (Before/Expected), equal to the int64 expressions on the host build, SMULL (+ SMLAL) on Arm. The boards' bit-exact tests cover the Arm values."""
import subprocess

import numpy as np
import tvm
from tvm.script import tirx as T

from deploy.emit_c import clean_kernel_source
from deploy.high_word_sum import HighWordSum
from deploy.project import board_cflags
from deploy.tir_pipeline import kernels_to_c
from targets import get_board
from tests.test_deploy_tir_pipeline import build_and_run

N = 6
MULTIPLIER = 1570730897


@T.prim_func
def before(X: T.Buffer((N,), "int32"), Y: T.Buffer((N,), "int32"), M: T.Buffer((N,), "int32"),
           A: T.Buffer((N,), "int32"), B: T.Buffer((N,), "int32"), C: T.Buffer((N,), "int32"),
           D: T.Buffer((N,), "int32"), R: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "products"})
    for i in range(N):
        A[i] = T.Cast("int32", (T.Cast("int64", X[i]) * T.int64(MULTIPLIER)
                                + T.Cast("int64", Y[i]) * T.int64(MULTIPLIER)) >> T.int64(32))
        B[i] = T.Cast("int32", (T.Cast("int64", X[i]) * T.Cast("int64", M[i])
                                + T.Cast("int64", Y[i]) * T.Cast("int64", M[i])) >> T.int64(32))
        C[i] = T.Cast("int32", (T.Cast("int64", X[i]) * T.int64(3) + T.Cast("int64", Y[i]) * T.int64(5)) >> T.int64(32))
        D[i] = T.Cast("int32", (T.Cast("int64", T.shift_left(Y[i] // 2, 1)) * T.int64(MULTIPLIER)) >> T.int64(32))
        R[i] = T.Cast("int32", (T.Cast("int64", X[i]) * T.int64(MULTIPLIER) + T.int64(1 << 31)) >> T.int64(32))


@T.prim_func
def expected(X: T.Buffer((N,), "int32"), Y: T.Buffer((N,), "int32"), M: T.Buffer((N,), "int32"),
             A: T.Buffer((N,), "int32"), B: T.Buffer((N,), "int32"), C: T.Buffer((N,), "int32"),
             D: T.Buffer((N,), "int32"), R: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "products"})
    for i in range(N):
        A[i] = T.call_pure_extern("int32", "iseg_mulhi_sum", X[i], Y[i], MULTIPLIER)
        B[i] = T.call_pure_extern("int32", "iseg_mulhi_sum", X[i], Y[i], M[i])
        C[i] = T.Cast("int32", (T.Cast("int64", X[i]) * T.int64(3) + T.Cast("int64", Y[i]) * T.int64(5)) >> T.int64(32))
        D[i] = T.call_pure_extern("int32", "iseg_mulhi", Y[i] // 2 * 2, MULTIPLIER)  # no C "<<" of a negative
        R[i] = T.call_pure_extern("int32", "iseg_mulhi_round", X[i], MULTIPLIER)


def test_structure():
    after = HighWordSum(tvm.IRModule({"products": before}))
    tvm.ir.assert_structural_equal(after["products"], expected)


X = [-2**31, 2**31 - 1, -1, 123456789, -987654321, 7]
Y = [-2**31, 2**31 - 1, 1, 2**31 - 1, -5, 0]
M = [2**31 - 1, 2**31 - 1, 1, 1 << 30, 1570730897, 3]
MAIN = f"""\
#include <stdio.h>
#include <stdint.h>
void products(int32_t* X, int32_t* Y, int32_t* M, int32_t* A, int32_t* B, int32_t* C, int32_t* D, int32_t* R);
int main(void) {{
  int32_t x[6] = {{(int32_t)INT32_MIN, {", ".join(map(str, X[1:]))}}};
  int32_t y[6] = {{(int32_t)INT32_MIN, {", ".join(map(str, Y[1:]))}}};
  int32_t m[6] = {{{", ".join(map(str, M))}}};
  int32_t a[6], b[6], c[6], d[6], r[6];
  products(x, y, m, a, b, c, d, r);
  for (int i = 0; i < 6; i++) printf("%d %d %d %d %d\\n", a[i], b[i], c[i], d[i], r[i]);
  return 0;
}}
"""


def test_host_build_equals_the_int64_expression(tmp_path):
    source = clean_kernel_source(kernels_to_c(tvm.IRModule({"products": before})))
    assert "iseg_mulhi_sum(" in source and "int32_t iseg_mulhi_sum(int32_t, int32_t, int32_t);" not in source
    assert "iseg_mulhi(" in source and "iseg_mulhi_round(" in source
    printed = np.array(build_and_run(tmp_path, {"kernel.c": source, "main.c": MAIN}).split(), int).reshape(N, 5)
    x, y, m = (np.array(v, dtype=object) for v in (X, Y, M))
    np.testing.assert_array_equal(printed[:, 0], list((x * MULTIPLIER + y * MULTIPLIER) >> 32))
    np.testing.assert_array_equal(printed[:, 1], list((x * m + y * m) >> 32))
    np.testing.assert_array_equal(printed[:, 2], list((x * 3 + y * 5) >> 32))
    np.testing.assert_array_equal(printed[:, 3], list((y // 2 * 2 * MULTIPLIER) >> 32))
    np.testing.assert_array_equal(printed[:, 4], list((x * MULTIPLIER + 2**31) >> 32))


def test_arm_build_uses_smull_smlal_and_smmulr(tmp_path):
    board = get_board("cortex-m55")
    (tmp_path / "kernel.c").write_text(clean_kernel_source(kernels_to_c(tvm.IRModule({"products": before}))))
    subprocess.run([board.cc, *board_cflags(board), "-c", str(tmp_path / "kernel.c"), "-o", str(tmp_path / "kernel.o")],
                   check=True, cwd=tmp_path)
    disassembly = subprocess.run([f"{board.tool_prefix}objdump", "-d", str(tmp_path / "kernel.o")], capture_output=True,
                                 text=True, check=True).stdout
    mnemonics = [line.split("\t")[2].split()[0] for line in disassembly.splitlines() if line.count("\t") >= 2]
    assert mnemonics.count("smlal") >= 2 and "smmul" in mnemonics and "smmulr" in mnemonics
