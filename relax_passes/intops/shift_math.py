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

Integer sqrt (I-ViT / I-BERT): ``k <- (k + n // k) // 2`` from the power of two ``2**start_bits``
(>= sqrt of the largest ``n``), a fixed number of iterations, then one correction step, gives
exactly ``floor(sqrt(n))`` for every ``0 <= n < 4**start_bits`` (tested exhaustively on the slow end).
"""
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
    return bb.emit(relax.op.where(relax.op.greater(octave, _i32(octaves)), _i32(0), shifted))


def isqrt_iterations(start_bits: int) -> int:
    """Newton steps from ``2**start_bits`` that reach floor(sqrt(n)) (or +1) for all ``n < 4**start_bits``.

    From above, Newton at least halves the distance to the root per step, so ``start_bits + 1``
    steps bring it within 1; two more absorb integer flooring. (Verified exhaustively for small n.)
    """
    return start_bits + 3


def isqrt_reference(n: np.ndarray, start_bits: int) -> np.ndarray:
    """floor(sqrt(n)) for ``0 <= n < 4**start_bits`` by fixed-iteration integer Newton (int64)."""
    n = np.asarray(n).astype(np.int64)
    k = np.full_like(n, 1 << start_bits)
    for _ in range(isqrt_iterations(start_bits)):
        k = np.maximum((k + n // k) >> 1, 1)
    return k - (k * k > n)


def emit_isqrt(bb: relax.BlockBuilder, n: relax.Expr, start_bits: int) -> relax.Var:
    """Relax ops of ``isqrt_reference`` on an int64 tensor; returns int64."""
    one = relax.const(1, "int64")
    k = bb.emit(relax.op.full_like(n, relax.const(1 << start_bits, "int64")))
    for _ in range(isqrt_iterations(start_bits)):
        step = relax.op.right_shift(relax.op.add(k, relax.op.floor_divide(n, k)), one)
        k = bb.emit(relax.op.maximum(step, one))
    too_big = relax.op.astype(relax.op.greater(relax.op.multiply(k, k), n), "int64")
    return bb.emit(relax.op.subtract(k, too_big))


def _i32(value: int) -> relax.Expr:
    return relax.const(value, "int32")
