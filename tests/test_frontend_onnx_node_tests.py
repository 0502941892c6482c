"""The ONNX backend node tests shipped in onnx==1.22.0, for every ONNX op the frontend claims.

Each selected test model is imported, canonicalised, built for llvm and compared with the
expected outputs stored next to it (rtol/atol in frontend.node_tests).  Known failures are
listed with their reason in frontend.node_tests and marked xfail(strict=True).
"""
import pytest

from frontend import node_tests
from frontend.vocabulary import SUPPORTED_ONNX_OPS

CASES, LEFT_OUT = node_tests.claimed_cases()


def _param(case):
    reason = node_tests.known_failure(case.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


def test_every_claimed_op_is_exercised():
    covered = {case.op for case in CASES}
    assert covered == set(SUPPORTED_ONNX_OPS), f"claimed ops without a node test: {set(SUPPORTED_ONNX_OPS) - covered}"


def test_selection_is_substantial():
    # 335 cases with onnx 1.22.0; a sudden drop means the data or the selection broke.
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_node(case):
    result = node_tests.run_case(case)
    assert result.passed, result.detail
