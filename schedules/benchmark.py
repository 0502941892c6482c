"""Benchmark (a script, not a test): instructions per call of the Segmenter's int8 kernels on the emulated
Cortex-M55, for each way ``schedules`` can build them, next to a kernel-level peer (CMSIS-DSP).

    python -m schedules.benchmark [--log-dir assets/tuning/segmenter-kernels]

Columns: deploy's default schedule; the best MetaSchedule record of the ``cortex-m55`` tuning log (scalar C or
the DSP build of the GEMM micro-kernels, ``SMLAD``, ISA limit 2 MACs/instruction) and of the
``cortex-m55-mve`` log (MVE build, ``VMLADAVA``, ISA limit 16 MACs/instruction); CMSIS-DSP ``arm_mat_mult_q7``
on the same shapes, board and flags (its generic C build and its MVE build). Every number comes from a
firmware whose output the harness checked against a numpy reference. CMSIS-DSP's q7 matmul saturates
``acc >> 7`` (Q7 format) instead of the project's dyadic requantize, so its epilogue is cheaper. Its sources
come from the ``cmsisdsp`` sdist on PyPI, downloaded into the cache on first use and never committed. Writes
``build/schedules_benchmark.{json,md}``.
"""
import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from common.paths import BUILD_DIR, CACHE_DIR
from deploy.schedule import apply_default_schedules
from schedules.kernels import KERNELS, KernelCase, kernel_case
from schedules.measure import KERNEL_SYMBOL, FirmwareKit, measure_module, measure_source
from schedules.tensorize import microkernel_sources
from schedules.tune import COMMITTED_LOGS, BUILTIN_MODEL
from schedules.tuning_log import apply_tuning_log
from targets import get_board

TARGET = "cortex-m55"
CMSIS_VERSION = "1.10.3"
CMSIS_SOURCES = ("Source/MatrixFunctions/arm_mat_mult_q7.c", "Source/MatrixFunctions/arm_mat_trans_q7.c")
ISA_LIMIT = {"dsp": 2, "mve": 16}
MATMULS = ("qkv", "proj", "mlp_up", "mlp_down", "attn_scores")

# CMSIS-DSP needs a few CMSIS-Core macros; CMSIS-Core is not on PyPI, so the benchmark defines them.
_CMSIS_COMPILER_H = """\
#include <arm_acle.h>
#define __STATIC_FORCEINLINE static inline __attribute__((always_inline))
#define __STATIC_INLINE static inline
#define __ALIGNED(x) __attribute__((aligned(x)))
#define __PACKED __attribute__((packed))
#define __SSAT(x, n) __ssat(x, n)
#define __USAT(x, n) __usat(x, n)
#define __CLZ __builtin_clz
"""
_CMSIS_WRAPPER = """\
#include "dsp/matrix_functions.h"
void {symbol}(int8_t* a, int8_t* b, int8_t* out);
static q7_t transposed[{k} * {n}];
void {symbol}(int8_t* a, int8_t* b, int8_t* out)
{{
    arm_matrix_instance_q7 ma = {{{m}, {k}, a}}, mb = {{{k}, {n}, b}}, mc = {{{m}, {n}, out}};
    arm_mat_mult_q7(&ma, &mb, &mc, transposed);
}}
"""


def cmsis_dsp_dir() -> Path:
    """The unpacked ``cmsisdsp`` sdist in the cache (``pip download`` on first use)."""
    root = CACHE_DIR / "cmsisdsp"
    source = root / f"cmsisdsp-{CMSIS_VERSION}"
    if not source.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([sys.executable, "-m", "pip", "download", f"cmsisdsp=={CMSIS_VERSION}", "--no-deps",
                                 "--no-binary", ":all:", "--no-build-isolation", "-d", str(root)],
                                capture_output=True, text=True)
        archive = root / f"cmsisdsp-{CMSIS_VERSION}.tar.gz"
        if result.returncode != 0 or not archive.is_file():
            raise UserError(f"downloading the cmsisdsp {CMSIS_VERSION} sdist from PyPI failed; check the network")
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        (source / "shim").mkdir(exist_ok=True)
        (source / "shim" / "cmsis_compiler.h").write_text(_CMSIS_COMPILER_H)
        (source / "shim" / "math.h").write_text("/* freestanding: CMSIS-DSP's q7 matmul needs no libm */\n")
    return source


def cmsis_q7_case(case: KernelCase) -> KernelCase:
    """The same operands through CMSIS-DSP's q7 semantics: ``ssat(acc >> 7, 8)``."""
    a, b = case.arguments[0], case.arguments[1]
    acc = a.astype(np.int32) @ b.astype(np.int32)
    expected = np.clip(acc >> 7, -128, 127).astype(np.int8)
    return KernelCase(f"cmsis_{case.name}", None, [a, b], expected, case.macs)


def measure_cmsis(case: KernelCase, board, mve: bool, directory: Path) -> int:
    source = cmsis_dsp_dir()
    q7 = cmsis_q7_case(case)
    m, k = case.arguments[0].shape
    n = case.arguments[1].shape[1]
    flags = ("-I", str(source / "Include"), "-I", str(source / "PrivateInclude"), "-I", str(source / "shim"),
             "-Wno-error", *(("-DARM_MATH_MVEI",) if mve else ()))
    kit = FirmwareKit(board, q7, directory, {Path(p).name: (source / p).read_text() for p in CMSIS_SOURCES},
                      extra_cflags=flags)
    return measure_source(kit, _CMSIS_WRAPPER.format(symbol=KERNEL_SYMBOL, m=m, k=k, n=n))


def benchmark(log_root: Path) -> list[dict]:
    board, mve = get_board(TARGET), get_board(f"{TARGET}-mve")
    rows = []
    with tempfile.TemporaryDirectory(prefix="schedules_benchmark_") as scratch, warnings.catch_warnings(record=True):
        scratch = Path(scratch)
        for name in tqdm(list(KERNELS), desc="benchmark", unit="kernel"):
            case = kernel_case(KERNELS[name])
            row = {"kernel": name, "macs": case.macs}
            default_kit = FirmwareKit(board, case, scratch / f"{name}_default")
            row["default"] = measure_module(default_kit, apply_default_schedules(case.mod))
            for column, target in (("tuned", board), ("tuned_mve", mve)):
                tuned, names = apply_tuning_log(case.mod, target.name, log_root / target.name)
                kit = FirmwareKit(target, case, scratch / f"{name}_{column}", microkernel_sources())
                row[column] = measure_module(kit, tuned) if names else None
            if name in MATMULS:
                row["cmsis_q7"] = measure_cmsis(case, board, False, scratch / f"{name}_cmsis")
                row["cmsis_q7_mve"] = measure_cmsis(case, mve, True, scratch / f"{name}_cmsis_mve")
                row["no_more_than_cmsis"] = {
                    "dsp": bool(row["tuned"]) and row["tuned"] <= row["cmsis_q7"],
                    "mve": bool(row["tuned_mve"]) and row["tuned_mve"] <= row["cmsis_q7_mve"]}
            rows.append(row)
    return rows


COLUMNS = ("default", "tuned", "tuned_mve", "cmsis_q7", "cmsis_q7_mve")


def markdown(rows: list[dict], log_root: Path) -> str:
    lines = [
        f"# Kernel benchmark on {TARGET} (QEMU mps3-an547, exact retired instructions per call, not cycles)", "",
        f"Tuning logs: `{log_root}/{{{TARGET},{TARGET}-mve}}`. ISA limits: DSP {ISA_LIMIT['dsp']} MACs/instr (SMLAD), "
        f"MVE {ISA_LIMIT['mve']} MACs/instr (VMLADAVA.S8). CMSIS-DSP {CMSIS_VERSION} `arm_mat_mult_q7` "
        "uses a cheaper Q7 epilogue (ssat(acc >> 7)).", "",
        "| kernel | MACs | " + " | ".join(COLUMNS) + " | tuned <= CMSIS (DSP, MVE) |",
        "|---|---:|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for row in rows:
        cells = [f"{row[c]} ({row['macs'] / row[c]:.2f})" if row.get(c) else "-" for c in COLUMNS]
        verdict = row.get("no_more_than_cmsis")
        verdict = f"{'yes' if verdict['dsp'] else 'no'}, {'yes' if verdict['mve'] else 'no'}" if verdict else "-"
        lines.append(f"| {row['kernel']} | {row['macs']} | " + " | ".join(cells) + f" | {verdict} |")
    lines += ["", "Cells: instructions per call (MACs per instruction), GEMM micro-kernels inlined into the kernel."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedules.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--log-dir", type=Path, default=COMMITTED_LOGS / BUILTIN_MODEL,
                        help=f"directory holding the {TARGET} and {TARGET}-mve tuning logs")
    args = parser.parse_args(argv)
    try:
        rows = benchmark(args.log_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    BUILD_DIR.mkdir(exist_ok=True)
    report = {"target": TARGET, "unit": "retired instructions per kernel call (QEMU TCG plugin, -icount shift=0)",
              "isa_limit_macs_per_instruction": ISA_LIMIT, "tuning_log": str(args.log_dir),
              "cmsis_dsp_version": CMSIS_VERSION, "kernels": rows}
    (BUILD_DIR / "schedules_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(rows, args.log_dir)
    (BUILD_DIR / "schedules_benchmark.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
