"""FuseGelu: rewrite GELU written out element-wise back into one ``R.nn.gelu`` call.

Frontends decompose GELU (ONNX before opset 20, TFLite, hand-written models).  This pass turns

* the erf form ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (also ``x * 0.7071...`` inside the erf, and
  every association/commutation of the outer products) into ``R.nn.gelu(x)``, and
* the tanh form ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` (``x^3`` as
  ``power(x, 3)`` or ``x * x * x``) into ``R.nn.gelu_tanh(x)``.

Constants are checked by value (relative tolerance 1e-4); anything else is left unchanged.
"""
import math

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from .pattern_util import is_scalar, rewrite_calls, rewrite_functions

SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
TANH_CUBIC_COEFF = 0.044715


def _half_times(x, one_plus, half):
    """``x * one_plus * half`` in any association (multiply matches commutatively)."""
    mul = is_op("relax.multiply")
    return mul(mul(x, one_plus), half) | mul(x, mul(one_plus, half)) | mul(mul(x, half), one_plus)


def _erf_gelu(func: relax.Function) -> relax.Function:
    x, scale, one, half = wildcard(), is_const(), is_const(), is_const()
    erf_arg = is_op("relax.divide")(x, scale) | is_op("relax.multiply")(x, scale)
    one_plus = is_op("relax.add")(is_op("relax.erf")(erf_arg), one)
    pattern = _half_times(x, one_plus, half)

    def rewriter(expr, matches):
        scale_ok = (
            is_scalar(matches[scale], SQRT_2)
            if matches[erf_arg].op.name == "relax.divide"
            else is_scalar(matches[scale], 1.0 / SQRT_2)
        )
        if scale_ok and is_scalar(matches[one], 1.0) and is_scalar(matches[half], 0.5):
            return relax.op.nn.gelu(matches[x])
        return expr

    return rewrite_calls(pattern, rewriter, func)


def _tanh_gelu(func: relax.Function) -> relax.Function:
    x, coeff, scale, one, half, three = (wildcard(), is_const(), is_const(), is_const(), is_const(), is_const())
    mul = is_op("relax.multiply")
    cube = is_op("relax.power")(x, three) | mul(mul(x, x), x)
    inner = is_op("relax.add")(x, mul(cube, coeff))
    one_plus = is_op("relax.add")(is_op("relax.tanh")(mul(inner, scale)), one)
    pattern = _half_times(x, one_plus, half)

    def rewriter(expr, matches):
        cube_ok = three not in matches or is_scalar(matches[three], 3.0)
        if (
            cube_ok
            and is_scalar(matches[coeff], TANH_CUBIC_COEFF)
            and is_scalar(matches[scale], SQRT_2_OVER_PI)
            and is_scalar(matches[one], 1.0)
            and is_scalar(matches[half], 0.5)
        ):
            return relax.op.nn.gelu_tanh(matches[x])
        return expr

    return rewrite_calls(pattern, rewriter, func)


@tvm.transform.module_pass(opt_level=0, name="FuseGelu")
class FuseGelu:
    """Rewrite element-wise erf/tanh GELU formulas into ``R.nn.gelu`` / ``R.nn.gelu_tanh``."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_functions(mod, lambda func: _tanh_gelu(_erf_gelu(func)))
