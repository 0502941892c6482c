"""Small helpers shared by the frontend's canonicalisation passes."""
from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import rewrite_call
from tvm.relax.expr_functor import PyExprMutator, mutator


def scalar_value(expr: relax.Expr) -> float | None:
    """The value of a constant holding exactly one element, else ``None``."""
    if not isinstance(expr, tvm.ir.Constant):
        return None
    array = expr.value.numpy()
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def is_scalar(expr: relax.Expr, expected: float, rel_tol: float = 1e-4) -> bool:
    """True if ``expr`` is a one-element constant equal to ``expected`` (float32-rounded)."""
    value = scalar_value(expr)
    return value is not None and abs(value - expected) <= rel_tol * max(abs(expected), 1e-12)


def rewrite_calls(pattern, rewriter, func: relax.Function) -> relax.Function:
    """``rewrite_call`` that offers ``rewriter`` calls only.

    ``rewrite_call`` also reports a variable bound to a matching call (``gv = lv1``); rewriting
    that alias too would duplicate the work, so such matches are left to the call's own binding.
    """
    return rewrite_call(pattern, lambda expr, matches: rewriter(expr, matches) if isinstance(expr, relax.Call) else expr, func)


def rewrite_functions(mod: tvm.IRModule, rewrite: Callable[[relax.Function], relax.Function]) -> tvm.IRModule:
    """Apply ``rewrite`` to every Relax function of ``mod``; other functions stay as they are."""
    updated = mod.clone()
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            updated[gvar] = rewrite(func)
    return updated


def const(array: np.ndarray) -> relax.Expr:
    """A Relax constant of ``array`` with its dtype kept (``relax.const`` alone narrows int64 to int32)."""
    array = np.array(array, order="C")  # np.ascontiguousarray would turn a 0-d array into 1-d
    return relax.const(array, str(array.dtype))


def constant_array(expr: relax.Expr) -> np.ndarray | None:
    """The numpy value of a constant, else ``None``."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression, else ``None``."""
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return tuple(int(d) for d in shape)


@mutator
class _CallFolder(PyExprMutator):
    """Replaces calls that ``fold`` can evaluate and substitutes the results into their uses."""

    def __init__(self, mod: tvm.IRModule, fold: Callable[[relax.Call], relax.Expr | None]):
        super().__init__(mod)
        self.fold = fold
        self.folded_vars: dict[relax.Var, relax.Expr] = {}

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.builder_.normalize(super().visit_call_(call))
        if not isinstance(call.op, tvm.ir.Op):
            return call
        folded = self.fold(call)
        return call if folded is None else folded

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        if isinstance(value, (tvm.ir.Constant, relax.ShapeExpr)) and isinstance(binding.value, relax.Call):
            self.folded_vars[binding.var] = value
        else:
            super().visit_var_binding_(binding)

    def visit_var_(self, var: relax.Var) -> relax.Expr:
        return self.folded_vars[var] if var in self.folded_vars else super().visit_var_(var)

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> relax.Expr:
        return self.folded_vars[var] if var in self.folded_vars else super().visit_dataflow_var_(var)


def fold_calls(mod: tvm.IRModule, fold: Callable[[relax.Call], relax.Expr | None]) -> tvm.IRModule:
    """Rewrite every Relax function, replacing each call ``c`` with ``fold(c)`` when that is not None.

    Calls are visited after their arguments, so folds chain; a variable bound to a folded
    constant or shape is replaced by that value in its uses.
    """
    folder = _CallFolder(mod, fold)
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            folder.builder_.update_func(gvar, folder.visit_expr(func))
    return folder.builder_.get()
