"""Dyadic requantization — the one rescaling step that every integer op ends with.

A real ratio ``S_in / S_out`` becomes ``m / 2**k`` with a 31-bit multiplier ``m`` in
``[2**30, 2**31)`` (computed here, at compile time, in Python). On the device it is applied as

    y = clamp((x * m + 2**(k-1)) >> k, lo, hi)

in 64-bit integer arithmetic, with an arithmetic right shift: **round half up** (ties go
towards +inf). ``|x| < 2**31`` keeps ``x * m + 2**(k-1)`` inside int64.

``requantize_reference`` is the numpy reference; ``emit_requantize`` writes the same
arithmetic as Relax ops. Per-channel requantization passes array-valued ratios shaped to
broadcast against the accumulator (e.g. ``(C,)`` for the last axis).
"""
from dataclasses import dataclass

import numpy as np
from tvm import relax

MULTIPLIER_BITS = 31
MAX_SHIFT = 62

DTYPE_RANGE = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class Dyadic:
    """``multiplier / 2**shift`` ≈ a real ratio; both int64 arrays (0-d for per-tensor)."""

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
        return Dyadic(multiplier, shift)

    @property
    def ratio(self) -> np.ndarray:
        return self.multiplier.astype(np.float64) / 2.0**self.shift


def requantize_reference(x: np.ndarray, dyadic: Dyadic, dtype: str) -> np.ndarray:
    """numpy reference: ``clamp((x * m + 2**(k-1)) >> k)`` in int64, cast to ``dtype``."""
    lo, hi = DTYPE_RANGE[dtype]
    acc = x.astype(np.int64) * dyadic.multiplier + (np.int64(1) << (dyadic.shift - 1))
    return np.clip(acc >> dyadic.shift, lo, hi).astype(dtype)


def emit_requantize(bb: relax.BlockBuilder, x: relax.Expr, dyadic: Dyadic, dtype: str) -> relax.Var:
    """Emit the Relax ops of ``requantize_reference`` into ``bb``; returns the ``dtype`` result."""
    lo, hi = DTYPE_RANGE[dtype]
    wide = bb.emit(relax.op.astype(x, "int64"))
    product = bb.emit(relax.op.multiply(wide, relax.const(dyadic.multiplier, "int64")))
    rounded = bb.emit(relax.op.add(product, relax.const(np.int64(1) << (dyadic.shift - 1), "int64")))
    shifted = bb.emit(relax.op.right_shift(rounded, relax.const(dyadic.shift, "int64")))
    clamped = bb.emit(relax.op.clip(shifted, lo, hi))
    return bb.emit(relax.op.astype(clamped, dtype))
