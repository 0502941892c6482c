"""FoldConstantLayout: evaluate layout ops whose input is a constant, in numpy, at import time.

Frontends leave weight re-layouts in the graph: ``permute_dims(W)`` before every torch ``Linear``
matmul, ``reshape(bias, [1, C, 1, 1])`` before a convolution's bias add, ``broadcast_to`` of a
class token.  With the weights bound as constants this pass replaces

    permute_dims | reshape | squeeze | expand_dims | flatten | broadcast_to | astype (constant)

by the resulting constant, so later passes see ``matmul(x, W_t)`` with ``W_t`` a plain weight.
Unlike ``relax.transform.FoldConstant`` it compiles nothing (numpy only, no float folding of
arithmetic), so it is fast and exact.
"""
import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .pattern_util import constant_array

_SHAPE_ONLY_OPS = {"relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten"}


def _fold(call: relax.Call, array: np.ndarray) -> np.ndarray | None:
    """The value of ``call`` applied to the constant ``array``, or None for ops not folded here."""
    name = call.op.name
    out_shape = tuple(int(d) for d in call.ty.shape) if hasattr(call.ty, "shape") and call.ty.shape else None
    if name == "relax.permute_dims":
        axes = None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
        return np.transpose(array, axes)
    if name in _SHAPE_ONLY_OPS and out_shape is not None:
        return array.reshape(out_shape)
    if name == "relax.broadcast_to" and out_shape is not None:
        return np.broadcast_to(array, out_shape)
    if name == "relax.astype":
        return array.astype(str(call.attrs.dtype))
    return None


@mutator
class _ConstantLayoutFolder(PyExprMutator):
    """Folds layout ops of constants and substitutes the folded constants into their uses."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.folded_vars: dict[relax.Var, relax.Expr] = {}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        if isinstance(value, tvm.ir.Constant) and not isinstance(binding.value, tvm.ir.Constant):
            self.folded_vars[binding.var] = value
        else:
            super().visit_var_binding_(binding)

    def visit_var_(self, var: relax.Var) -> relax.Expr:
        return self.folded_vars[var] if var in self.folded_vars else super().visit_var_(var)

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> relax.Expr:
        return self.folded_vars[var] if var in self.folded_vars else super().visit_dataflow_var_(var)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or not call.args:
            return call
        array = constant_array(call.args[0])
        if array is None:
            return call
        folded = _fold(call, array)
        return call if folded is None else relax.const(np.ascontiguousarray(folded))

    def rewrite(self, mod: tvm.IRModule) -> tvm.IRModule:
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="FoldConstantLayout")
class FoldConstantLayout:
    """Replace layout ops (permute/reshape/squeeze/expand_dims/flatten/broadcast_to/astype) of constants."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _ConstantLayoutFolder(mod).rewrite(mod)
