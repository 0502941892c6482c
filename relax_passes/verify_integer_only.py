"""VerifyIntegerOnly: fail, listing every offender, if ``main`` still holds any floating point.

Offenders: a parameter, binding or result of float type; a float constant; a call to an operator
that only makes sense on reals (``nn.softmax``, ``nn.gelu``, ``nn.layer_norm``, ``image.resize2d``,
``exp``/``erf``/``sqrt``/..., ``quantize``/``dequantize``) whatever its dtypes. The module is returned
unchanged when there is none.
"""
import tvm
from tvm import relax

FLOAT_OPS = frozenset(
    f"relax.{name}" for name in """nn.softmax nn.log_softmax nn.gelu nn.gelu_tanh nn.silu nn.layer_norm nn.group_norm
    nn.rms_norm image.resize2d quantize dequantize exp log erf tanh sigmoid sqrt rsqrt power divide
    mean variance""".split()
)


class IntegerOnlyError(ValueError):
    """``main`` is not integer-only; ``offenders`` lists what and where."""

    def __init__(self, offenders: list[str]):
        self.offenders = offenders
        shown = "; ".join(offenders[:10]) + (f"; ... ({len(offenders)} in all)" if len(offenders) > 10 else "")
        super().__init__(f"not integer-only: {shown}")


def _is_float(ty) -> bool:
    if isinstance(ty, relax.TensorType):
        return str(ty.dtype).startswith(("float", "bfloat"))
    if isinstance(ty, relax.TupleType):
        return any(_is_float(field) for field in ty.fields)
    return False


def float_offenders(func: relax.Function) -> list[str]:
    """Every floating-point parameter, value, constant and operator in ``func`` (empty: integer-only)."""
    offenders = [f"parameter {p.name}: {p.ty}" for p in func.params if _is_float(p.ty)]

    def visit(expr):
        if isinstance(expr, tvm.ir.Constant) and _is_float(expr.ty):
            offenders.append(f"float constant {expr.ty}")
        elif isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in FLOAT_OPS:
            offenders.append(f"float operator {expr.op.name}")

    relax.analysis.post_order_visit(func.body, visit)
    for block in func.body.blocks:
        for binding in block.bindings:
            if _is_float(binding.var.ty):
                offenders.append(f"{binding.var.name}: {binding.var.ty}")
    if _is_float(func.body.body.ty):
        offenders.append(f"result: {func.body.body.ty}")
    return offenders


def verify_integer_only(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` itself if ``main`` is integer-only, else :class:`IntegerOnlyError` listing the offenders."""
    offenders = float_offenders(mod["main"])
    if offenders:
        raise IntegerOnlyError(offenders)
    return mod


@tvm.transform.module_pass(opt_level=0, name="VerifyIntegerOnly")
class VerifyIntegerOnly:
    """The check as a pass for pipelines (TVM re-raises the error as a RuntimeError, same message)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return verify_integer_only(mod)
