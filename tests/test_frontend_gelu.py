"""FuseGelu: decomposed erf/tanh GELU becomes one R.nn.gelu / R.nn.gelu_tanh call."""
import math

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from frontend.fuse_gelu import FuseGelu
from frontend.host_run import run_on_host


@I.ir_module
class ErfGeluBefore:
    @R.function
    def main(x: R.Tensor((2, 8), "float32"), y: R.Tensor((2, 8), "float32")) -> R.Tensor((2, 8), "float32"):
        with R.dataflow():
            # ONNX opset-17 export of torch.nn.functional.gelu: (x * (erf(x / sqrt2) + 1)) * 0.5
            a = R.divide(x, R.const(1.4142135381698608, "float32"))
            b = R.erf(a)
            c = R.add(b, R.const(1.0, "float32"))
            d = R.multiply(x, c)
            e = R.multiply(d, R.const(0.5, "float32"))
            # Another association: (0.5 * y) * (1 + erf(y * 0.70710677))
            a2 = R.multiply(y, R.const(0.7071067690849304, "float32"))
            b2 = R.erf(a2)
            c2 = R.add(R.const(1.0, "float32"), b2)
            h2 = R.multiply(R.const(0.5, "float32"), y)
            e2 = R.multiply(h2, c2)
            out = R.add(e, e2)
            R.output(out)
        return out


@I.ir_module
class ErfGeluExpected:
    @R.function
    def main(x: R.Tensor((2, 8), "float32"), y: R.Tensor((2, 8), "float32")) -> R.Tensor((2, 8), "float32"):
        with R.dataflow():
            e = R.nn.gelu(x)
            e2 = R.nn.gelu(y)
            out = R.add(e, e2)
            R.output(out)
        return out


@I.ir_module
class TanhGeluBefore:
    @R.function
    def main(x: R.Tensor((2, 8), "float32")) -> R.Tensor((2, 8), "float32"):
        with R.dataflow():
            cube = R.power(x, R.const(3.0, "float32"))
            a = R.multiply(cube, R.const(0.044715, "float32"))
            b = R.add(x, a)
            c = R.multiply(b, R.const(0.7978845834732056, "float32"))
            d = R.tanh(c)
            e = R.add(d, R.const(1.0, "float32"))
            f = R.multiply(x, R.const(0.5, "float32"))
            out = R.multiply(f, e)
            R.output(out)
        return out


@I.ir_module
class TanhGeluExpected:
    @R.function
    def main(x: R.Tensor((2, 8), "float32")) -> R.Tensor((2, 8), "float32"):
        with R.dataflow():
            out = R.nn.gelu_tanh(x)
            R.output(out)
        return out


@I.ir_module
class NotGelu:
    """The erf shape with a wrong constant (0.6 instead of 0.5) and a mismatched operand: untouched."""

    @R.function
    def main(x: R.Tensor((2, 8), "float32"), y: R.Tensor((2, 8), "float32")) -> R.Tensor((2, 8), "float32"):
        with R.dataflow():
            a = R.divide(x, R.const(1.4142135381698608, "float32"))
            b = R.erf(a)
            c = R.add(b, R.const(1.0, "float32"))
            d = R.multiply(x, c)
            e = R.multiply(d, R.const(0.6, "float32"))
            d2 = R.multiply(y, c)
            e2 = R.multiply(d2, R.const(0.5, "float32"))
            out = R.add(e, e2)
            R.output(out)
        return out


def test_erf_gelu_structure():
    tvm.ir.assert_structural_equal(FuseGelu()(ErfGeluBefore), ErfGeluExpected)


def test_tanh_gelu_structure():
    tvm.ir.assert_structural_equal(FuseGelu()(TanhGeluBefore), TanhGeluExpected)


def test_lookalikes_are_left_alone():
    tvm.ir.assert_structural_equal(FuseGelu()(NotGelu), NotGelu)


def test_numerics_unchanged():
    rng = np.random.default_rng(0)
    x, y = (rng.normal(0, 2, (2, 8)).astype("float32") for _ in range(2))
    erf_gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))
    tanh_gelu = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    for before, args, expected in [
        (ErfGeluBefore, (x, y), erf_gelu(x) + erf_gelu(y)),
        (TanhGeluBefore, (x,), tanh_gelu),
    ]:
        (fused,) = run_on_host(FuseGelu()(before), *args)
        (original,) = run_on_host(before, *args)
        np.testing.assert_allclose(fused, expected, atol=1e-5)
        np.testing.assert_allclose(fused, original, atol=1e-5)
