"""FoldInputNormalization: ((x / 255) - mean) / std -> conv2d folds into the conv's weight and a bias."""
import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.host_run import run_on_host
from relax_passes.fold_input_normalization import FoldInputNormalization, fold_affine_reference

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(4, 3, 2, 2)).astype("float32")
MEAN = np.array([0.4, 0.3, 0.2], "float32").reshape(1, 3, 1, 1)
STD = np.array([0.2, 0.25, 0.3], "float32").reshape(1, 3, 1, 1)


def before():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 4, 4), "float32")) -> R.Tensor((1, 4, 2, 2), "float32"):
            with R.dataflow():
                a = R.divide(x, R.const(255.0, "float32"))
                b = R.subtract(a, R.const(MEAN))
                c = R.divide(b, R.const(STD))
                y = R.nn.conv2d(c, R.const(WEIGHT), strides=[2, 2])
                R.output(y)
            return y

    return Before


def expected():
    a = (1.0 / 255.0) / STD.reshape(-1).astype(np.float64)
    b = -MEAN.reshape(-1).astype(np.float64) / STD.reshape(-1)
    weight, bias = fold_affine_reference(WEIGHT, a, b)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 4, 4), "float32")) -> R.Tensor((1, 4, 2, 2), "float32"):
            with R.dataflow():
                conv = R.nn.conv2d(x, R.const(weight), strides=[2, 2])
                y = R.add(conv, R.const(bias.reshape(1, 4, 1, 1)))
                R.output(y)
            return y

    return Expected


def test_structure_matches_expected():
    tvm.ir.assert_structural_equal(FoldInputNormalization()(before()), expected())


def test_numerically_equal_to_the_unfolded_model():
    x = RNG.integers(0, 256, size=(1, 3, 4, 4)).astype("float32")
    want = run_on_host(before(), x)[0]
    got = run_on_host(FoldInputNormalization()(before()), x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_padded_conv_is_left_alone():
    """With zero padding the constant term is not a per-channel bias: no fold."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 4, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            centred = bb.emit(relax.op.subtract(x, relax.const(MEAN)))
            out = bb.emit_output(relax.op.nn.conv2d(centred, relax.const(WEIGHT), padding=[1, 1, 1, 1]))
        bb.emit_func_output(out)
    mod = bb.get()
    tvm.ir.assert_structural_equal(FoldInputNormalization()(mod), mod)


def test_folds_through_a_layout_round_trip():
    """TFLite-style NCHW -> NHWC -> NCHW permutes between the normalisation and the conv still fold."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 4, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            centred = bb.emit(relax.op.subtract(relax.op.divide(x, relax.const(255.0, "float32")), relax.const(MEAN)))
            nhwc = bb.emit(relax.op.permute_dims(centred, [0, 2, 3, 1]))
            scaled = bb.emit(relax.op.divide(nhwc, relax.const(STD.reshape(1, 1, 1, 3))))
            nchw = bb.emit(relax.op.permute_dims(scaled, [0, 3, 1, 2]))
            out = bb.emit_output(relax.op.nn.conv2d(nchw, relax.const(WEIGHT), strides=[2, 2]))
        bb.emit_func_output(out)
    mod = bb.get()
    folded = FoldInputNormalization()(mod)
    tvm.ir.assert_structural_equal(folded, expected(), map_free_vars=True)
    image = RNG.integers(0, 256, size=(1, 3, 4, 4)).astype("float32")
    np.testing.assert_allclose(run_on_host(folded, image)[0], run_on_host(mod, image)[0], rtol=1e-4, atol=1e-4)
