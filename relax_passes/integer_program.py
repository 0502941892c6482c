"""The integer program: a list of integer op records holding their compile-time constants.

Each record is one integer operation with a numpy ``reference`` and a Relax ``emit`` written side by
side from the same constants, so the numpy interpreter (``Program.run``) and the Relax module
(``Program.to_relax``) agree by construction — and ``tests/test_passes_bit_exact.py`` checks it.

Values carry a :class:`QType`: integer dtype and real scale (``real = q * scale``; per tensor, or per
channel for int32 accumulators before their requantization). Scales are float64 numbers used only
here, at compile time; neither the reference nor the Relax module touches a float.
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from .requantize import (DTYPE_RANGE, Dyadic, dtype_magnitude, emit_requantize, emit_widened, requantize_reference,
                         uniform_as_scalar)


@dataclass(frozen=True)
class QType:
    """Integer dtype, shape and real scale of a program value."""

    dtype: str
    shape: tuple
    scale: np.ndarray  # float64; 0-d per tensor


@dataclass
class IntOp:
    """One integer operation: ``out = op(*inputs)``; ``source`` is the float variable it stands for."""

    out: str
    inputs: tuple
    qtype: QType
    source: str = ""

    def reference(self, *xs):
        raise NotImplementedError

    def emit(self, bb, *xs):
        raise NotImplementedError

    def constants(self) -> list:
        """The integer arrays this op stores (weights, biases, multipliers, tables)."""
        return []


def _const(bb_value, dtype):
    return relax.const(np.asarray(bb_value, dtype=dtype), dtype)


def accumulator_bias(op) -> np.ndarray:
    """The int32 accumulator bias of a Conv2d / Dense (int64): its stored ``bias << bias_shift``."""
    return np.asarray(op.bias).astype(np.int64) << op.bias_shift


def emit_accumulator_bias(op, shape) -> relax.Expr:
    """``accumulator_bias`` as an int32 Relax operand (an immediate when uniform), reshaped to ``shape``."""
    bias = np.asarray(op.bias)
    if bias.ndim == 0:
        return relax.const(np.int32(int(bias) << op.bias_shift), "int32")
    wide = emit_widened(bias.reshape(shape), "int32")
    return wide if op.bias_shift == 0 else relax.op.left_shift(wide, relax.const(op.bias_shift, "int32"))


def accumulator_magnitude(op, input_dtype) -> int:
    """The worst ``|accumulator|`` of a Conv2d / Dense over every input of ``input_dtype``:
    ``max_c sum |w| * max|x| + |bias|``."""
    axes = tuple(range(1, op.weight.ndim)) if isinstance(op, Conv2d) else (0,)
    weight_sums = np.abs(op.weight.astype(np.int64)).sum(axis=axes)
    return int(np.max(weight_sums * dtype_magnitude(input_dtype) + np.abs(accumulator_bias(op))))


@dataclass
class ImageInput(IntOp):
    """uint8 NHWC camera image -> int8 NCHW ``q = x - 128`` (the offset is folded into the first conv)."""

    def reference(self, image):
        return (image.astype(np.int16) - 128).astype(np.int8).transpose(0, 3, 1, 2)

    def emit(self, bb, image):
        wide = bb.emit(relax.op.astype(image, "int16"))
        centred = bb.emit(relax.op.subtract(wide, _const(128, "int16")))
        narrow = bb.emit(relax.op.astype(centred, "int8"))
        return bb.emit(relax.op.permute_dims(narrow, [0, 3, 1, 2]))


@dataclass
class Conv2d(IntOp):
    """int8 NCHW x int8 OIHW -> int32 (+ int32 bias) -> dyadic requantize per output channel."""

    weight: np.ndarray = None  # int8 OIHW
    bias: np.ndarray = None  # int16/int32 (O,) or 0-d; the accumulator adds ``bias << bias_shift``
    dyadic: Dyadic = None  # per channel, shaped (1, O, 1, 1)
    strides: tuple = (1, 1)
    bias_shift: int = 0
    groups: int = 1  # input and output channels split into this many groups (= channels: depthwise)

    def accumulate(self, x):
        out_c, group_c, kh, kw = self.weight.shape
        sh, sw = self.strides
        n, _, h, w = x.shape
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        grouped = self.weight.reshape(self.groups, out_c // self.groups, group_c, kh, kw).astype(np.int64)
        acc = np.zeros((n, self.groups, out_c // self.groups, oh, ow), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                window = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw].astype(np.int64)
                window = window.reshape(n, self.groups, group_c, oh, ow)
                acc += np.einsum("ngchw,goc->ngohw", window, grouped[:, :, :, i, j])
        return acc.reshape(n, out_c, oh, ow) + accumulator_bias(self).reshape(1, -1, 1, 1)

    def reference(self, x):
        return requantize_reference(self.accumulate(x), self.dyadic, self.qtype.dtype)

    def is_patch_embedding(self, shape) -> bool:
        """One group and stride = kernel over the whole input: the windows tile it without overlap."""
        _, _, kh, kw = self.weight.shape
        return self.groups == 1 and tuple(self.strides) == (kh, kw) and shape[2] % kh == 0 and shape[3] % kw == 0

    def emit(self, bb, x):
        magnitude = accumulator_magnitude(self, x.ty.dtype)
        if self.is_patch_embedding([int(d) for d in x.ty.shape]):
            return self._emit_patch_matmul(bb, x, magnitude)
        conv = bb.emit(relax.op.nn.conv2d(x, relax.const(self.weight), strides=self.strides, groups=self.groups,
                                          out_dtype="int32"))
        acc = bb.emit(relax.op.add(conv, emit_accumulator_bias(self, (1, -1, 1, 1))))
        return emit_requantize(bb, acc, self.dyadic, self.qtype.dtype, magnitude)

    def _emit_patch_matmul(self, bb, x, magnitude):
        """The patch embedding as one GEMM: the patches (a pure reshuffle of ``x``, no im2col copy of overlapping
        windows) times the weight as ``[C*kh*kw, O]``, requantized per column, then back to NCHW."""
        n, c, h, w = (int(d) for d in x.ty.shape)
        out_c, _, kh, kw = self.weight.shape
        rows, cols = h // kh, w // kw
        windows = relax.op.permute_dims(relax.op.reshape(x, (n, c, rows, kh, cols, kw)), [0, 2, 4, 1, 3, 5])
        patches = bb.emit(relax.op.reshape(windows, (n, rows * cols, c * kh * kw)))
        weight = relax.const(np.ascontiguousarray(self.weight.reshape(out_c, -1).T))
        product = bb.emit(relax.op.matmul(patches, weight, out_dtype="int32"))
        acc = bb.emit(relax.op.add(product, emit_accumulator_bias(self, (-1,))))
        per_column = Dyadic(*(uniform_as_scalar(np.asarray(v).reshape(-1)) for v in (self.dyadic.multiplier,
                                                                                      self.dyadic.shift)))
        out = emit_requantize(bb, acc, per_column, self.qtype.dtype, magnitude)
        return bb.emit(relax.op.permute_dims(relax.op.reshape(out, (n, rows, cols, out_c)), [0, 3, 1, 2]))

    def constants(self):
        return [self.weight, self.bias, self.dyadic.multiplier, self.dyadic.shift]


@dataclass
class Dense(IntOp):
    """int8 [..., K] x int8 [K, N] -> int32 (+ int32 bias) -> dyadic requantize per output column."""

    weight: np.ndarray = None  # int8 [K, N]
    bias: np.ndarray = None  # int16/int32 (N,) or 0-d; the accumulator adds ``bias << bias_shift``
    dyadic: Dyadic = None  # per column, shaped (N,)
    bias_shift: int = 0

    def accumulate(self, x):
        return x.astype(np.int64) @ self.weight.astype(np.int64) + accumulator_bias(self)

    def reference(self, x):
        return requantize_reference(self.accumulate(x), self.dyadic, self.qtype.dtype)

    def emit(self, bb, x):
        product = bb.emit(relax.op.matmul(x, relax.const(self.weight), out_dtype="int32"))
        acc = bb.emit(relax.op.add(product, emit_accumulator_bias(self, (-1,))))
        return emit_requantize(bb, acc, self.dyadic, self.qtype.dtype, accumulator_magnitude(self, x.ty.dtype))

    def constants(self):
        return [self.weight, self.bias, self.dyadic.multiplier, self.dyadic.shift]


@dataclass
class Matmul(IntOp):
    """Activations x activations -> int32 accumulator (batched matmul; scale = product of the scales).

    Operands of different types (uint8 or int16 probabilities x int8 values) are widened to int16 first.
    """

    def reference(self, a, b):
        return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)

    def emit(self, bb, a, b):
        if a.ty.dtype != b.ty.dtype:
            a, b = (bb.emit(relax.op.astype(v, "int16")) for v in (a, b))
        return bb.emit(relax.op.matmul(a, b, out_dtype="int32"))


@dataclass
class Requantize(IntOp):
    """Rescale to another scale and dtype with the shared dyadic helper."""

    dyadic: Dyadic = None

    def reference(self, x):
        return requantize_reference(x, self.dyadic, self.qtype.dtype)

    def emit(self, bb, x):
        return emit_requantize(bb, x, self.dyadic, self.qtype.dtype)

    def constants(self):
        return [self.dyadic.multiplier, self.dyadic.shift]


@dataclass
class Add(IntOp):
    """``clamp(rq(a) + rq(b) + ...)``: each operand rescaled to the output scale in int32, summed, clamped."""

    dyadics: tuple = ()  # one per input

    def reference(self, *xs):
        acc = sum(requantize_reference(x, d, "int32").astype(np.int64) for x, d in zip(xs, self.dyadics))
        lo, hi = DTYPE_RANGE[self.qtype.dtype]
        return np.clip(acc, lo, hi).astype(self.qtype.dtype)

    def emit(self, bb, *xs):
        terms = [emit_requantize(bb, x, d, "int32") for x, d in zip(xs, self.dyadics)]
        acc = terms[0]
        for term in terms[1:]:
            acc = bb.emit(relax.op.add(acc, term))
        lo, hi = DTYPE_RANGE[self.qtype.dtype]
        return bb.emit(relax.op.astype(bb.emit(relax.op.clip(acc, lo, hi)), self.qtype.dtype))

    def constants(self):
        return [a for d in self.dyadics for a in (d.multiplier, d.shift)]


@dataclass
class Constant(IntOp):
    """A quantized constant tensor (a position embedding, class embeddings joining the tokens, ...)."""

    value: np.ndarray = None

    def reference(self):
        return self.value

    def emit(self, bb):
        return relax.const(self.value)

    def constants(self):
        return [self.value]


@dataclass
class Concat(IntOp):
    """Concatenation of values that share one QType."""

    axis: int = 0

    def reference(self, *xs):
        return np.concatenate(xs, axis=self.axis)

    def emit(self, bb, *xs):
        return bb.emit(relax.op.concat(xs, axis=self.axis))


@dataclass
class Reshape(IntOp):
    def reference(self, x):
        return x.reshape(self.qtype.shape)

    def emit(self, bb, x):
        return bb.emit(relax.op.reshape(x, self.qtype.shape))


@dataclass
class PermuteDims(IntOp):
    axes: tuple = ()

    def reference(self, x):
        return x.transpose(self.axes)

    def emit(self, bb, x):
        return bb.emit(relax.op.permute_dims(x, list(self.axes)))


@dataclass
class Take(IntOp):
    """Gather along one axis with compile-time integer indices (a scalar index drops the axis)."""

    indices: np.ndarray = None
    axis: int = 0

    def reference(self, x):
        return np.take(x, self.indices, axis=self.axis)

    def emit(self, bb, x):
        if np.ndim(self.indices) == 0:  # a slice: no index tensor to deploy
            index = int(self.indices)
            part = relax.op.strided_slice(x, [self.axis], [index], [index + 1])
            return bb.emit(relax.op.squeeze(part, [self.axis]))
        return bb.emit(relax.op.take(x, relax.const(self.indices), axis=self.axis))

    def constants(self):
        return [self.indices]


@dataclass
class StridedSlice(IntOp):
    """Unit-stride slice ``begin[i]:end[i]`` along each of ``axes``."""

    axes: tuple = ()
    begin: tuple = ()
    end: tuple = ()

    def reference(self, x):
        index = [slice(None)] * x.ndim
        for axis, begin, end in zip(self.axes, self.begin, self.end):
            index[axis] = slice(begin, end)
        return x[tuple(index)]

    def emit(self, bb, x):
        return bb.emit(relax.op.strided_slice(x, list(self.axes), list(self.begin), list(self.end)))


@dataclass
class BroadcastTo(IntOp):
    def reference(self, x):
        return np.broadcast_to(x, self.qtype.shape)

    def emit(self, bb, x):
        return bb.emit(relax.op.broadcast_to(x, self.qtype.shape))


@dataclass
class ArgMax(IntOp):
    """Index of the largest value along ``axis`` (first one on ties) as uint8: the class map."""

    axis: int = 1

    def reference(self, x):
        return np.argmax(x, axis=self.axis).astype(np.uint8)

    def emit(self, bb, x):
        return bb.emit(relax.op.astype(bb.emit(relax.op.argmax(x, axis=self.axis)), "uint8"))


@dataclass
class NonLinear(IntOp):
    """An integer non-linear op from ``relax_passes.intops``: ``reference(q, params)``, ``emit(bb, q, params)``."""

    kind: str = ""  # "layer_norm" | "softmax" | "gelu"
    params: object = None
    reference_fn: object = None
    emit_fn: object = None

    def reference(self, x):
        return self.reference_fn(x, self.params)

    def emit(self, bb, x):
        return self.emit_fn(bb, x, self.params)

    def constants(self):
        return _integer_leaves(self.params)


def _integer_leaves(value) -> list:
    """Integer arrays inside a (nested) params dataclass; a ``Dyadic`` contributes multiplier and shift."""
    if dataclasses.is_dataclass(value):
        return [leaf for f in dataclasses.fields(value) for leaf in _integer_leaves(getattr(value, f.name))]
    if isinstance(value, (np.ndarray, np.integer, int)) and not isinstance(value, bool):
        return [np.asarray(value)]
    return []


@dataclass
class Program:
    """An integer program: ops in execution order; ``input`` names the image, ``output`` the class map."""

    ops: list = field(default_factory=list)
    input: str = "image"
    input_shape: tuple = ()
    output: str = ""

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """numpy reference: every value of the program (by name) for one uint8 image."""
        values = {self.input: np.asarray(image)}
        for op in self.ops:
            values[op.out] = op.reference(*(values[name] for name in op.inputs))
        return values

    def to_relax(self, *, debug: bool = False) -> tvm.IRModule:
        """The integer Relax module; ``debug=True`` returns every op's value in program order instead."""
        bb = relax.BlockBuilder()
        image = relax.Var(self.input, relax.TensorType(self.input_shape, "uint8"))
        with bb.function("main", [image]):
            with bb.dataflow():
                values = {self.input: image}
                for op in self.ops:
                    values[op.out] = op.emit(bb, *(values[name] for name in op.inputs))
                if debug:
                    result = bb.emit_output(relax.Tuple([values[op.out] for op in self.ops]))
                else:
                    result = bb.emit_output(values[self.output])
            bb.emit_func_output(result)
        return bb.get()

    def weight_bytes(self) -> int:
        """Bytes of every integer constant the program stores."""
        return int(sum(np.asarray(c).nbytes for op in self.ops for c in op.constants()))
