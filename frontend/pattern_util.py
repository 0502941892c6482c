"""Small helpers shared by the frontend's canonicalisation passes."""
from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax


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


def rewrite_functions(mod: tvm.IRModule, rewrite: Callable[[relax.Function], relax.Function]) -> tvm.IRModule:
    """Apply ``rewrite`` to every Relax function of ``mod``; other functions stay as they are."""
    updated = mod.clone()
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            updated[gvar] = rewrite(func)
    return updated


def constant_array(expr: relax.Expr) -> np.ndarray | None:
    """The numpy value of a constant, else ``None``."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None
