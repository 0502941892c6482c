"""Integerize: walk a float Relax ``main`` and write the equivalent integer program.

Scale propagation over the float graph (weights bound as constants, input normalisation already
folded into the first convolution by :mod:`fold_input_normalization`):

* ``conv2d`` / ``matmul`` with a constant weight, and the constant bias adds that follow them, become
  one :class:`Conv2d` / :class:`Dense`: int8 x int8 weights (per output channel) -> int32 + int32 bias
  -> dyadic requantize to int8, or to int16 where the value feeds the residual stream (an ``add`` of
  two activations, a LayerNorm or a concatenation).
* ``matmul`` of two activations (int8, or Shiftmax's uint8/int16 probabilities) -> :class:`Matmul`
  (int32 accumulator, requantized on first use; its bound is checked by :mod:`overflow`);
  ``multiply`` by a positive scalar only changes the scale (no integer op).
* ``add`` (two activations, or one and an int8-quantized constant) -> :class:`Add`: each operand
  requantized to the output scale in int32, summed, clamped to int16/int8.
* ``nn.layer_norm`` / ``nn.softmax`` / ``nn.gelu`` -> the integer ops of ``relax_passes.intops``.
* Shape ops (reshape, permute_dims, take, strided_slice, broadcast_to, concat) pass scales through;
  nearest ``image.resize2d`` becomes two integer gathers.
* The model's logits become a uint8 class map: ``argmax`` over channels, taken before the nearest
  upsampling when the logits are upsampled (a gather commutes with argmax: same result, 16x cheaper).
  A uint8 output (a sigmoid's probability map) is kept as it is.
* CNN rules (:mod:`cnn_ops`, :mod:`lookup_table`; the MediaPipe selfie model): padded / grouped
  (depthwise) ``conv2d`` (a :class:`cnn_ops.Pad` with the input's real zero first), ``conv2d_transpose``,
  ``relu`` (a conv followed by a ReLU requantizes straight to the ReLU's range), hard-swish (the
  ``x * clip(x + 3, 0, 6) / 6`` chain), global ``avg_pool2d``, ``multiply`` of two activations,
  ``sigmoid`` (uint8 table of the int8 input), linear ``image.resize2d``.
* ``activations="int16"``: activations int16 instead of int8 outside the residual stream (int16 x int8
  convolutions); ``bias_correction=True``: each conv bias corrected by :func:`weight_error_shift`.

Every scale comes from the calibration statistics of the float variable the value stands for, widened
by ``RANGE_HEADROOM`` (``headroom=False``: the observer's clip as it is).
"""
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from common.errors import UserError

from . import cnn_ops, lookup_table
from . import integer_program as ip
from . import nonlinear
from .calibrate import Calibration
from .requantize import DTYPE_RANGE, Dyadic, uniform_as_scalar

SHAPE_OPS = ("relax.reshape", "relax.permute_dims", "relax.take", "relax.strided_slice", "relax.broadcast_to",
             "relax.squeeze", "relax.expand_dims")
WIDE_CONSUMERS = ("relax.nn.layer_norm", "relax.concat")
WEIGHT_QMAX = 127
MAX_CHANNEL_EXPONENT = 16  # a channel 2**16 below the tensor's largest gets the scale of 2**-16 of it
BIAS_DTYPE = "int16"
BIAS_ERROR_LIMIT = 2.0**-6  # output LSBs: worst-case rounding error of a bias stored narrow
# One calibration image under-estimates the ranges other images reach: widen every calibrated clip.
# int16 has bits to spare (4x = 2 bits); int8 pays in resolution (1.25x). Measured on 300 test scenes
# (provisional weights, 1 calibration image): pixel agreement with float 97.8 % -> 98.8 %.
RANGE_HEADROOM = {"int8": 1.25, "int16": 4.0}


@dataclass(frozen=True)
class IntValue:
    """A program value standing for float variable ``source``; ``real = (q + zero_point) * scale``."""

    name: str
    qtype: ip.QType
    source: str
    zero_point: int = 0


def qmax(dtype: str) -> int:
    return DTYPE_RANGE[dtype][1]


def quantize_weight(weight: np.ndarray, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: ``(q int8, scale float64 per channel)``.

    Channel ``c`` gets the tensor's scale ``max|W| / 127`` divided by the largest power of two ``2**e_c``
    that keeps its own ``max|W_c|`` within 127: every channel uses more than half of the int8 range (at
    most one bit of resolution below its own ``max|W_c| / 127``), and the requantization ratios of all
    channels differ by powers of two only, so their :class:`Dyadic` stores one multiplier and an int8
    shift per channel.
    """
    others = tuple(a for a in range(weight.ndim) if a != channel_axis % weight.ndim)
    top = np.max(np.abs(weight.astype(np.float64)), axis=others)
    tensor_top = float(top.max()) if top.size else 0.0
    if tensor_top == 0:
        scale = np.ones_like(top)
    else:
        exponent = np.floor(np.log2(tensor_top / np.maximum(top, tensor_top * 2.0**-MAX_CHANNEL_EXPONENT)))
        scale = tensor_top / WEIGHT_QMAX * 2.0**-exponent
    shape = [1] * weight.ndim
    shape[channel_axis] = -1
    q = np.clip(np.round(weight / scale.reshape(shape)), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return q, scale


def quantize_bias(bias: np.ndarray, scale: np.ndarray) -> np.ndarray:
    q = np.round(bias.astype(np.float64) / scale)
    if np.any(np.abs(q) >= 2**31):
        raise UserError("a bias does not fit int32 at its accumulator scale; recalibrate on a more typical image")
    return q.astype(np.int32)


def narrow_bias(bias: np.ndarray, dyadic: Dyadic) -> dict:
    """An int32 accumulator bias stored as int16 ``b`` with one shift ``s`` (the accumulator adds ``b << s``).

    ``s`` is the smallest that fits; the rounding error is at most ``2**(s-1)`` accumulator LSBs, that is
    ``2**(s-1) * ratio`` output LSBs (``ratio`` = the requantization's). If that bound exceeds
    ``BIAS_ERROR_LIMIT`` output LSBs the bias stays int32 (``s = 0``). Returns the op's ``bias``/``bias_shift``.
    """
    bias = np.asarray(bias, dtype=np.int64)
    if np.any(np.abs(bias) >= 2**31):
        raise UserError("a bias does not fit int32 at its accumulator scale; recalibrate on a more typical image")
    lo, hi = DTYPE_RANGE[BIAS_DTYPE]
    shift = 0
    while np.any((stored := (bias + ((1 << shift) >> 1)) >> shift) < lo) or np.any(stored > hi):
        shift += 1
    error_bound = (2.0 ** (shift - 1) if shift else 0.0) * float(np.max(dyadic.ratio))
    if error_bound > BIAS_ERROR_LIMIT or np.any((stored << shift) > 2**31 - 1):  # rounded up past int32
        return {"bias": uniform_as_scalar(bias.astype(np.int32)), "bias_shift": 0}
    return {"bias": uniform_as_scalar(stored.astype(BIAS_DTYPE)), "bias_shift": shift}


def weight_error_shift(weight, q, scale, x, groups: int = 1) -> np.ndarray:
    """Per output channel, the mean shift ``sum((q * scale - weight) * E[x])`` that quantizing an OIHW ``weight``
    adds to a convolution of ``x`` (NCHW float calibration values): subtracted from the bias ("bias
    correction", Nagel et al. 2019), it removes the systematic part of the weight rounding error."""
    error = (q * scale.reshape(-1, 1, 1, 1) - weight.astype(np.float64)).sum(axis=(2, 3))  # (O, C/groups)
    mean = x.astype(np.float64).mean(axis=(0, 2, 3)).reshape(groups, 1, -1)  # (groups, 1, C/groups)
    return (error.reshape(groups, -1, error.shape[1]) * mean).sum(axis=2).reshape(-1)


def narrow_indices(indices: np.ndarray) -> np.ndarray:
    """Compile-time gather indices in the narrowest of int8/int16/int32 that holds them (they are stored)."""
    indices = np.asarray(indices)
    lo, hi = (int(indices.min()), int(indices.max())) if indices.size else (0, 0)
    dtype = next(d for d in ("int8", "int16", "int32") if DTYPE_RANGE[d][0] <= lo and hi <= DTYPE_RANGE[d][1])
    return indices.astype(dtype)


def _ints(expr) -> list[int]:
    return [int(v.value) for v in expr.fields] if isinstance(expr, relax.Tuple) else [int(v) for v in expr]


class Integerizer:
    """Builds an :class:`integer_program.Program` from a float ``main`` and its calibration."""

    def __init__(self, func: relax.Function, calibration: Calibration, *, observer="minmax", gelu="lambda_shift",
                 softmax_dtype="int16", headroom=True, activations="int8", bias_correction=False):
        self.calibration = calibration
        self.observer = observer
        self.headroom = RANGE_HEADROOM if headroom else {}
        self.gelu = gelu
        self.softmax_dtype = softmax_dtype
        self.activations = activations  # dtype of activations outside the residual stream: int8 | int16
        self.bias_correction = bias_correction
        self.bindings = [b for block in func.body.blocks for b in block.bindings]
        self.output_name = func.body.body.name if isinstance(func.body.body, relax.Var) else None
        self.users: dict[str, list] = {}
        for binding in self.bindings:
            for arg in self._var_args(binding.value):
                self.users.setdefault(arg.name, []).append(binding)
        image = func.params[0]
        shape = tuple(int(d) for d in image.ty.shape)
        if len(shape) != 4 or shape[0] != 1:
            raise UserError(f"the model input must be one NCHW image [1,C,H,W], got {list(shape)}")
        self.program = ip.Program(input="image", input_shape=(1, shape[2], shape[3], shape[1]))
        self.values: dict[str, object] = {}  # float var name -> IntValue | np.ndarray (float constant)
        self.fused: set[str] = set()
        self.counter = 0
        self.values[image.name] = self._add(ip.ImageInput, (self.program.input,), "int8", shape, 1.0,
                                            source=image.name, zero_point=128)

    # ---- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _var_args(expr):
        if not isinstance(expr, relax.Call):
            return []
        out = []
        for arg in expr.args:
            fields = arg.fields if isinstance(arg, relax.Tuple) else [arg]
            out += [f for f in fields if isinstance(f, relax.Var)]
        return out

    def _add(self, cls, inputs, dtype, shape, scale, *, source, zero_point=0, **fields) -> IntValue:
        self.counter += 1
        name = f"{cls.__name__.lower()}_{self.counter}"
        qtype = ip.QType(dtype, tuple(int(d) for d in shape), np.asarray(scale, dtype=np.float64))
        inputs = tuple(v.name if isinstance(v, IntValue) else v for v in inputs)
        self.program.ops.append(cls(out=name, inputs=inputs, qtype=qtype, source=source, **fields))
        return IntValue(name, qtype, source, zero_point)

    def scale_of(self, source: str, dtype: str) -> float:
        clip = self.calibration.clip(source, qmax(dtype), self.observer) * self.headroom.get(dtype, 1.0)
        return clip / qmax(dtype)

    def wanted_dtype(self, name: str) -> str:
        """int16 when the value (through shape ops) feeds the residual stream, else int8."""
        for user in self.users.get(name, []):
            op = user.value.op.name
            if op in WIDE_CONSUMERS:
                return "int16"
            if op == "relax.add" and all(isinstance(a, relax.Var) for a in user.value.args):
                return "int16"
            if op in SHAPE_OPS + ("relax.add", "relax.multiply") and self.wanted_dtype(user.var.name) == "int16":
                return "int16"
        return self.activations

    def output_type(self, name: str) -> tuple[str, float]:
        """dtype (:meth:`wanted_dtype`) and calibrated scale of the requantized value standing for ``name``."""
        dtype = self.wanted_dtype(name)
        return dtype, self.scale_of(name, dtype)

    def weighted_input(self, value: IntValue) -> IntValue:
        """The input of a convolution (int8 x int8 weights, or int16 x int8 with ``activations="int16"``)."""
        keep = ("int8", "int16") if self.activations == "int16" else ("int8",)
        return value if value.qtype.dtype in keep else self.as_dtype(value, self.activations)

    def as_dtype(self, value: IntValue, dtype: str) -> IntValue:
        """``value`` requantized to ``dtype`` (at its calibrated scale), unless it already is."""
        if value.qtype.dtype == dtype:
            return value
        scale = self.scale_of(value.source, dtype)
        return self._add(ip.Requantize, (value,), dtype, value.qtype.shape, scale, source=value.source,
                         dyadic=Dyadic.from_ratio(value.qtype.scale / scale))

    def const_of(self, expr):
        if isinstance(expr, tvm.ir.Constant):
            return expr.value.numpy()
        value = self.values.get(expr.name) if isinstance(expr, relax.Var) else None
        return value if isinstance(value, np.ndarray) else None

    def _fuse_bias(self, var, channel_axis, channels):
        """Follow sole-user ``add``s of constants broadcasting along ``channel_axis``; sum them."""
        bias = np.zeros(channels)
        while True:
            users = self.users.get(var.name, [])
            if len(users) != 1 or users[0].value.op.name != "relax.add":
                return var, bias
            lhs, rhs = users[0].value.args
            const = self.const_of(rhs if lhs.same_as(var) else lhs)
            if const is None or const.size != channels or const.ndim == 0 or const.shape[channel_axis] != channels:
                return var, bias
            bias = bias + const.reshape(-1)
            self.fused.add(users[0].var.name)
            var = users[0].var

    # ---- the walk ------------------------------------------------------------------------------
    def run(self) -> ip.Program:
        for binding in self.bindings:
            if binding.var.name in self.fused:
                continue
            call = binding.value
            if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)):
                raise UserError(f"{binding.var.name}: unsupported binding {type(call).__name__}; "
                                "integerize expects a canonical frontend module (frontend.load)")
            result = self.visit(binding.var, call)
            if result is not None:
                self.values[binding.var.name] = result
        out = self.values.get(self.output_name)
        if not isinstance(out, IntValue):
            raise UserError("the model output is not computed from the image; nothing to integerize")
        if self.program.output == "":  # logits -> class map; a uint8 value (probability map) is kept
            self.program.output = (out if out.qtype.dtype == "uint8" else self._classes(out)).name
        return self.program

    def visit(self, var, call):
        name = call.op.name
        args = call.args
        if name in SHAPE_OPS:
            x = self.const_of(args[0])
            return self._shape_op(var, call, x, const=True) if x is not None \
                else self._shape_op(var, call, self.values[args[0].name])
        ints = [self.values.get(a.name) for a in self._var_args(call)]
        if name == "relax.add" and self._hard_swish(var, call):
            return None
        handler = {
            "relax.nn.conv2d": self._conv2d, "relax.matmul": self._matmul, "relax.add": self._add_op,
            "relax.multiply": self._multiply, "relax.concat": self._concat, "relax.image.resize2d": self._resize,
            "relax.nn.layer_norm": self._nonlinear, "relax.nn.softmax": self._nonlinear,
            "relax.nn.gelu": self._nonlinear, "relax.nn.gelu_tanh": self._nonlinear,
            "relax.nn.conv2d_transpose": self._conv2d_transpose, "relax.nn.relu": self._relu,
            "relax.sigmoid": self._sigmoid, "relax.nn.avg_pool2d": self._avg_pool2d,
        }.get(name)
        if handler is None or not any(isinstance(v, IntValue) for v in ints):
            raise UserError(f"{var.name}: operator {name} is not supported by the integer rewrite "
                            "(supported: conv2d, conv2d_transpose, matmul, add, multiply, layer_norm, softmax, gelu, "
                            "relu, hard-swish, sigmoid, global avg_pool2d, concat, nearest/linear resize2d, shape ops)")
        weighted = name in ("relax.nn.conv2d", "relax.nn.conv2d_transpose") \
            or (name == "relax.matmul" and self.const_of(args[1]) is not None)
        if not weighted and any(isinstance(v, IntValue) and v.zero_point for v in ints):
            raise UserError(f"{var.name}: {name} reads the raw image; the image must first go through a conv2d "
                            "or a matmul with constant weights")
        return handler(var, call)

    def _conv2d(self, var, call):
        x, weight = self.values[call.args[0].name], self.const_of(call.args[1])
        attrs = call.attrs
        if weight is None or any(int(d) != 1 for d in attrs.dilation) or attrs.data_layout != "NCHW" \
                or attrs.kernel_layout != "OIHW":
            raise UserError(f"{var.name}: only NCHW/OIHW conv2d with a constant weight and dilation 1 is supported")
        x = self.weighted_input(x)
        padding = tuple(int(p) for p in attrs.padding)
        if any(padding):  # the border holds the input's real zero
            shape = list(x.qtype.shape)
            shape[2:] = shape[2] + padding[0] + padding[2], shape[3] + padding[1] + padding[3]
            x = self._add(cnn_ops.Pad, (x,), x.qtype.dtype, shape, x.qtype.scale, source=x.source,
                          zero_point=x.zero_point, pad=padding, value=-x.zero_point)
        q, w_scale = quantize_weight(weight, 0)
        last, bias = self._fuse_bias(var, 1, weight.shape[0])
        if self.bias_correction and x.source in self.calibration.values:
            bias = bias - weight_error_shift(weight, q, w_scale, self.calibration.values[x.source], int(attrs.groups))
        acc_scale = x.qtype.scale * w_scale
        bias_q = quantize_bias(bias, acc_scale).astype(np.int64) + x.zero_point * q.astype(np.int64).sum((1, 2, 3))
        dtype, out_scale = self._weighted_output_type(last)
        dyadic = Dyadic.from_ratio((acc_scale / out_scale).reshape(1, -1, 1, 1))
        value = self._add(ip.Conv2d, (x,), dtype, var.ty.shape, out_scale, source=last.name,
                          weight=q, strides=tuple(int(s) for s in attrs.strides),
                          dyadic=dyadic, **narrow_bias(bias_q, dyadic),
                          **({"groups": int(attrs.groups)} if int(attrs.groups) != 1 else {}))
        self.values[last.name] = value
        return value

    def _weighted_output_type(self, last):
        """dtype and scale of a weighted op's requantized output; a sole ReLU user lends its (>= 0) range:
        negatives saturate at the bottom of the range and the ReLU then clamps them to 0 (same result)."""
        users = self.users.get(last.name, [])
        if len(users) == 1 and users[0].value.op.name == "relax.nn.relu":
            return self.activations, self.scale_of(users[0].var.name, self.activations)
        return self.output_type(last.name)

    def _conv2d_transpose(self, var, call):
        x, weight = self.values[call.args[0].name], self.const_of(call.args[1])
        attrs = call.attrs
        if weight is None or int(attrs.groups) != 1 or any(int(d) != 1 for d in attrs.dilation) \
                or any(int(p) for p in attrs.output_padding) or attrs.data_layout != "NCHW" \
                or attrs.kernel_layout != "IOHW":
            raise UserError(f"{var.name}: only NCHW/IOHW conv2d_transpose with a constant weight, groups=1, "
                            "dilation 1 and no output padding is supported")
        x = self.weighted_input(x)
        q, w_scale = quantize_weight(weight, 1)
        last, bias = self._fuse_bias(var, 1, weight.shape[1])
        acc_scale = x.qtype.scale * w_scale
        dtype, out_scale = self._weighted_output_type(last)
        value = self._add(cnn_ops.Conv2dTranspose, (x,), dtype, var.ty.shape, out_scale, source=last.name,
                          weight=q, bias=quantize_bias(bias, acc_scale), strides=tuple(int(s) for s in attrs.strides),
                          padding=tuple(int(p) for p in attrs.padding),
                          dyadic=Dyadic.from_ratio((acc_scale / out_scale).reshape(1, -1, 1, 1)))
        self.values[last.name] = value
        return value

    def _relu(self, var, call):
        x = self.values[call.args[0].name]
        return self._add(cnn_ops.Relu, (x,), x.qtype.dtype, x.qtype.shape, x.qtype.scale, source=var.name)

    def _sigmoid(self, var, call):
        """uint8 ``round(255 * sigmoid)`` by table (the gate of a squeeze-excite block, or the output map) of the
        input requantized to int8 over at most ``[-SIGMOID_CLIP, SIGMOID_CLIP]`` (beyond it the table saturates)."""
        x = self.values[call.args[0].name]
        scale = min(self.scale_of(x.source, "int8"), lookup_table.SIGMOID_CLIP / qmax("int8"))
        if x.qtype.dtype != "int8" or float(x.qtype.scale) != scale:
            x = self._add(ip.Requantize, (x,), "int8", x.qtype.shape, scale, source=x.source,
                          dyadic=Dyadic.from_ratio(x.qtype.scale / scale))
        table = lookup_table.tabulate(lookup_table.sigmoid, scale, lookup_table.SIGMOID_SCALE, "uint8")
        return self._add(lookup_table.Lookup, (x,), "uint8", x.qtype.shape, lookup_table.SIGMOID_SCALE,
                         source=var.name, table=table)

    def _sole_user(self, var, op: str, check=lambda call: True):
        users = self.users.get(var.name, [])
        ok = len(users) == 1 and users[0].value.op.name == op and check(users[0].value)
        return users[0] if ok else None

    def _scalar_is(self, expr, value: float) -> bool:
        const = self.const_of(expr)
        return const is not None and const.size == 1 and float(const.reshape(-1)[0]) == value

    def _hard_swish(self, var, call) -> bool:
        """``x * clip(x + 3, 0, 6) / 6`` (four float ops) -> one :class:`cnn_ops.HardSwish`; False if ``call`` is
        not its start."""
        x_arg, three = call.args if self._scalar_is(call.args[1], 3.0) else call.args[::-1]
        if not (self._scalar_is(three, 3.0) and isinstance(x_arg, relax.Var)
                and isinstance(self.values.get(x_arg.name), IntValue)):
            return False
        clip = self._sole_user(var, "relax.clip", lambda c: [float(a.value) for a in c.args[1:]] == [0.0, 6.0])
        product = None if clip is None else self._sole_user(clip.var, "relax.multiply",
                                                            lambda c: any(a.same_as(x_arg) for a in c.args))
        scaled = None if product is None else self._sole_user(product.var, "relax.divide",
                                                              lambda c: self._scalar_is(c.args[1], 6.0))
        if scaled is None:
            return False
        self.fused.update(b.var.name for b in (clip, product, scaled))
        x = self.values[x_arg.name]
        scale = float(x.qtype.scale)
        dtype, out_scale = self.output_type(scaled.var.name)
        self.values[scaled.var.name] = self._add(
            cnn_ops.HardSwish, (x,), dtype, x.qtype.shape, out_scale, source=scaled.var.name,
            three=int(round(3 / scale)), six=int(round(6 / scale)),
            dyadic=Dyadic.from_ratio(scale * scale / (6 * out_scale)))
        return True

    def _avg_pool2d(self, var, call):
        attrs = call.attrs
        x = self.values[call.args[0].name]
        height, width = x.qtype.shape[2:]
        if attrs.layout != "NCHW" or [int(p) for p in attrs.pool_size] != [height, width] \
                or any(int(p) for p in attrs.padding):
            raise UserError(f"{var.name}: only global (pool = H x W, no padding) NCHW avg_pool2d is supported")
        dtype, out_scale = self.output_type(var.name)
        return self._add(cnn_ops.GlobalAvgPool, (x,), dtype, var.ty.shape, out_scale, source=var.name,
                         pixels=height * width, dyadic=Dyadic.from_ratio(x.qtype.scale / (height * width * out_scale)))

    def _matmul(self, var, call):
        a, b = call.args
        weight = self.const_of(b)
        if weight is not None:
            if weight.ndim != 2:
                raise UserError(f"{var.name}: matmul with a constant of rank {weight.ndim}; only [K,N] weights")
            x = self.as_dtype(self.values[a.name], "int8")
            q, w_scale = quantize_weight(weight, 1)
            last, bias = self._fuse_bias(var, -1, weight.shape[1])
            acc_scale = x.qtype.scale * w_scale
            dtype, out_scale = self.output_type(last.name)
            bias_q = quantize_bias(bias, acc_scale).astype(np.int64) + x.zero_point * q.astype(np.int64).sum(0)
            dyadic = Dyadic.from_ratio(acc_scale / out_scale)
            value = self._add(ip.Dense, (x,), dtype, var.ty.shape, out_scale, source=last.name, weight=q,
                              dyadic=dyadic, **narrow_bias(bias_q, dyadic))
            self.values[last.name] = value
            return value
        lhs, rhs = (self.values[v.name] for v in (a, b))
        lhs, rhs = (v if v.qtype.dtype in ("int8", "uint8", "int16") else self.as_dtype(v, "int8") for v in (lhs, rhs))
        return self._add(ip.Matmul, (lhs, rhs), "int32", var.ty.shape, lhs.qtype.scale * rhs.qtype.scale,
                         source=var.name)

    def _multiply(self, var, call):
        a, b = call.args
        if all(isinstance(self.values.get(getattr(v, "name", "")), IntValue) for v in (a, b)):
            a, b = (self.values[v.name] for v in (a, b))
            dtype, out_scale = self.output_type(var.name)
            return self._add(cnn_ops.Multiply, (a, b), dtype, var.ty.shape, out_scale, source=var.name,
                             dyadic=Dyadic.from_ratio(a.qtype.scale * b.qtype.scale / out_scale))
        x, c = (self.values.get(a.name), self.const_of(b)) if isinstance(a, relax.Var) else (None, None)
        if not isinstance(x, IntValue):
            x, c = self.values.get(getattr(b, "name", "")), self.const_of(a)
        if c is None or c.size != 1 or float(c.reshape(-1)[0]) <= 0:
            raise UserError(f"{var.name}: only multiplication by a positive scalar constant is supported")
        return IntValue(x.name, ip.QType(x.qtype.dtype, x.qtype.shape, x.qtype.scale * float(c.reshape(-1)[0])),
                        var.name, x.zero_point)

    def _add_op(self, var, call):
        """Activations and constants alike: int8 constants (own scale) join as requantized operands."""
        dtype, out_scale = self.output_type(var.name)
        operands = []
        for arg in call.args:
            const = self.const_of(arg)
            if const is not None:
                operands.append(self._constant(const, "int8", var.name))
                continue
            value = self.values[arg.name]
            operands.append(self.as_dtype(value, "int16") if value.qtype.dtype == "int32" else value)
        return self._add(ip.Add, tuple(operands), dtype, var.ty.shape, out_scale, source=var.name,
                         dyadics=tuple(Dyadic.from_ratio(v.qtype.scale / out_scale) for v in operands))

    def _constant(self, value: np.ndarray, dtype: str, source: str, scale: float | None = None) -> IntValue:
        """A float constant quantized symmetrically to ``dtype`` (at ``scale``, or its own range)."""
        if scale is None:
            top = float(np.max(np.abs(value))) if value.size else 0.0
            scale = top / qmax(dtype) if top > 0 else 1.0
        lo, hi = DTYPE_RANGE[dtype]
        q = np.clip(np.round(value / scale), lo, hi).astype(dtype)
        return self._add(ip.Constant, (), dtype, q.shape, scale, source=source, value=q)

    def _concat(self, var, call):
        dtype, out_scale = self.output_type(var.name)
        parts = []
        for field in call.args[0].fields:
            const = self.const_of(field)
            if const is not None:
                parts.append(self._constant(const, dtype, var.name, out_scale))
                continue
            value = self.values[field.name]
            if value.qtype.dtype != dtype or value.qtype.scale != out_scale:
                value = self._add(ip.Requantize, (value,), dtype, value.qtype.shape, out_scale, source=var.name,
                                  dyadic=Dyadic.from_ratio(value.qtype.scale / out_scale))
            parts.append(value)
        return self._add(ip.Concat, tuple(parts), dtype, var.ty.shape, out_scale, source=var.name,
                         axis=int(call.attrs.axis))

    def _shape_op(self, var, call, x, const=False):
        """Shape ops on activations become program ops; on constants they are evaluated here."""
        name = call.op.name
        shape = tuple(int(d) for d in var.ty.shape)
        in_shape = x.shape if const else x.qtype.shape
        if name in ("relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.broadcast_to") and shape == in_shape:
            return x
        if name in ("relax.reshape", "relax.squeeze", "relax.expand_dims"):
            cls, fields = ip.Reshape, {}
        elif name == "relax.broadcast_to":
            cls, fields = ip.BroadcastTo, {}
        elif name == "relax.permute_dims":
            axes = call.attrs.axes
            cls, fields = ip.PermuteDims, {"axes": tuple(int(a) for a in axes) if axes is not None
                                           else tuple(range(len(shape)))[::-1]}
        elif name == "relax.take":
            indices = self.const_of(call.args[1])
            if indices is None:
                raise UserError(f"{var.name}: take with computed indices is not supported")
            cls, fields = ip.Take, {"indices": narrow_indices(indices), "axis": int(call.attrs.axis) % len(in_shape)}
        else:  # strided_slice
            axes, begin, end = (_ints(a) for a in call.args[1:4])
            strides = _ints(call.args[4]) if len(call.args) > 4 else [1] * len(axes)
            if any(s != 1 for s in strides) or any(b < 0 or e < 0 for b, e in zip(begin, end)):
                raise UserError(f"{var.name}: only unit-stride strided_slice with non-negative bounds is supported")
            axes = [a % len(in_shape) for a in axes]
            cls, fields = ip.StridedSlice, {"axes": tuple(axes), "begin": tuple(begin),
                                            "end": tuple(min(e, in_shape[a]) for a, e in zip(axes, end))}
        if const:
            qtype = ip.QType("float32", shape, np.asarray(1.0))
            return cls(out="", inputs=(), qtype=qtype, **fields).reference(x)
        return self._add(cls, (x,), x.qtype.dtype, shape, x.qtype.scale, source=var.name,
                         zero_point=x.zero_point, **fields)

    def _resize(self, var, call):
        attrs = call.attrs
        if attrs.method == "linear" and attrs.layout == "NCHW":
            return self._bilinear(var, call)
        if attrs.method != "nearest_neighbor" or attrs.layout not in ("NCHW", "NHWC"):
            raise UserError(f"{var.name}: only nearest-neighbour NCHW/NHWC or linear NCHW resize2d is supported")
        x = self.values[call.args[0].name]
        channel_axis, spatial = (1, (2, 3)) if attrs.layout == "NCHW" else (3, (1, 2))
        out_shape = [int(d) for d in var.ty.shape]
        indices = [nearest_indices(x.qtype.shape[a], out_shape[a], attrs.coordinate_transformation_mode,
                                   attrs.rounding_method) for a in spatial]
        is_output = var.name == self.output_name
        if is_output:  # argmax at the low resolution, then gather the class map
            x = self._classes(x, channel_axis)
            spatial = tuple(a - (a > channel_axis) for a in spatial)
        for axis, index in zip(spatial, indices):
            shape = list(x.qtype.shape)
            shape[axis] = len(index)
            x = self._add(ip.Take, (x,), x.qtype.dtype, shape, x.qtype.scale, source=var.name,
                          indices=narrow_indices(index), axis=axis)
        if is_output:
            self.program.output = x.name
        return x

    def _bilinear(self, var, call):
        x = self.weighted_input(self.values[call.args[0].name])
        mode = call.attrs.coordinate_transformation_mode
        out_shape = tuple(int(d) for d in var.ty.shape)
        taps = [cnn_ops.linear_taps(x.qtype.shape[a], out_shape[a], mode) for a in (2, 3)]
        dtype, out_scale = self.output_type(var.name)
        ratio = x.qtype.scale / (2.0 ** (2 * cnn_ops.RESIZE_FRAC_BITS) * out_scale)
        return self._add(cnn_ops.BilinearResize, (x,), dtype, out_shape, out_scale, source=var.name,
                         taps_h=taps[0], taps_w=taps[1], dyadic=Dyadic.from_ratio(ratio))

    def _classes(self, logits: IntValue, axis: int = 1) -> IntValue:
        shape = logits.qtype.shape[:axis] + logits.qtype.shape[axis + 1:]
        return self._add(ip.ArgMax, (logits,), "uint8", shape, 1.0, source=logits.source, axis=axis)

    def _nonlinear(self, var, call):
        x = self.values[call.args[0].name]
        op = nonlinear.lower(self, var, call, x)
        return op


def nearest_indices(n_in: int, n_out: int, mode: str, rounding: str) -> np.ndarray:
    """int32 source index of each output index of a nearest-neighbour resize (TVM's resize2d semantics)."""
    dst = np.arange(n_out, dtype=np.float64)
    ratio = n_in / n_out
    if mode == "half_pixel":
        src = (dst + 0.5) * ratio - 0.5
    elif mode == "asymmetric":
        src = dst * ratio
    elif mode == "align_corners":
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        raise UserError(f"resize2d coordinate mode {mode!r} is not supported")
    if rounding in ("round", ""):
        index = np.where(src >= 0, np.floor(src + 0.5), np.ceil(src - 0.5))
    elif rounding == "round_prefer_floor":
        index = np.ceil(src - 0.5)
    elif rounding == "round_prefer_ceil":
        index = np.floor(src + 0.5)
    elif rounding == "floor":
        index = np.floor(src)
    elif rounding == "ceil":
        index = np.ceil(src)
    else:
        raise UserError(f"resize2d rounding method {rounding!r} is not supported")
    return np.clip(index, 0, n_in - 1).astype(np.int32)


def integerize(func: relax.Function, calibration: Calibration, **options) -> ip.Program:
    """The integer program equivalent to the float ``func`` under ``calibration``."""
    return Integerizer(func, calibration, **options).run()
