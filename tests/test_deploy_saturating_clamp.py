"""SaturatingClamp: n-bit clamps -> ISEG_SSAT/ISEG_USAT (Before/Expected), the macros equal the clamp on the host
(fallback) build, and the Arm build turns them into SSAT/USAT. The boards' bit-exact tests cover the Arm values."""
import subprocess

import numpy as np
import tvm
from tvm.script import tirx as T

from deploy.emit_c import clean_kernel_source
from deploy.project import board_cflags
from deploy.saturating_clamp import SaturatingClamp
from deploy.tir_pipeline import kernels_to_c
from targets import get_board
from tests.test_deploy_tir_pipeline import build_and_run

N = 8


@T.prim_func
def before(A: T.Buffer((N,), "int32"), B: T.Buffer((N,), "int8"), C: T.Buffer((N,), "uint8"),
           D: T.Buffer((N,), "int16"), E: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "clamps"})
    for i in range(N):
        B[i] = T.Cast("int8", T.max(T.min(A[i], 127), -128))
        C[i] = T.Cast("uint8", T.min(T.max(A[i], 0), 255))
        D[i] = T.Cast("int16", T.max(T.min(A[i] >> 3, 32767), -32768))
        E[i] = T.max(T.min(A[i], 100), -100)  # not an n-bit range: stays a clamp


@T.prim_func
def expected(A: T.Buffer((N,), "int32"), B: T.Buffer((N,), "int8"), C: T.Buffer((N,), "uint8"),
             D: T.Buffer((N,), "int16"), E: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "clamps"})
    for i in range(N):
        B[i] = T.Cast("int8", T.call_pure_extern("int32", "ISEG_SSAT", A[i], 8))
        C[i] = T.Cast("uint8", T.call_pure_extern("int32", "ISEG_USAT", A[i], 8))
        D[i] = T.Cast("int16", T.call_pure_extern("int32", "ISEG_SSAT", A[i] >> 3, 16))
        E[i] = T.max(T.min(A[i], 100), -100)


def test_structure():
    after = SaturatingClamp(tvm.IRModule({"clamps": before}))
    tvm.ir.assert_structural_equal(after["clamps"], expected)


@T.prim_func
def round_trips(A: T.Buffer((N,), "int32"), F: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "round_trips"})
    for i in range(N):
        F[i] = (T.Cast("int32", T.Cast("int16", T.max(T.min(A[i], 32767), -32768)))
                + T.Cast("int32", T.Cast("int8", T.max(T.min(A[i], 32767), -32768)))
                + T.Cast("int32", T.Cast("uint8", T.max(T.min(A[i], 255), 0))))


@T.prim_func
def round_trips_dropped(A: T.Buffer((N,), "int32"), F: T.Buffer((N,), "int32")):
    T.func_attr({"global_symbol": "round_trips"})
    for i in range(N):
        F[i] = (T.call_pure_extern("int32", "ISEG_SSAT", A[i], 16)
                + T.Cast("int32", T.Cast("int8", T.call_pure_extern("int32", "ISEG_SSAT", A[i], 16)))  # truncates
                + T.call_pure_extern("int32", "ISEG_USAT", A[i], 8))


def test_narrowing_round_trip_of_a_saturate_is_dropped_only_when_it_is_the_identity():
    after = SaturatingClamp(tvm.IRModule({"round_trips": round_trips}))
    tvm.ir.assert_structural_equal(after["round_trips"], round_trips_dropped)


MAIN = """\
#include <stdio.h>
#include <stdint.h>
void clamps(int32_t* A, int8_t* B, uint8_t* C, int16_t* D, int32_t* E);
int main(void) {
  int32_t a[8] = {INT32_MIN, -300000, -129, -128, 0, 127, 255, INT32_MAX};
  int8_t b[8]; uint8_t c[8]; int16_t d[8]; int32_t e[8];
  clamps(a, b, c, d, e);
  for (int i = 0; i < 8; i++) printf("%d %d %d %d\\n", b[i], c[i], d[i], e[i]);
  return 0;
}
"""


def test_host_fallback_equals_the_clamp(tmp_path):
    source = clean_kernel_source(kernels_to_c(tvm.IRModule({"clamps": before})))
    assert "ISEG_SSAT(" in source and "ISEG_USAT(" in source and "int32_t ISEG_SSAT(int32_t" not in source
    printed = np.array(build_and_run(tmp_path, {"kernel.c": source, "main.c": MAIN}).split(), int).reshape(N, 4)
    a = np.array([-2**31, -300000, -129, -128, 0, 127, 255, 2**31 - 1], np.int64)
    np.testing.assert_array_equal(printed[:, 0], np.clip(a, -128, 127))
    np.testing.assert_array_equal(printed[:, 1], np.clip(a, 0, 255))
    np.testing.assert_array_equal(printed[:, 2], np.clip(a >> 3, -32768, 32767))
    np.testing.assert_array_equal(printed[:, 3], np.clip(a, -100, 100))


def test_arm_build_uses_saturate_instructions(tmp_path):
    board = get_board("cortex-m55")
    (tmp_path / "kernel.c").write_text(clean_kernel_source(kernels_to_c(tvm.IRModule({"clamps": before}))))
    subprocess.run([board.cc, *board_cflags(board), "-c", str(tmp_path / "kernel.c"), "-o", str(tmp_path / "kernel.o")],
                   check=True, cwd=tmp_path)
    disassembly = subprocess.run([f"{board.tool_prefix}objdump", "-d", str(tmp_path / "kernel.o")],
                                 capture_output=True, text=True, check=True).stdout
    mnemonics = [line.split("\t")[2].split()[0] for line in disassembly.splitlines() if line.count("\t") >= 2]
    assert mnemonics.count("ssat") == 2 and mnemonics.count("usat") == 1
