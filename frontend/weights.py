"""Move weights between the two forms the frontend uses.

Canonicalisation runs with every weight bound into ``main`` as a constant (so patterns can read
values and layout ops fold).  The result handed on has the opposite form: ``main(input, *params)``
with one parameter per weight tensor (every constant of rank >= 1, in order of first use) and
only scalar constants left inline.
"""
import hashlib

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .pattern_util import const


def bind_weights(mod: tvm.IRModule, params: list[np.ndarray]) -> tuple[tvm.IRModule, dict[str, np.ndarray]]:
    """Bind ``main``'s parameters after its input (``main(input, *params)``) to ``params``.

    Returns the module with the weights as constants and the name -> value map of the weights.
    """
    weight_vars = list(mod["main"].params[1:])
    if len(weight_vars) != len(params):
        raise ValueError(f"main takes {len(weight_vars)} weights but {len(params)} values were given")
    named = {var.name: np.asarray(value) for var, value in zip(weight_vars, params)}
    bindings = {var: const(value) for var, value in zip(weight_vars, named.values())}
    bound = mod.clone()
    bound["main"] = mod["main"].bind_params(bindings)
    return bound, named


def _content_key(array: np.ndarray) -> tuple:
    return str(array.dtype), hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


class _WeightNames:
    """Names lifted weights after the original weight with the same bytes (reshaped: same name,
    2-D transposed: name + ``_t``), each original name used once; otherwise ``folded_<i>``."""

    def __init__(self, original: dict[str, np.ndarray]):
        self.unused: dict[tuple, list[str]] = {}
        for name, value in original.items():
            self.unused.setdefault(_content_key(value), []).append(name)

    def name_for(self, array: np.ndarray, index: int) -> str:
        candidates = [(array, "")] + ([(array.T, "_t")] if array.ndim == 2 else [])
        for candidate, suffix in candidates:
            names = self.unused.get(_content_key(candidate))
            if names:
                return names.pop(0) + suffix
        return f"folded_{index}"


@mutator
class _WeightLifter(PyExprMutator):
    """Replaces each distinct rank >= 1 constant with a new function parameter."""

    def __init__(self, names: _WeightNames):
        super().__init__()
        self.names = names
        self.params: list[relax.Var] = []
        self.values: list[np.ndarray] = []
        self.var_by_const: dict[tvm.ir.Constant, relax.Var] = {}

    def visit_generic_const_(self, const: tvm.ir.Constant) -> relax.Expr:
        array = const.value.numpy()
        if array.ndim == 0:
            return const
        if const not in self.var_by_const:
            name = self.names.name_for(array, len(self.params))
            var = relax.Var(name, relax.TensorType(array.shape, str(array.dtype)))
            self.var_by_const[const] = var
            self.params.append(var)
            self.values.append(array)
        return self.var_by_const[const]


def lift_weights(
    mod: tvm.IRModule, original: dict[str, np.ndarray], func_name: str = "main"
) -> tuple[tvm.IRModule, list[np.ndarray]]:
    """Turn the weight constants of ``func_name`` back into parameters after its inputs.

    A lifted weight keeps its ``original`` name when its values are unchanged (see _WeightNames).  Returns the module and the weight values in parameter order.
    """
    func = mod[func_name]
    lifter = _WeightLifter(_WeightNames(original))
    body = lifter.visit_expr(func.body)
    num_input = len(func.params)
    lifted = relax.Function(list(func.params) + lifter.params, body, func.ret_ty, func.is_pure, func.attrs)
    lifted = lifted.with_attr("num_input", num_input)
    updated = mod.clone()
    updated[func_name] = lifted
    return updated, lifter.values
