"""FoldLayerNormAffine: a pre-norm LayerNorm's gamma/beta move into the matmuls it feeds."""
import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.fold_layer_norm_affine import FoldLayerNormAffine
from frontend.host_run import run_on_host

RNG = np.random.default_rng(7)
GAMMA = RNG.normal(size=4).astype("float32")
BETA = RNG.normal(size=4).astype("float32")
W1 = RNG.normal(size=(4, 3)).astype("float32")
W2 = RNG.normal(size=(4, 5)).astype("float32")
B1 = RNG.normal(size=3).astype("float32")
ONES, ZEROS = np.ones(4, "float32"), np.zeros(4, "float32")
# The folded constants, written out independently of the pass: diag(gamma) W and beta W.
W1_SCALED = (GAMMA.astype(np.float64)[:, None] * W1).astype("float32")
W2_SCALED = (GAMMA.astype(np.float64)[:, None] * W2).astype("float32")
B1_PLUS_BETA_W1 = (B1 + BETA.astype(np.float64) @ W1).astype("float32")
BETA_W2 = (BETA.astype(np.float64) @ W2).astype("float32")


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 6, 4), "float32")):
        with R.dataflow():
            y = R.nn.layer_norm(x, R.const(GAMMA), R.const(BETA), axes=[-1])
            flat = R.reshape(y, (6, 4))
            q = R.matmul(flat, R.const(W1))
            qb = R.add(q, R.const(B1))
            head = R.strided_slice(y, axes=[1], begin=[0], end=[2])
            k = R.matmul(head, R.const(W2))
            # not foldable: the LayerNorm output also feeds an add
            z = R.nn.layer_norm(x, R.const(GAMMA), R.const(BETA), axes=[-1])
            kept = R.matmul(z, R.const(W1))
            out = R.add(z, x)
            result = (qb, k, kept, out)
            R.output(result)
        return result


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 6, 4), "float32")):
        with R.dataflow():
            y = R.nn.layer_norm(x, R.const(ONES), R.const(ZEROS), axes=[-1])
            flat = R.reshape(y, (6, 4))
            q = R.matmul(flat, R.const(W1_SCALED))
            qb = R.add(q, R.const(B1_PLUS_BETA_W1))
            head = R.strided_slice(y, axes=[1], begin=[0], end=[2])
            k_scaled = R.matmul(head, R.const(W2_SCALED))
            k = R.add(k_scaled, R.const(BETA_W2))
            z = R.nn.layer_norm(x, R.const(GAMMA), R.const(BETA), axes=[-1])
            kept = R.matmul(z, R.const(W1))
            out = R.add(z, x)
            result = (qb, k, kept, out)
            R.output(result)
        return result


def test_structure():
    tvm.ir.assert_structural_equal(FoldLayerNormAffine()(Before), Expected)


def test_numerics_match_within_float_rounding():
    x = RNG.normal(size=(1, 6, 4)).astype("float32") * 3 + 1
    before = run_on_host(Before, x)
    after = run_on_host(FoldLayerNormAffine()(Before), x)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(before[0], (normed * GAMMA + BETA).reshape(6, 4) @ W1 + B1, rtol=1e-4, atol=1e-4)


def test_zero_beta_adds_no_add():
    @I.ir_module
    class NoBeta:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")) -> R.Tensor((2, 3), "float32"):
            with R.dataflow():
                y = R.nn.layer_norm(x, R.const(GAMMA), R.const(ZEROS), axes=[-1])
                q = R.matmul(y, R.const(W1))
                R.output(q)
            return q

    ops = [b.value.op.name for b in FoldLayerNormAffine()(NoBeta)["main"].body.blocks[0].bindings]
    assert ops == ["relax.nn.layer_norm", "relax.matmul"]
