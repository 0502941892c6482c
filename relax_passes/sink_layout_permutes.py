"""SinkLayoutPermutes: keep NHWC regions of an NCHW graph in NCHW, dropping the permute pairs.

A TFLite model converted to NCHW convolutions (``ConvertLayout``) is full of
``permute_dims(conv, [0,2,3,1]) -> bias add / activations / pooling (NHWC) -> permute_dims(., [0,3,1,2]) -> conv``.
This pass (float to float, exact) rewrites every value computed in NHWC from a permuted NCHW tensor
into its NCHW stand-in:

* ``permute_dims(x, [0,2,3,1])`` -> nothing (``x`` stands for it); ``permute_dims(y, [0,3,1,2])`` of
  such a value -> its stand-in;
* ``relu`` / ``clip`` / ``sigmoid`` -> the same op on the stand-in;
* ``add`` / ``subtract`` / ``multiply`` / ``divide`` of stand-ins and constants -> the same op, the
  per-channel constants (``(C,)`` or ``(1,1,1,C)``) reshaped to ``(1,C,1,1)``;
* ``nn.avg_pool2d`` / ``image.resize2d`` with ``layout="NHWC"`` -> the same op with ``layout="NCHW"``.

Any other use of an NHWC value (including the function result) reads ``permute_dims(stand-in, [0,2,3,1])``.
"""
import numpy as np
import tvm
from tvm import relax

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
UNARY = ("relax.nn.relu", "relax.clip", "relax.sigmoid")
BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide")


def _axes(call) -> tuple:
    axes = call.attrs.axes
    return tuple(int(a) for a in axes) if axes is not None else ()


def _nchw_constant(const: tvm.ir.Constant):
    """A constant broadcasting against NHWC as one broadcasting against NCHW, or None."""
    value = const.value.numpy()
    if value.ndim == 0:
        return const
    if value.ndim == 1 or (value.ndim == 4 and value.shape[:3] == (1, 1, 1)):
        return relax.const(value.reshape(1, -1, 1, 1))
    if value.ndim == 4:
        return relax.const(np.ascontiguousarray(value.transpose(TO_NCHW)))
    return None


class LayoutSinker:
    """Re-emits bindings into ``bb``; ``stand_in[var]`` is the NCHW value of an NHWC ``var``."""

    def __init__(self, bb: relax.BlockBuilder, result: relax.Var = None):
        self.bb = bb
        self.result = result  # the function's result: emitted as the dataflow block's output
        self.remap: dict = {}
        self.stand_in: dict = {}
        self.materialized: dict = {}

    def value(self, expr):
        """``expr`` as it must be read by a layout-unaware use (NHWC values permuted back)."""
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.value(f) for f in expr.fields])
        if not isinstance(expr, relax.Var):
            return expr
        if expr in self.stand_in:
            if expr not in self.materialized:
                self.materialized[expr] = self.bb.emit(self._nhwc(expr))
            return self.materialized[expr]
        return self.remap.get(expr, expr)

    def _nhwc(self, var):
        return relax.op.permute_dims(self.stand_in[var], list(TO_NHWC))

    def visit(self, var: relax.Var, call) -> None:
        nchw = self._sunk(call) if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) else None
        if isinstance(nchw, relax.Var):
            self.stand_in[var] = nchw
        elif nchw is not None:
            self.stand_in[var] = self.bb.emit(nchw)
        elif isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.permute_dims" \
                and _axes(call) == TO_NCHW and call.args[0] in self.stand_in:
            self.remap[var] = self.stand_in[call.args[0]]
        else:
            new = relax.Call(call.op, [self.value(a) for a in call.args], call.attrs, call.ty_args) \
                if isinstance(call, relax.Call) else call
            self.remap[var] = self.bb.emit_output(new) if var.same_as(self.result) else self.bb.emit(new)

    def output(self) -> relax.Var:
        """The function result (an NHWC value computed in NCHW is permuted back here)."""
        if self.result in self.stand_in:
            return self.bb.emit_output(self._nhwc(self.result))
        value = self.remap[self.result]  # a dropped permute leaves a dataflow value: output it
        return self.bb.emit_output(value) if isinstance(value, relax.DataflowVar) else value

    def _sunk(self, call):
        """The NCHW expression standing for ``call``'s NHWC result, or None when it is not one."""
        name, args = call.op.name, call.args
        if name == "relax.permute_dims" and _axes(call) == TO_NHWC and len(args[0].ty.shape) == 4 \
                and args[0] not in self.stand_in:
            return self.value(args[0])
        if name in UNARY and args[0] in self.stand_in:
            return relax.Call(call.op, [self.stand_in[args[0]], *args[1:]], call.attrs, call.ty_args)
        if name in BINARY and any(a in self.stand_in for a in args):
            operands = [self.stand_in.get(a) if isinstance(a, relax.Var)
                        else _nchw_constant(a) if isinstance(a, tvm.ir.Constant) else None for a in args]
            return None if any(o is None for o in operands) else relax.Call(call.op, operands, call.attrs)
        if name in ("relax.nn.avg_pool2d", "relax.image.resize2d") and call.attrs.layout == "NHWC" \
                and getattr(call.attrs, "out_layout", "NHWC") == "NHWC" and args[0] in self.stand_in:
            return self._nchw_spatial(call, self.stand_in[args[0]])
        return None

    @staticmethod
    def _nchw_spatial(call, x):
        a = call.attrs
        if call.op.name == "relax.nn.avg_pool2d":
            return relax.op.nn.avg_pool2d(x, a.pool_size, a.strides, a.padding, a.dilation, a.ceil_mode,
                                          a.count_include_pad, layout="NCHW", out_layout="NCHW")
        roi = tuple(float(v) for v in a.roi)
        return relax.op.image.resize2d(x, call.args[1], roi, "NCHW", a.method, a.coordinate_transformation_mode,
                                       a.rounding_method, a.cubic_alpha, a.cubic_exclude, a.extrapolation_value,
                                       a.out_dtype if str(a.out_dtype) else None)


def sink_layout_permutes(func: relax.Function, params=None, prologue=None) -> relax.Function:
    """``func`` with its NHWC regions in NCHW. ``params``/``prologue(bb, sinker, *params)`` replace the
    parameters (e.g. a differently laid-out input) by seeding ``sinker.stand_in`` / ``sinker.remap``."""
    bb = relax.BlockBuilder()
    params = list(func.params) if params is None else params
    with bb.function("main", params, attrs=dict(func.attrs) if func.attrs else None):
        with bb.dataflow():
            sinker = LayoutSinker(bb, func.body.body)
            if prologue is not None:
                prologue(bb, sinker, *params)
            for block in func.body.blocks:
                for binding in block.bindings:
                    sinker.visit(binding.var, binding.value)
            result = sinker.output()
        bb.emit_func_output(result)
    return bb.get()["main"]


@tvm.transform.module_pass(opt_level=0, name="SinkLayoutPermutes")
class SinkLayoutPermutes:
    """Apply :func:`sink_layout_permutes` to ``main``."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = mod.clone()
        out["main"] = sink_layout_permutes(mod["main"])
        return out
