"""The ONNX backend node tests shipped in the onnx wheel, run through this frontend.

For every claimed ONNX op (``SUPPORTED_ONNX_OPS``) each single-node test model — plus its
``_expanded`` twin where the expansion uses claimed ops only — is imported with
``from_onnx``, canonicalised, built with ``tvm.compile(..., "llvm")`` and its outputs compared
with the expected outputs stored beside it (``test_data_set_0``).

Our models carry shapes, axes and scales as constants and use LayerNormalization's ``Y`` only,
so the harness (documented, applied to every case alike) turns integer inputs after the first,
every ConstantOfShape input and Resize's roi/scales/sizes into initializers, and drops
LayerNormalization's optional Mean/InvStdDev outputs.  Tests using tensor types the pipeline does
not handle (float8/float4/int4/int2/bfloat16/string, sequences, optionals) and Resize tests in
linear/cubic mode (only nearest is claimed) are not selected; the summary lists them.

``python -m frontend.node_tests`` runs them all and writes build/onnx_node_tests.{json,md}.
"""
import argparse
import dataclasses
import json
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from common.paths import BUILD_DIR, CACHE_DIR

from .vocabulary import SUPPORTED_ONNX_OPS

ONNX_VERSION = "1.22.0"
_NODE_DIR = "onnx/backend/test/data/node"

# Default comparison: |actual - expected| <= ATOL + RTOL * |expected| (onnx's runner uses 1e-3/1e-7).
RTOL, ATOL = 1e-4, 1e-4

# Element types a selected test may use (onnx.TensorProto names).
SUPPORTED_ELEM_TYPES = frozenset(
    "FLOAT DOUBLE FLOAT16 INT8 INT16 INT32 INT64 UINT8 UINT16 UINT32 UINT64 BOOL".split()
)

# Tests expected to fail today, by name pattern, with the reason; pytest marks them xfail(strict=True).
_KNOWN_FAILURE_PATTERNS = [
    (r"test_layer_normalization_.*_expanded", "TVM 0.27 ONNX importer: Size of a Shape value is not supported "
     "('Node cannot handle ShapeExpr inputs'); the fused LayerNormalization op itself passes"),
    (r"test_pow_types_", "TVM 0.27 relax.power needs two float operands of the same dtype"),
    (r"test_resize_.*_nearest_not_(larger|smaller)", "TVM 0.27 ONNX importer ignores keep_aspect_ratio_policy"),
    (r"test_resize_.*_nearest_axes_", "TVM 0.27 ONNX importer does not support Resize's axes attribute"),
    (r"test_split_zero_size_splits", "TVM 0.27 relax.split rejects zero-size parts"),
]


def known_failure(name: str) -> str | None:
    """Why test ``name`` is expected to fail, or None."""
    return next((reason for pattern, reason in _KNOWN_FAILURE_PATTERNS if re.fullmatch(pattern + ".*", name)), None)


@dataclasses.dataclass(frozen=True)
class NodeCase:
    """One node test: its directory and the claimed op it exercises."""

    name: str
    path: Path
    op: str


@dataclasses.dataclass
class CaseResult:
    name: str
    op: str
    passed: bool
    detail: str
    max_abs_error: float | None = None
    seconds: float = 0.0


def node_test_root() -> Path:
    """The node-test directory of the installed onnx, else of the pinned wheel (downloaded to the cache)."""
    installed = Path(onnx.__file__).parent / "backend/test/data/node"
    if installed.is_dir():
        return installed
    extracted = CACHE_DIR / f"onnx-{ONNX_VERSION}-node-tests"
    root = extracted / _NODE_DIR
    if root.is_dir():
        return root
    wheel_dir = CACHE_DIR / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"onnx=={ONNX_VERSION}", "--no-deps", "-d", str(wheel_dir)],
        check=True,
    )
    (wheel,) = wheel_dir.glob(f"onnx-{ONNX_VERSION}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(extracted, [m for m in archive.namelist() if m.startswith(_NODE_DIR + "/")])
    return root


def claimed_cases(root: Path | None = None) -> tuple[list[NodeCase], dict[str, str]]:
    """Single-node tests of claimed ops, and their ``_expanded`` versions made of claimed ops.

    Returns the selected cases and, for tests of claimed ops left out, the reason.
    """
    root = root or node_test_root()
    graphs = {d.name: onnx.load(str(d / "model.onnx"), load_external_data=False).graph for d in sorted(root.glob("test_*"))}
    single_op = {name: g.node[0].op_type for name, g in graphs.items() if len(g.node) == 1}
    cases, left_out = [], {}
    for name, graph in graphs.items():
        base = name.split("_expanded")[0]
        op = single_op.get(name) or (single_op.get(base) if "_expanded" in name else None)
        if op not in SUPPORTED_ONNX_OPS or not {n.op_type for n in graph.node} <= SUPPORTED_ONNX_OPS:
            continue
        unsupported_types = _unsupported_types(graph)
        resize_modes = {a.s.decode() for n in graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"}
        if unsupported_types:
            left_out[name] = f"uses {', '.join(unsupported_types)}"
        elif resize_modes - {"nearest"}:
            left_out[name] = f"Resize mode {', '.join(sorted(resize_modes))} (only nearest is claimed)"
        else:
            cases.append(NodeCase(name, root / name, op))
    return cases, left_out


def _unsupported_types(graph: onnx.GraphProto) -> list[str]:
    found = set()
    for value in list(graph.input) + list(graph.output):
        if not value.type.HasField("tensor_type"):
            found.add(value.type.WhichOneof("value"))
            continue
        elem = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        if elem not in SUPPORTED_ELEM_TYPES:
            found.add(elem)
    return sorted(found)


def _constant_inputs(node: onnx.NodeProto) -> set[int]:
    """Input positions of ``node`` that our models carry as constants (the harness bakes them)."""
    if node.op_type == "ConstantOfShape":
        return {0}
    if node.op_type == "Resize":
        return {1, 2, 3}
    return set()


def _as_deployed(model: onnx.ModelProto, inputs: list[np.ndarray], expected: list[np.ndarray]):
    """Apply the documented harness changes; returns the model, its runtime inputs and expectations."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    runtime = [i for i in graph.input if i.name not in initializers]
    consumers = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append(position in _constant_inputs(node))
    keep, keep_values = [], []
    for index, (value_info, array) in enumerate(zip(runtime, inputs)):
        baked = any(consumers.get(value_info.name, [])) or (index > 0 and array.dtype.kind in "iu")
        if baked:
            graph.initializer.append(numpy_helper.from_array(array, value_info.name))
        else:
            keep.append(value_info)
            keep_values.append(array)
    dropped_outputs = set()
    for node in graph.node:
        if node.op_type == "LayerNormalization" and len(node.output) > 1:
            dropped_outputs.update(o for o in node.output[1:] if o)
            del node.output[1:]
    outputs = [(o, e) for o, e in zip(list(graph.output), expected) if o.name not in dropped_outputs]
    del graph.output[:]
    graph.output.extend(o for o, _ in outputs)
    del graph.input[:]
    graph.input.extend(keep)
    return model, keep_values, [e for _, e in outputs]


def _load_data(case: NodeCase, prefix: str) -> list[np.ndarray]:
    files = sorted((case.path / "test_data_set_0").glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]


def run_case(case: NodeCase) -> CaseResult:
    """Import, canonicalise, build and run one node test; compare with its expected outputs."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from .canonicalize import canonicalization_passes

    start = time.perf_counter()
    try:
        model, inputs, expected = _as_deployed(
            onnx.load(str(case.path / "model.onnx")), _load_data(case, "input"), _load_data(case, "output")
        )
        initializers = {i.name for i in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in initializers]
        mod = from_onnx(
            model,
            shape_dict={n: list(a.shape) for n, a in zip(names, inputs)},
            dtype_dict={n: str(a.dtype) for n, a in zip(names, inputs)},
        )
        mod = canonicalization_passes()(mod)
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        result = vm["main"](*(tvm.runtime.tensor(a) for a in inputs))
        actual = _flatten(result)
    except Exception as err:  # a failing test is a result, not a crash of the runner
        message = str(err).strip().splitlines()
        return CaseResult(case.name, case.op, False, f"{type(err).__name__}: {message[-1] if message else ''}"[:300],
                          seconds=time.perf_counter() - start)
    return _compare(case, actual, expected, time.perf_counter() - start)


def _flatten(value) -> list[np.ndarray]:
    """VM results as arrays; a Relax Shape result counts as one int64 tensor (ONNX Shape's output)."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    if type(value).__name__ in ("Shape", "ShapeTuple"):
        return [np.array(list(value), dtype="int64")]
    if isinstance(value, (int, float, bool, np.generic)):
        return [np.asarray(value)]
    return [array for item in value for array in _flatten(item)]


def _compare(case, actual, expected, seconds) -> CaseResult:
    if len(actual) != len(expected):
        return CaseResult(case.name, case.op, False, f"{len(actual)} outputs, expected {len(expected)}", seconds=seconds)
    worst = 0.0
    for i, (a, e) in enumerate(zip(actual, expected)):
        if a.shape != e.shape or a.dtype != e.dtype:
            return CaseResult(case.name, case.op, False,
                              f"output {i}: {a.dtype}{list(a.shape)}, expected {e.dtype}{list(e.shape)}", seconds=seconds)
        if e.dtype.kind in "fc":
            error = float(np.max(np.abs(a.astype(np.float64) - e), initial=0.0))
            worst = max(worst, error)
            if not np.allclose(a, e, rtol=RTOL, atol=ATOL, equal_nan=True):
                return CaseResult(case.name, case.op, False, f"output {i}: max abs error {error:.3g}", error, seconds)
        elif not np.array_equal(a, e):
            return CaseResult(case.name, case.op, False, f"output {i}: values differ", seconds=seconds)
    return CaseResult(case.name, case.op, True, "ok", worst, seconds)


def summarize(results: list[CaseResult], left_out: dict[str, str]) -> dict:
    """Pass/fail counts per op plus every failure, as a JSON-ready dict."""
    per_op: dict[str, Counter] = {}
    for r in results:
        per_op.setdefault(r.op, Counter())["passed" if r.passed else "failed"] += 1
    return {
        "onnx_version": onnx.__version__,
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "total": len(results),
        "passed": sum(r.passed for r in results),
        "per_op": {op: {"passed": c["passed"], "failed": c["failed"]} for op, c in sorted(per_op.items())},
        "failures": {r.name: r.detail for r in results if not r.passed},
        "known_failures": {r.name: known_failure(r.name) for r in results if known_failure(r.name)},
        "unexpected_failures": sorted(r.name for r in results if not r.passed and not known_failure(r.name)),
        "unexpected_passes": sorted(r.name for r in results if r.passed and known_failure(r.name)),
        "not_selected": left_out,
        "results": [dataclasses.asdict(r) for r in results],
    }


def _markdown(summary: dict) -> str:
    lines = [
        f"# ONNX backend node tests (onnx {summary['onnx_version']})",
        "",
        f"{summary['passed']} of {summary['total']} passed "
        f"(rtol {summary['tolerance']['rtol']}, atol {summary['tolerance']['atol']}); "
        f"{len(summary['unexpected_failures'])} unexpected failures, "
        f"{len(summary['not_selected'])} tests of claimed ops not selected (tensor types or Resize modes not claimed).",
        "",
        "| op | passed | failed (all listed below) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {op} | {c['passed']} | {c['failed']} |" for op, c in summary["per_op"].items()]
    if summary["failures"]:
        lines += ["", "## Failures", ""]
        known = summary["known_failures"]
        lines += [
            f"- `{name}`: {detail} ({'known: ' + known[name] if name in known else 'UNEXPECTED'})"
            for name, detail in summary["failures"].items()
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--filter", default="", help="only tests whose name contains this text")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    cases, left_out = claimed_cases()
    cases = [c for c in cases if args.filter in c.name]
    results = [run_case(c) for c in tqdm(cases, desc="onnx node tests", unit="test")]
    summary = summarize(results, left_out)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "onnx_node_tests.json").write_text(json.dumps(summary, indent=1))
    (args.out_dir / "onnx_node_tests.md").write_text(_markdown(summary))
    print(f"{summary['passed']}/{summary['total']} passed; wrote {args.out_dir / 'onnx_node_tests.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
