"""FoldIndexArithmetic: static-shape index maths (TVM's ONNX Gather lowering) folds to constants."""
import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.fold_index_arithmetic import FoldIndexArithmetic
from frontend.host_run import run_on_host


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((3, 2, 4), "float32")) -> R.Tensor((2, 4), "float32"):
        with R.dataflow():
            # What from_onnx emits for Gather(x, -1, axis=0): wrap a negative index by the dim size.
            shape = R.shape_of(x)
            dims = R.shape_to_tensor(shape)
            size = R.take(dims, R.const(0, "int64"), axis=0, mode="wrap")
            negative = R.less(R.const(-1, "int64"), R.const(0, "int64"))
            wrapped = R.add(R.const(-1, "int64"), size)
            index = R.where(negative, wrapped, R.const(-1, "int64"))
            out = R.take(x, index, axis=0, mode="fast")
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((3, 2, 4), "float32")) -> R.Tensor((2, 4), "float32"):
        with R.dataflow():
            out = R.take(x, R.const(2, "int64"), axis=0, mode="fast")
            R.output(out)
        return out


@I.ir_module
class FloatArithmetic:
    """Float maths on constants is not this pass's business: untouched."""

    @R.function
    def main(x: R.Tensor((2,), "float32")) -> R.Tensor((2,), "float32"):
        with R.dataflow():
            c = R.add(R.const(1.0, "float32"), R.const(2.0, "float32"))
            out = R.multiply(x, c)
            R.output(out)
        return out


def test_structure():
    tvm.ir.assert_structural_equal(FoldIndexArithmetic()(Before), Expected)


def test_int64_stays_int64():
    # relax.const(np.int64 array) alone would narrow to int32; the folded index must keep int64.
    after = FoldIndexArithmetic()(Before)
    (binding,) = after["main"].body.blocks[0].bindings
    assert str(binding.value.args[1].ty.dtype) == "int64"


def test_float_arithmetic_is_left_alone():
    tvm.ir.assert_structural_equal(FoldIndexArithmetic()(FloatArithmetic), FloatArithmetic)


def test_numerics_unchanged():
    x = np.arange(24, dtype="float32").reshape(3, 2, 4)
    (before,) = run_on_host(Before, x)
    (after,) = run_on_host(FoldIndexArithmetic()(Before), x)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(after, x[-1])
