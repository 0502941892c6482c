"""Shared integer primitives of the non-linear ops: the shift-based exponential and the Newton sqrt.

Each primitive has a numpy reference (computed in int64, so it never wraps) and a Relax emitter
doing the same arithmetic in the documented narrower dtypes; tests prove them bit-exact.

Shift-exp (I-ViT): for ``y <= 0`` in the log2 domain with scale ``2**-F`` (``y / 2**F`` octaves),

    k = -(y >> F)                # whole octaves below zero, >= 0
    f = y & (2**F - 1)           # fractional octave, 2**(f / 2**F) ~= 1 + f / 2**F (chord)
    e = ((2**F + f) << (M - F)) >> k,   flushed to 0 when k > octaves

so ``e ~= 2**M * 2**(y / 2**F)``, ``0 <= e <= 2**M``. The linear part is I-ViT's ``1 + r/2``
written on [0, 1) instead of (-1, 0] (at most 6.1 % high); the quotient/remainder by ``I0 = -2**F``
are a shift and a mask because callers first requantize into this power-of-two scale.

``order=2`` refines the chord with one multiply, ``2**u ~= 1 + u - (87/256) u (1 - u)``:

    f <- f - ((((f * (2**F - f)) >> F) * 87) >> 8)       f * (2**F - f) <= 2**(2F-2)

which is within 0.27 % of ``2**u`` (plus the floors).

Integer sqrt (I-ViT / I-BERT): ``k <- max((k + n // k) >> 1, 1)`` from the power of two
``2**start_bits`` (>= sqrt of the largest ``n``), a fixed number of iterations, then one correction
step ``k - (k*k > n)``, gives exactly ``floor(sqrt(n))`` for every ``lowest <= n < 4**start_bits``.
Why: integer Newton from above never drops below ``floor(sqrt(n))`` and never exceeds the real
iteration ``c <- (c + n/c) / 2``, whose relative error ``e = c/sqrt(n) - 1`` obeys
``e <- e**2 / (2 (1 + e))``; once ``c < sqrt(n) + 1`` the integer is ``floor(sqrt(n))`` or one above
and stays in that pair, which the correction resolves. The start error is largest for the smallest
``n``, so ``isqrt_iterations(start_bits, lowest)`` is the step count at which ``e * 2**start_bits``
(>= ``c - sqrt(n)``) falls below 1/2 for ``n = lowest``. A caller that normalises ``n`` into
``[4**(start_bits-1), 4**start_bits)`` (``e <= 1``) needs 4 steps for start_bits = 15; an
un-normalised 62-bit ``n`` from ``2**31`` needs 35.

Base-4 exponent: ``floor(log4(v)) = #{k >= 1 : v >= 4**k}``, independent compares (no
count-leading-zeros instruction, which neither TVM's C codegen nor every target has); one flat
expression, so operator fusion keeps the whole per-row computation in one kernel.
"""
import math

import numpy as np
from tvm import relax

LOG2E = 1.4426950408889634


EXP_ORDERS = (1, 2)
CHORD_CORRECTION = 87  # (87 / 256) u (1 - u): the quadratic correction of the chord 1 + u of 2**u
CHORD_CORRECTION_BITS = 8


def shift_exp_reference(y: np.ndarray, frac_bits: int, octaves: int, mantissa_bits: int, order: int = 1) -> np.ndarray:
    """``2**mantissa_bits * 2**(y / 2**frac_bits)`` in integers for ``y <= 0`` (int64 result)."""
    y = np.asarray(y).astype(np.int64)
    octave = -(y >> frac_bits)
    fraction = y & ((1 << frac_bits) - 1)
    if order == 2:
        bump = (fraction * ((1 << frac_bits) - fraction)) >> frac_bits
        fraction = fraction - ((bump * CHORD_CORRECTION) >> CHORD_CORRECTION_BITS)
    mantissa = ((1 << frac_bits) + fraction) << (mantissa_bits - frac_bits)
    return np.where(octave > octaves, 0, mantissa >> np.minimum(octave, 62))


def emit_shift_exp(bb: relax.BlockBuilder, y: relax.Expr, frac_bits: int, octaves: int,
                   mantissa_bits: int, order: int = 1) -> relax.Var:
    """Relax ops of ``shift_exp_reference``; ``y`` must already lie in ``[-(octaves+1)*2**F, 0]``.

    Works in int32 (``e <= 2**mantissa_bits``); returns int32.
    """
    y32 = bb.emit(relax.op.astype(y, "int32"))
    octave = bb.emit(relax.op.negative(relax.op.right_shift(y32, _i32(frac_bits))))
    fraction = bb.emit(relax.op.bitwise_and(y32, _i32((1 << frac_bits) - 1)))
    if order == 2:
        bump = relax.op.right_shift(relax.op.multiply(fraction, relax.op.subtract(_i32(1 << frac_bits), fraction)),
                                    _i32(frac_bits))
        correction = relax.op.right_shift(relax.op.multiply(bump, _i32(CHORD_CORRECTION)), _i32(CHORD_CORRECTION_BITS))
        fraction = bb.emit(relax.op.subtract(fraction, correction))
    mantissa = bb.emit(relax.op.left_shift(relax.op.add(fraction, _i32(1 << frac_bits)),
                                           _i32(mantissa_bits - frac_bits)))
    shifted = bb.emit(relax.op.right_shift(mantissa, octave))
    in_range = relax.op.astype(relax.op.less_equal(octave, _i32(octaves)), "int32")
    return bb.emit(relax.op.multiply(shifted, in_range))  # 0 beyond the octaves, with no 0-d constant to deploy


def isqrt_iterations(start_bits: int, lowest: int = 0) -> int:
    """Newton steps from ``2**start_bits`` after which every ``n`` in ``[lowest, 4**start_bits)`` is at
    ``floor(sqrt(n))`` or one above (``n = 0``: ``k`` halves to 1 in ``start_bits`` steps)."""
    error = 2.0**start_bits / math.sqrt(max(lowest, 1)) - 1.0
    steps = 0
    while error * 2.0**start_bits >= 0.5:
        error = error * error / (2.0 * (1.0 + error))
        steps += 1
    return max(steps, 1, start_bits if lowest == 0 else 1)


def isqrt_reference(n: np.ndarray, start_bits: int, lowest: int = 0) -> np.ndarray:
    """floor(sqrt(n)) for ``lowest <= n < 4**start_bits`` by fixed-iteration integer Newton (int64)."""
    n = np.asarray(n).astype(np.int64)
    k = np.full_like(n, 1 << start_bits)
    for _ in range(isqrt_iterations(start_bits, lowest)):
        k = np.maximum((k + n // k) >> 1, 1)
    return k - (k * k > n)


def emit_isqrt(bb: relax.BlockBuilder, n: relax.Expr, start_bits: int, lowest: int = 0) -> relax.Var:
    """Relax ops of ``isqrt_reference`` in ``n``'s dtype (int32 when ``start_bits <= 15``, else int64)."""
    dtype = n.ty.dtype
    one = relax.const(1, dtype)
    k = relax.const(1 << start_bits, dtype)  # a scalar: broadcasting gives the first step n's shape
    for _ in range(isqrt_iterations(start_bits, lowest)):
        step = relax.op.right_shift(relax.op.add(k, relax.op.floor_divide(n, k)), one)
        k = bb.emit(relax.op.maximum(step, one))
    too_big = relax.op.astype(relax.op.greater(relax.op.multiply(k, k), n), dtype)
    return bb.emit(relax.op.subtract(k, too_big))


def base4_exponent_reference(v: np.ndarray, max_exponent: int) -> np.ndarray:
    """``floor(log4(v))`` for ``1 <= v < 4**(max_exponent + 1)``, 0 for ``v = 0`` (int64)."""
    value = np.asarray(v).astype(np.int64)
    return sum((value >= 4**k).astype(np.int64) for k in range(1, max_exponent + 1))


def emit_base4_exponent(bb: relax.BlockBuilder, v: relax.Expr, max_exponent: int) -> relax.Var:
    """Relax ops of ``base4_exponent_reference`` on an int64 tensor; returns int64."""
    exponent = None
    for k in range(1, max_exponent + 1):
        step = relax.op.astype(relax.op.greater_equal(v, relax.const(4**k, "int64")), "int64")
        exponent = step if exponent is None else relax.op.add(exponent, step)
    return bb.emit(exponent)


def emit_row_boundary(bb: relax.BlockBuilder, row_values: relax.Expr) -> relax.Var:
    """``row_values`` (shape ``[..., 1]``) unchanged, written as a sum over its unit last axis.

    Operator fusion never merges a reduction's consumers into it, so the per-row arithmetic before
    this point becomes a kernel of its own, computed once per row; without it the per-row chain is
    fused into the per-element consumer, where the scheduler inlines it into the element loop (a
    division per element instead of per row)."""
    return bb.emit(relax.op.sum(row_values, axis=-1, keepdims=True))


def _i32(value: int) -> relax.Expr:
    return relax.const(value, "int32")
