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

from .pattern_util import const, constant_array, fold_calls, static_shape

_SHAPE_ONLY_OPS = {"relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten"}


def _fold(call: relax.Call) -> relax.Expr | None:
    """The constant value of a layout op applied to a constant, or None for anything else."""
    array = constant_array(call.args[0]) if call.args else None
    if array is None:
        return None
    folded = _fold_array(call, array)
    return None if folded is None else const(folded)


def _fold_array(call: relax.Call, array: np.ndarray) -> np.ndarray | None:
    name = call.op.name
    out_shape = static_shape(call)
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


@tvm.transform.module_pass(opt_level=0, name="FoldConstantLayout")
class FoldConstantLayout:
    """Replace layout ops (permute/reshape/squeeze/expand_dims/flatten/broadcast_to/astype) of constants."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return fold_calls(mod, _fold)
