"""FoldIndexArithmetic: evaluate integer index arithmetic that only depends on static shapes.

TVM's ONNX importer normalises every Gather index at run time
(``where(less(i, 0), add(i, take(shape_to_tensor(shape_of(x)), axis)), i)``) even when ``x`` has
a static shape and ``i`` is a constant.  This pass rewrites

* ``shape_of(x)`` with a static shape into that shape (``R.shape([...])``),
* ``shape_to_tensor(R.shape([...]))`` into an int64 constant,
* ``less/greater/equal/add/subtract/multiply/where/take`` whose arguments are all integer or
  boolean constants into their value (numpy, exact),

so what remains is e.g. ``take(x, R.const(0, "int64"), axis=0)``.  Float arithmetic is never folded.
"""
import numpy as np
import tvm
from tvm import relax

from .pattern_util import const, constant_array, fold_calls, static_shape

_ELEMENTWISE = {
    "relax.less": np.less,
    "relax.greater": np.greater,
    "relax.equal": np.equal,
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.where": np.where,
}


def _fold(call: relax.Call) -> relax.Expr | None:
    name = call.op.name
    if name == "relax.shape_of":
        shape = static_shape(call.args[0])
        return None if shape is None else relax.ShapeExpr(list(shape))
    if name == "relax.shape_to_tensor":
        arg = call.args[0]
        if isinstance(arg, relax.ShapeExpr) and all(isinstance(d, tvm.tirx.IntImm) for d in arg.values):
            return const(np.array([int(d) for d in arg.values], dtype="int64"))
        return None
    if name not in _ELEMENTWISE and name != "relax.take":
        return None
    arrays = [constant_array(arg) for arg in call.args]
    if any(a is None or a.dtype.kind not in "iub" for a in arrays):
        return None
    if name == "relax.take":
        data, indices = arrays
        mode = "clip" if str(call.attrs.mode) == "clip" else "wrap"
        axis = None if call.attrs.axis is None else int(call.attrs.axis)
        value = np.take(data, indices, axis=axis, mode=mode)
    else:
        value = _ELEMENTWISE[name](*arrays)
    return const(np.asarray(value).astype(str(call.ty.dtype)))


@tvm.transform.module_pass(opt_level=0, name="FoldIndexArithmetic")
class FoldIndexArithmetic:
    """Replace static-shape queries and integer arithmetic on constants with their values."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return fold_calls(mod, _fold)
