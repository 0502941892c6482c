"""Integer ops of convolutional networks (MobileNet-style blocks), each a numpy reference beside its Relax emitter.

* :class:`Pad` — constant border (the input's real zero: ``-zero_point``) before a padded convolution;
* :class:`Relu` — ``max(q, 0)`` at the input's scale;
* :class:`HardSwish` — ``x * relu6(x + 3) / 6`` as ``rq(q * clip(q + round(3/S), 0, round(6/S)))``,
  ratio ``S * S / (6 * S_out)``;
* :class:`Multiply` — activation x activation (broadcast, e.g. a squeeze-excite gate): int32 product
  -> dyadic requantize;
* :class:`GlobalAvgPool` — int32 sum over H, W -> dyadic requantize by ``S_in / (H * W * S_out)``;
* :class:`BilinearResize` — separable bilinear interpolation with compile-time indices and
  ``RESIZE_FRAC_BITS``-bit fixed-point weights (TVM ``resize2d`` ``linear``, half_pixel/align_corners/
  asymmetric index rule), int32 -> dyadic requantize by ``S_in / (2**(2*bits) * S_out)``;
* :class:`Conv2dTranspose` — int8 NCHW x int8 IOHW -> int32 + bias -> dyadic requantize per output channel.

Every requantization is the shared :mod:`requantize` helper. ``bounds(magnitudes)`` gives, for the largest input
magnitudes of the input dtypes (any input), the worst case of each wide intermediate against its limit
(:func:`overflow.program_bounds` checks them).
"""
from dataclasses import dataclass

import numpy as np
from tvm import relax

from common.errors import UserError

from .integer_program import IntOp
from .requantize import Dyadic, emit_requantize, requantize_reference

RESIZE_FRAC_BITS = 7  # int16 input x 2**7 x 2**7 stays inside int32
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def requantize_bound(max_in: int, dyadic: Dyadic) -> tuple:
    from .overflow import _requantize_bound

    return ("requantize", _requantize_bound(max_in, dyadic), INT64_MAX)


@dataclass
class Pad(IntOp):
    """NCHW constant padding ``(top, left, bottom, right)`` with ``value``."""

    pad: tuple = (0, 0, 0, 0)
    value: int = 0

    def reference(self, x):
        top, left, bottom, right = self.pad
        return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=self.value)

    def emit(self, bb, x):
        top, left, bottom, right = self.pad
        for axis, before, after in ((2, top, bottom), (3, left, right)):
            parts = [p for p in (self._border(x, axis, before), x, self._border(x, axis, after)) if p is not None]
            if len(parts) > 1:
                x = bb.emit(relax.op.concat(parts, axis=axis))
        return x

    def bounds(self, mags):
        return []

    def _border(self, x, axis, size):
        if not size:
            return None
        shape = [int(d) for d in x.ty.shape]
        shape[axis] = size
        return relax.const(np.full(shape, self.value, dtype=self.qtype.dtype))


@dataclass
class Relu(IntOp):
    def reference(self, x):
        return np.maximum(x, 0).astype(x.dtype)

    def emit(self, bb, x):
        return bb.emit(relax.op.maximum(x, relax.const(np.zeros((), dtype=self.qtype.dtype))))

    def bounds(self, mags):
        return []


@dataclass
class HardSwish(IntOp):
    """``rq(q * clip(q + three, 0, six))`` in int64: hard-swish with 3 and 6 at the input's scale."""

    three: int = 0
    six: int = 0
    dyadic: Dyadic = None

    def reference(self, x):
        wide = x.astype(np.int64)
        return requantize_reference(wide * np.clip(wide + self.three, 0, self.six), self.dyadic, self.qtype.dtype)

    def emit(self, bb, x):
        wide = bb.emit(relax.op.astype(x, "int64"))
        gate = bb.emit(relax.op.clip(bb.emit(relax.op.add(wide, relax.const(self.three, "int64"))), 0, self.six))
        return emit_requantize(bb, bb.emit(relax.op.multiply(wide, gate)), self.dyadic, self.qtype.dtype)

    def constants(self):
        return [np.asarray(self.three), np.asarray(self.six), self.dyadic.multiplier, self.dyadic.shift]

    def bounds(self, mags):
        product = mags[0] * self.six
        return [("product", product, INT64_MAX), requantize_bound(product, self.dyadic)]


@dataclass
class Multiply(IntOp):
    """``rq(a * b)``: the int32 product of two (broadcasting) activations, requantized."""

    dyadic: Dyadic = None

    def reference(self, a, b):
        return requantize_reference(a.astype(np.int64) * b.astype(np.int64), self.dyadic, self.qtype.dtype)

    def emit(self, bb, a, b):
        a, b = (bb.emit(relax.op.astype(v, "int32")) for v in (a, b))
        return emit_requantize(bb, bb.emit(relax.op.multiply(a, b)), self.dyadic, self.qtype.dtype)

    def constants(self):
        return [self.dyadic.multiplier, self.dyadic.shift]

    def bounds(self, mags):
        return [("product", mags[0] * mags[1], INT32_MAX), requantize_bound(mags[0] * mags[1], self.dyadic)]


@dataclass
class GlobalAvgPool(IntOp):
    """NCHW mean over H and W: int32 sum, then the dyadic ``1 / (H * W)`` folded into the requantize."""

    dyadic: Dyadic = None
    pixels: int = 1  # H * W

    def reference(self, x):
        return requantize_reference(x.astype(np.int64).sum(axis=(2, 3), keepdims=True), self.dyadic,
                                    self.qtype.dtype)

    def emit(self, bb, x):
        total = bb.emit(relax.op.sum(bb.emit(relax.op.astype(x, "int32")), axis=[2, 3], keepdims=True))
        return emit_requantize(bb, total, self.dyadic, self.qtype.dtype)

    def constants(self):
        return [self.dyadic.multiplier, self.dyadic.shift]

    def bounds(self, mags):
        total = mags[0] * self.pixels
        return [("sum", total, INT32_MAX), requantize_bound(total, self.dyadic)]


def linear_taps(n_in: int, n_out: int, mode: str, bits: int = RESIZE_FRAC_BITS):
    """int32 ``(i0, i1, w0, w1)`` per output index, ``w0 + w1 == 2**bits`` (TVM's linear resize index rule)."""
    dst = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        src = (dst + 0.5) * (n_in / n_out) - 0.5
    elif mode == "asymmetric":
        src = dst * (n_in / n_out)
    elif mode == "align_corners":
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        raise UserError(f"resize2d coordinate mode {mode!r} is not supported for linear resize")
    low = np.floor(src)
    w1 = np.round((src - low) * 2**bits).astype(np.int32)
    i0, i1 = (np.clip(low + k, 0, n_in - 1).astype(np.int32) for k in (0, 1))
    return i0, i1, (2**bits - w1).astype(np.int32), w1


@dataclass
class BilinearResize(IntOp):
    """NCHW bilinear resize: along H then W, ``x[i0] * w0 + x[i1] * w1`` in int32, then requantize."""

    taps_h: tuple = ()  # (i0, i1, w0, w1) per output row
    taps_w: tuple = ()
    dyadic: Dyadic = None

    def reference(self, x):
        i0, i1, w0, w1 = self.taps_h
        rows = x[:, :, i0, :].astype(np.int64) * w0[:, None] + x[:, :, i1, :].astype(np.int64) * w1[:, None]
        i0, i1, w0, w1 = self.taps_w
        acc = rows[..., i0] * w0 + rows[..., i1] * w1
        return requantize_reference(acc, self.dyadic, self.qtype.dtype)

    def emit(self, bb, x):
        x = bb.emit(relax.op.astype(x, "int32"))
        for axis, (i0, i1, w0, w1) in ((2, self.taps_h), (3, self.taps_w)):
            shape = [1, 1, 1, 1]
            shape[axis] = -1
            terms = [bb.emit(relax.op.multiply(bb.emit(relax.op.take(x, relax.const(i), axis=axis)),
                                               relax.const(w.reshape(shape)))) for i, w in ((i0, w0), (i1, w1))]
            x = bb.emit(relax.op.add(*terms))
        return emit_requantize(bb, x, self.dyadic, self.qtype.dtype)

    def constants(self):
        return [*self.taps_h, *self.taps_w, self.dyadic.multiplier, self.dyadic.shift]

    def bounds(self, mags):
        total = mags[0] * 2 ** (2 * RESIZE_FRAC_BITS)  # each axis' two weights sum to 2**bits
        return [("sum", total, INT32_MAX), requantize_bound(total, self.dyadic)]


@dataclass
class Conv2dTranspose(IntOp):
    """int8 NCHW x int8 IOHW (groups 1) -> int32 (+ int32 bias) -> dyadic requantize per output channel."""

    weight: np.ndarray = None  # int8 IOHW
    bias: np.ndarray = None  # int32 (O,)
    dyadic: Dyadic = None  # per channel, shaped (1, O, 1, 1)
    strides: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)  # cropped (top, left, bottom, right)

    def accumulate(self, x):
        _, out_c, kh, kw = self.weight.shape
        sh, sw = self.strides
        n, _, h, w = x.shape
        full = np.zeros((n, out_c, (h - 1) * sh + kh, (w - 1) * sw + kw), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw] += np.einsum(
                    "nchw,co->nohw", x.astype(np.int64), self.weight[:, :, i, j].astype(np.int64))
        top, left, bottom, right = self.padding
        return full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right] + self.bias.reshape(1, -1, 1, 1)

    def reference(self, x):
        return requantize_reference(self.accumulate(x), self.dyadic, self.qtype.dtype)

    def emit(self, bb, x):
        conv = bb.emit(relax.op.nn.conv2d_transpose(x, relax.const(self.weight), strides=self.strides,
                                                    padding=self.padding, out_dtype="int32"))
        acc = bb.emit(relax.op.add(conv, relax.const(self.bias.reshape(1, -1, 1, 1))))
        return emit_requantize(bb, acc, self.dyadic, self.qtype.dtype)

    def constants(self):
        return [self.weight, self.bias, self.dyadic.multiplier, self.dyadic.shift]

    def bounds(self, mags):
        # an output sums at most every tap of every input channel (exactly one per channel when kernel == stride)
        acc = int(np.max(np.abs(self.weight.astype(np.int64)).sum(axis=(0, 2, 3)) * mags[0] + np.abs(self.bias)))
        return [("accumulator", acc, INT32_MAX), requantize_bound(acc, self.dyadic)]
