"""FuseLayerNorm: element-wise layer normalisation becomes one R.nn.layer_norm call."""
import numpy as np
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.fuse_layer_norm import FuseLayerNorm
from frontend.host_run import run_on_host

GAMMA = np.linspace(0.5, 1.5, 8, dtype="float32")
BETA = np.linspace(-1.0, 1.0, 8, dtype="float32")
# The pass reads epsilon from a float32 constant.
EPS_5, EPS_6 = float(np.float32(1e-5)), float(np.float32(1e-6))


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 4, 8), "float32")) -> R.Tensor((1, 4, 8), "float32"):
        with R.dataflow():
            # The ONNX opset-13 export of torch.nn.LayerNorm(8).
            mean = R.mean(x, axis=[-1], keepdims=True)
            centred = R.subtract(x, mean)
            square = R.power(centred, R.const(2.0, "float32"))
            var = R.mean(square, axis=[-1], keepdims=True)
            var_eps = R.add(var, R.const(1e-5, "float32"))
            std = R.sqrt(var_eps)
            normed = R.divide(centred, std)
            scaled = R.multiply(normed, R.const(GAMMA))
            out = R.add(scaled, R.const(BETA))
            R.output(out)
        return out


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 4, 8), "float32")) -> R.Tensor((1, 4, 8), "float32"):
        with R.dataflow():
            out = R.nn.layer_norm(x, R.const(GAMMA), R.const(BETA), axes=[-1], epsilon=EPS_5)
            R.output(out)
        return out


@I.ir_module
class BareBefore:
    @R.function
    def main(x: R.Tensor((1, 4, 8), "float32")) -> R.Tensor((1, 4, 8), "float32"):
        with R.dataflow():
            mean = R.mean(x, axis=[2], keepdims=True)
            centred = R.subtract(x, mean)
            square = R.multiply(centred, centred)
            var = R.mean(square, axis=[2], keepdims=True)
            var_eps = R.add(var, R.const(1e-6, "float32"))
            out = R.multiply(centred, R.rsqrt(var_eps))
            R.output(out)
        return out


@I.ir_module
class BareExpected:
    @R.function
    def main(x: R.Tensor((1, 4, 8), "float32")) -> R.Tensor((1, 4, 8), "float32"):
        with R.dataflow():
            out = R.nn.layer_norm(
                x, R.const(np.ones(8, "float32")), R.const(np.zeros(8, "float32")), axes=[-1], epsilon=EPS_6
            )
            R.output(out)
        return out


@I.ir_module
class NotLayerNorm:
    """Mean over a leading axis (instance-norm-like) and a variance over another axis: untouched."""

    @R.function
    def main(x: R.Tensor((1, 4, 8), "float32")) -> R.Tensor((1, 4, 8), "float32"):
        with R.dataflow():
            mean = R.mean(x, axis=[1], keepdims=True)
            centred = R.subtract(x, mean)
            square = R.power(centred, R.const(2.0, "float32"))
            var = R.mean(square, axis=[1], keepdims=True)
            var_eps = R.add(var, R.const(1e-5, "float32"))
            std = R.sqrt(var_eps)
            out = R.divide(centred, std)
            R.output(out)
        return out


def test_full_layer_norm_structure():
    tvm.ir.assert_structural_equal(FuseLayerNorm()(Before), Expected)


def test_bare_layer_norm_gets_unit_affine():
    tvm.ir.assert_structural_equal(FuseLayerNorm()(BareBefore), BareExpected)


def test_non_trailing_axes_are_left_alone():
    tvm.ir.assert_structural_equal(FuseLayerNorm()(NotLayerNorm), NotLayerNorm)


def test_numerics_unchanged():
    x = np.random.default_rng(1).normal(3, 2, (1, 4, 8)).astype("float32")
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * GAMMA + BETA
    (fused,) = run_on_host(FuseLayerNorm()(Before), x)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    (bare,) = run_on_host(FuseLayerNorm()(BareBefore), x)
    np.testing.assert_allclose(bare, (x - mean) / np.sqrt(var + 1e-6), atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(
    shape=st.lists(st.integers(2, 5), min_size=2, max_size=4),
    data=st.data(),
)
def test_decomposed_layer_norm_over_any_trailing_axes(shape, data):
    """Built the way an exporter writes it, over 1..rank-1 trailing axes, with or without affine."""
    rank = len(shape)
    count = data.draw(st.integers(1, rank - 1), label="normalised trailing axes")
    with_scale, with_shift = data.draw(st.booleans(), label="scale"), data.draw(st.booleans(), label="shift")
    axes = list(range(-count, 0))
    rng = np.random.default_rng(len(shape) * 10 + count)
    gamma = rng.normal(1, 0.3, shape[-count:]).astype("float32")
    beta = rng.normal(0, 0.3, shape[-count:]).astype("float32")

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            mean = bb.emit(relax.op.mean(x, axes, keepdims=True))
            centred = bb.emit(relax.op.subtract(x, mean))
            var = bb.emit(relax.op.mean(bb.emit(relax.op.power(centred, relax.const(2.0, "float32"))), axes, keepdims=True))
            std = bb.emit(relax.op.sqrt(bb.emit(relax.op.add(var, relax.const(1e-5, "float32")))))
            out = bb.emit(relax.op.divide(centred, std))
            if with_scale:
                out = bb.emit(relax.op.multiply(out, relax.const(gamma)))
            if with_shift:
                out = bb.emit(relax.op.add(relax.const(beta), out))
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    before = bb.get()

    after = FuseLayerNorm()(before)
    ops = {call.op.name for call in _calls(after)}
    assert ops == {"relax.nn.layer_norm"}, ops
    xv = rng.normal(2, 3, shape).astype("float32")
    (fused,) = run_on_host(after, xv)
    (original,) = run_on_host(before, xv)
    np.testing.assert_allclose(fused, original, atol=2e-5, rtol=1e-5)


def _calls(mod):
    found = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: found.append(e) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None
    )
    return found
