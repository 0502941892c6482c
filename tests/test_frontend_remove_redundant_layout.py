"""RemoveRedundantLayout: no-op reshape/broadcast_to/permute_dims disappear, reshape chains merge."""
import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.host_run import run_on_host
from frontend.remove_redundant_layout import RemoveRedundantLayout


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 4, 6), "float32"), w: R.Tensor((6, 6), "float32")) -> R.Tensor((2, 2, 6), "float32"):
        with R.dataflow():
            # torch.export's batched matmul: broadcast_to the same shape, reshape to 2-D and back.
            b = R.broadcast_to(x, R.shape([1, 4, 6]))
            flat = R.reshape(b, R.shape([4, 6]))
            y = R.matmul(flat, w)
            y3 = R.reshape(y, R.shape([1, 4, 6]))
            same = R.reshape(y3, R.shape([1, 4, 6]))
            p = R.permute_dims(same, axes=[0, 1, 2])
            out = R.reshape(p, R.shape([2, 2, 6]))
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 4, 6), "float32"), w: R.Tensor((6, 6), "float32")) -> R.Tensor((2, 2, 6), "float32"):
        with R.dataflow():
            flat = R.reshape(x, R.shape([4, 6]))
            y = R.matmul(flat, w)
            out = R.reshape(y, R.shape([2, 2, 6]))
            R.output(out)
        return out


@I.ir_module
class Kept:
    """Real layout changes stay."""

    @R.function
    def main(x: R.Tensor((1, 4, 6), "float32")) -> R.Tensor((2, 4, 6), "float32"):
        with R.dataflow():
            p = R.permute_dims(x, axes=[0, 2, 1])
            r = R.reshape(p, R.shape([1, 4, 6]))
            out = R.broadcast_to(r, R.shape([2, 4, 6]))
            R.output(out)
        return out


def test_structure():
    import tvm.relax as relax

    after = relax.transform.DeadCodeElimination()(RemoveRedundantLayout()(Before))
    tvm.ir.assert_structural_equal(relax.transform.CanonicalizeBindings()(after), Expected)


def test_real_layout_changes_are_kept():
    tvm.ir.assert_structural_equal(RemoveRedundantLayout()(Kept), Kept)


def test_numerics_unchanged():
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(1, 4, 6)).astype("float32"), rng.normal(size=(6, 6)).astype("float32")
    (before,) = run_on_host(Before, x, w)
    (after,) = run_on_host(RemoveRedundantLayout()(Before), x, w)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_allclose(after, (x.reshape(4, 6) @ w).reshape(2, 2, 6), rtol=1e-5, atol=1e-5)
