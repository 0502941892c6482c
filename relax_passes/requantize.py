"""Dyadic requantization — the one rescaling step that every integer op ends with.

A real ratio ``S_in / S_out`` becomes ``m / 2**k`` with a 31-bit multiplier ``m`` in
``[2**30, 2**31)`` (computed here, at compile time, in Python). On the device it is applied as

    y = clamp((x * m + 2**(k-1)) >> k, lo, hi)

in 64-bit integer arithmetic, with an arithmetic right shift: **round half up** (ties go
towards +inf). ``|x| < 2**31`` keeps ``x * m + 2**(k-1)`` inside int64.

Storage: ``m`` is kept as int32 and ``k`` as int8 (widened to int64 inside the kernel), and an array
whose entries are all equal is kept as one scalar (a per-channel ratio that differs between channels
only by powers of two therefore stores one int32 multiplier and an int8 shift per channel).

High-word form (what ``emit_requantize`` emits for an int32 ``x`` when every ``k >= 33``, i.e. every
ratio ``< 2**-2``): with ``P = x * m``, ``H = P >> 32`` (the high word of the 32x32->64 product: one
SMULL/SMMUL on Arm, MULH on RISC-V), ``j = k - 32`` and ``r = 2**(k-33)``,

    floor((P + 2**(k-1)) / 2**k) == (H + r) >> j      computed in int32.

Proof: write ``P = H * 2**32 + L`` with ``0 <= L < 2**32``. As ``k >= 33``, ``2**(k-1) = r * 2**32``, so
``P + 2**(k-1) = (H + r) * 2**32 + L`` and ``floor(((H + r) * 2**32 + L) / 2**32) = H + r``; nested floor
division (``floor(floor(a / b) / c) == floor(a / (b * c))`` for integers, b, c > 0) gives
``floor((P + 2**(k-1)) / 2**(32 + j)) = floor((H + r) / 2**j)``. No int32 overflow: ``|x| <= 2**31`` and
``0 < m < 2**31`` give ``-2**30 <= H < 2**30``, and ``r <= 2**29`` (``k <= 62``), so ``|H + r| < 2**31``;
``1 <= j <= 30``. The epilogue then is a 32-bit multiply-high, add, shift and clamp instead of 64-bit
arithmetic. A ratio with some ``k <= 32`` gets the same form after a left shift when ``|x|`` leaves room:
``(x * m + 2**(k-1)) >> k == ((x << s) * m + 2**(k+s-1)) >> (k+s)`` (numerator and denominator scale by
``2**s``), taken with ``s = 33 - min(k)`` when ``|x| << s`` fits int32 (an int8/int16 ``x``, or an accumulator
whose bound the caller passes as ``magnitude``). One shift ``k <= 32`` takes ``s = 32 - k`` instead: then
``(x * m + 2**(k-1)) >> k == ((x << s) * m + 2**31) >> 32``, the rounded high word (``SMMULR``, one instruction
on Arm DSP cores, where the ``k + s = 33`` form needs a multiply, an add and a shift). Otherwise (or for an
int64 ``x``) the int64 form. All forms compute exactly ``requantize_reference``.

``requantize_reference`` is the numpy reference; ``emit_requantize`` writes the same
arithmetic as Relax ops. Per-channel requantization passes array-valued ratios shaped to
broadcast against the accumulator (e.g. ``(C,)`` for the last axis).
"""
from dataclasses import dataclass

import numpy as np
from tvm import relax

MULTIPLIER_BITS = 31
MAX_SHIFT = 62
HIGH_WORD_MIN_SHIFT = 33  # from this shift on, the rounding term is in the product's high word

DTYPE_RANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class Dyadic:
    """``multiplier / 2**shift`` ≈ a real ratio: int32 multiplier, int8 shift (0-d when uniform)."""

    multiplier: np.ndarray
    shift: np.ndarray

    @staticmethod
    def from_ratio(ratio) -> "Dyadic":
        """The dyadic number closest to ``ratio`` (> 0) with a 31-bit multiplier."""
        ratio = np.asarray(ratio, dtype=np.float64)
        if not np.all(np.isfinite(ratio)) or np.any(ratio <= 0):
            raise ValueError(f"requantization ratio must be finite and > 0, got {ratio}")
        mantissa, exponent = np.frexp(ratio)  # ratio = mantissa * 2**exponent, mantissa in [0.5, 1)
        multiplier = np.round(mantissa * 2.0**MULTIPLIER_BITS).astype(np.int64)
        shift = (MULTIPLIER_BITS - exponent).astype(np.int64)
        overflow = multiplier == 2**MULTIPLIER_BITS  # mantissa rounded up to 1.0
        multiplier = np.where(overflow, multiplier // 2, multiplier)
        shift = np.where(overflow, shift - 1, shift)
        if np.any(shift < 1) or np.any(shift > MAX_SHIFT):
            raise ValueError(f"requantization ratio {ratio} is outside [2**-31, 2**30)")
        return Dyadic(uniform_as_scalar(multiplier.astype(np.int32)), uniform_as_scalar(shift.astype(np.int8)))

    @property
    def ratio(self) -> np.ndarray:
        return self.multiplier.astype(np.float64) / 2.0**self.shift


def uniform_as_scalar(values: np.ndarray) -> np.ndarray:
    """``values`` as a 0-d array when all its entries are equal (it broadcasts the same), else unchanged."""
    values = np.asarray(values)
    return values.reshape(-1)[:1].reshape(()) if values.size and np.all(values == values.flat[0]) else values


def narrowest(value: np.ndarray) -> np.ndarray:
    """``value`` in the narrowest of int8, int16, int32 that holds every entry (else unchanged)."""
    value = np.asarray(value)
    for dtype in ("int8", "int16", "int32"):
        lo, hi = DTYPE_RANGE[dtype]
        if np.dtype(dtype).itemsize < value.dtype.itemsize and value.size and lo <= value.min() and value.max() <= hi:
            return value.astype(dtype)
    return value


def emit_widened(value: np.ndarray, dtype: str) -> relax.Expr:
    """A stored constant as ``dtype``: a 0-d one as an immediate, an array as ``astype(const)`` of its
    :func:`narrowest` storage so that the widening happens inside the kernel that reads it."""
    value = np.asarray(value)
    if value.ndim == 0:
        return relax.const(value.astype(dtype), dtype)
    stored = narrowest(value)
    return relax.op.astype(relax.const(stored, str(stored.dtype)), dtype)


def requantize_reference(x: np.ndarray, dyadic: Dyadic, dtype: str) -> np.ndarray:
    """numpy reference: ``clamp((x * m + 2**(k-1)) >> k)`` in int64, cast to ``dtype``."""
    lo, hi = DTYPE_RANGE[dtype]
    shift = dyadic.shift.astype(np.int64)
    acc = x.astype(np.int64) * dyadic.multiplier.astype(np.int64) + (np.int64(1) << (shift - 1))
    return np.clip(acc >> shift, lo, hi).astype(dtype)


def dtype_magnitude(dtype: str) -> int:
    """The largest ``|x|`` a value of ``dtype`` can have."""
    lo, hi = DTYPE_RANGE[str(dtype)]
    return max(-lo, hi)


def _multiplier_in_range(dyadic: Dyadic) -> bool:
    multiplier = dyadic.multiplier.astype(np.int64)
    return bool(np.all(multiplier > 0)) and bool(np.all(multiplier < 2**MULTIPLIER_BITS))


def high_word_applies(x_dtype: str, dyadic: Dyadic) -> bool:
    """Whether the int32 high-word form computes ``requantize_reference`` exactly (see the module docstring)."""
    return (x_dtype == "int32" and bool(np.all(dyadic.shift.astype(np.int64) >= HIGH_WORD_MIN_SHIFT))
            and _multiplier_in_range(dyadic))


def _shift_fits(x_dtype: str, magnitude: int | None, pre_shift: int) -> bool:
    """Whether ``x << pre_shift`` fits int32 for ``|x| <= magnitude`` (default: ``x_dtype``'s range)."""
    if x_dtype not in ("int8", "int16", "int32"):
        return False
    magnitude = dtype_magnitude(x_dtype) if magnitude is None else int(magnitude)
    return pre_shift == 0 or magnitude << pre_shift <= 2**31 - 1


def high_word_pre_shift(x_dtype: str, dyadic: Dyadic, magnitude: int | None = None) -> int | None:
    """The left shift ``s`` of ``x`` after which the high-word form applies (``x << s`` with ``k + s``), or None.

    ``magnitude`` bounds ``|x|`` (default: ``x_dtype``'s range). Exact: numerator and denominator of
    ``(x * m + 2**(k-1)) / 2**k`` both scale by ``2**s``; ``s`` is taken only when ``x << s`` fits int32."""
    shift = dyadic.shift.astype(np.int64)
    pre_shift = max(0, HIGH_WORD_MIN_SHIFT - int(np.min(shift)))
    if not _shift_fits(x_dtype, magnitude, pre_shift) or int(np.max(shift)) + pre_shift > MAX_SHIFT:
        return None
    return pre_shift if high_word_applies("int32", Dyadic(dyadic.multiplier, shift + pre_shift)) else None


def rounded_high_word_shift(x_dtype: str, dyadic: Dyadic, magnitude: int | None = None) -> int | None:
    """For one shift ``k <= 32``: ``s = 32 - k``, after which the requantize is the rounded high word
    ``int32((int64(x << s) * m + 2**31) >> 32)`` (one ``SMMULR`` on Arm DSP cores), when ``x << s`` fits; else None."""
    if dyadic.shift.ndim or int(dyadic.shift) > 32:
        return None
    pre_shift = 32 - int(dyadic.shift)
    return pre_shift if _multiplier_in_range(dyadic) and _shift_fits(x_dtype, magnitude, pre_shift) else None


def emit_rounding_shift(bb: relax.BlockBuilder, x: relax.Expr, shift: np.ndarray, dtype: str) -> relax.Var:
    """``(x + 2**(shift-1)) >> shift`` in ``dtype``: immediates for a 0-d ``shift``. An array is stored as
    ``shift - 1`` and applied as ``((x >> (shift - 1)) + 1) >> 1``, the same value (with ``x = q * 2**(s-1) + r``,
    ``0 <= r < 2**(s-1)``: ``floor((x + 2**(s-1)) / 2**s) == floor((q + 1) / 2 + r / 2**s) == floor((q + 1) / 2)``)
    in one per-channel load and three instructions, no rounding term built from the shift."""
    if shift.ndim == 0:
        amount = emit_widened(shift, dtype)
        half = relax.const(np.array(1, dtype) << (shift.astype(dtype) - 1), dtype)
        return bb.emit(relax.op.right_shift(bb.emit(relax.op.add(x, half)), amount))
    one = relax.const(1, dtype)
    partial = bb.emit(relax.op.right_shift(x, bb.emit(emit_widened((shift - 1).astype(shift.dtype), dtype))))
    return bb.emit(relax.op.right_shift(bb.emit(relax.op.add(partial, one)), one))


def emit_requantize(bb: relax.BlockBuilder, x: relax.Expr, dyadic: Dyadic, dtype: str,
                    magnitude: int | None = None) -> relax.Var:
    """Emit the Relax ops of ``requantize_reference`` into ``bb`` (the int32 high-word form, after a left shift of
    ``x`` where needed and ``magnitude``, a bound on ``|x|``, allows it; else int64 arithmetic); returns the
    ``dtype`` result."""
    lo, hi = DTYPE_RANGE[dtype]
    x = bb.normalize(x)
    rounded = rounded_high_word_shift(str(x.ty.dtype), dyadic, magnitude)
    pre_shift = rounded if rounded is not None else high_word_pre_shift(str(x.ty.dtype), dyadic, magnitude)
    operand = x
    if pre_shift is not None and str(x.ty.dtype) != "int32":
        operand = bb.emit(relax.op.astype(x, "int32"))
    if pre_shift:  # a shift: TVM would fold a multiply into m (then m * 2**s no longer fits 32 bits)
        operand = bb.emit(relax.op.left_shift(operand, relax.const(pre_shift, "int32")))
    product = bb.emit(relax.op.multiply(bb.emit(relax.op.astype(operand, "int64")),
                                        emit_widened(dyadic.multiplier, "int64")))
    if rounded is not None:
        half = relax.op.add(product, relax.const(1 << 31, "int64"))
        shifted = bb.emit(relax.op.astype(relax.op.right_shift(half, relax.const(32, "int64")), "int32"))
    elif pre_shift is None:
        shifted = emit_rounding_shift(bb, product, dyadic.shift, "int64")
    else:
        high = bb.emit(relax.op.astype(relax.op.right_shift(product, relax.const(32, "int64")), "int32"))
        shift = uniform_as_scalar((dyadic.shift.astype(np.int64) + pre_shift - 32).astype(np.int8))
        shifted = emit_rounding_shift(bb, high, shift, "int32")
    clamped = bb.emit(relax.op.clip(shifted, lo, hi))
    return bb.emit(relax.op.astype(clamped, dtype))
