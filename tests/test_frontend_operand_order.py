"""CanonicalizeOperandOrder: constants go second in add/multiply."""
import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.host_run import run_on_host
from frontend.operand_order import CanonicalizeOperandOrder

BIAS = np.array([1.0, -2.0, 0.5], dtype="float32")


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((2, 3), "float32"), w: R.Tensor((3, 3), "float32")) -> R.Tensor((2, 3), "float32"):
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.add(R.const(BIAS), y)
            s = R.multiply(R.const(0.5, "float32"), z)
            t = R.add(s, R.const(BIAS))
            out = R.add(t, x)
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((2, 3), "float32"), w: R.Tensor((3, 3), "float32")) -> R.Tensor((2, 3), "float32"):
        with R.dataflow():
            y = R.matmul(x, w)
            z = R.add(y, R.const(BIAS))
            s = R.multiply(z, R.const(0.5, "float32"))
            t = R.add(s, R.const(BIAS))
            out = R.add(t, x)
            R.output(out)
        return out


def test_structure():
    tvm.ir.assert_structural_equal(CanonicalizeOperandOrder()(Before), Expected)


def test_numerics_unchanged():
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(2, 3)).astype("float32"), rng.normal(size=(3, 3)).astype("float32")
    (before,) = run_on_host(Before, x, w)
    (after,) = run_on_host(CanonicalizeOperandOrder()(Before), x, w)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(after, (x @ w + BIAS) * 0.5 + BIAS + x, rtol=1e-5)
