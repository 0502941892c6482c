"""CanonicalizeOperandOrder: put the constant operand of ``add``/``multiply`` second.

Exporters disagree on ``bias + x`` versus ``x + bias`` (TVM's ONNX and torch importers both emit
``add(bias, matmul(...))``).  This pass rewrites ``add(c, x)`` / ``multiply(c, x)`` with a
constant ``c`` and a non-constant ``x`` into ``add(x, c)`` / ``multiply(x, c)``, so the integer
passes can match ``add(matmul(x, W), b)`` in one order.
"""
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from .pattern_util import rewrite_calls, rewrite_functions

_COMMUTATIVE = {"relax.add": relax.op.add, "relax.multiply": relax.op.multiply}


def _constant_second(func: relax.Function) -> relax.Function:
    pattern = is_op("relax.add")(is_const(), wildcard()) | is_op("relax.multiply")(is_const(), wildcard())

    def rewriter(expr, _matches):
        first, second = expr.args
        if isinstance(first, tvm.ir.Constant) and not isinstance(second, tvm.ir.Constant):
            return _COMMUTATIVE[expr.op.name](second, first)
        return expr

    return rewrite_calls(pattern, rewriter, func)


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeOperandOrder")
class CanonicalizeOperandOrder:
    """Rewrite ``add(const, x)`` / ``multiply(const, x)`` into ``add(x, const)`` / ``multiply(x, const)``."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_functions(mod, _constant_second)
