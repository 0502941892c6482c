"""FoldConstantLayout: layout ops applied to constants are evaluated at import time."""
import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.fold_constant_layout import FoldConstantLayout
from frontend.host_run import run_on_host

WEIGHT = np.arange(12, dtype="float32").reshape(4, 3)
BIAS = np.array([1.0, -2.0, 3.0, -4.0], dtype="float32")


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((1, 2, 4), "float32"):
        with R.dataflow():
            # torch Linear as from_exported_program writes it: permute the weight, then matmul.
            w_t = R.permute_dims(R.const(WEIGHT), axes=[1, 0])
            y = R.matmul(x, w_t)
            b = R.reshape(R.const(BIAS), R.shape([1, 4]))
            z = R.add(y, b)
            out = R.expand_dims(z, axis=[0])
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((1, 2, 4), "float32"):
        with R.dataflow():
            y = R.matmul(x, R.const(np.ascontiguousarray(WEIGHT.T)))
            z = R.add(y, R.const(BIAS.reshape(1, 4)))
            out = R.expand_dims(z, axis=[0])
            R.output(out)
        return out


def test_structure():
    after = FoldConstantLayout()(Before)
    tvm.ir.assert_structural_equal(after, Expected)


def test_numerics_unchanged():
    x = np.random.default_rng(2).normal(size=(2, 3)).astype("float32")
    (before,) = run_on_host(Before, x)
    (after,) = run_on_host(FoldConstantLayout()(Before), x)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(after, (x @ WEIGHT.T + BIAS)[None], rtol=1e-6)
