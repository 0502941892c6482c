"""I-LayerNorm: integer LayerNorm over the last axis, int16 residual stream -> int8.

Input ``x`` int16 ``[..., C]`` with per-tensor scale ``input_scale``; float ``gamma``/``beta`` are
folded at compile time; output int8 with the calibrated ``output_scale``. Per row: one 32-bit
division and four 32-bit Newton steps, no 64-bit division; per element: one 64-bit multiply.

    s    = sum(x)                                   |s| <= C * 2**15                int32
    mean = requantize(s, 2**8 / C)                  mean * 2**8, round half up      int32
    d    = (x << 8) - mean                          |d| < 2**24                     int32
    v    = sum(d * d)                               <= C * 2**48 < 4**31            int64
    t    = max(floor(log4 v) - 14, -7)              base-4 exponent, binary search   int64
    w    = max((v >> 2t) << -2t, 2**28)             in [2**28, 2**30) (one shift is 0)   int32
    r    = isqrt(w)                                 4 Newton steps from 2**15        [2**14, 2**15)
    inv  = 2**30 // r                               one division per row            (2**15, 2**16]
    m    = inv << (16 - t)                          per-row multiplier              <= 2**39   int64
    h    = (d * m + 2**25) >> 26                    = d / sqrt(v) * 2**20           int64 -> int32
    g    = clip(requantize(sign_c * h, |gamma_c| sqrt(C) 2**(8-20) / S_out), +-2**30)    int32
    out  = requantize(g + B_c, 2**-8) -> int8,      B_c = round(beta_c / S_out * 2**8)

The mean keeps 8 fraction bits, so ``d`` is exact to 2**-9 input LSB and the standard deviation
is resolved even for nearly constant rows. The dyadic ``2**8 / C`` is within 2**-31 relative, so the
mean is off by < 2**-8 of its LSB before rounding: a constant row gets ``d = 0`` exactly, and a
non-constant row has two ``d`` 256 apart, so ``v = 0`` or ``v >= 2**14`` (``t >= -7`` and the
``2**28`` floor only ever act on ``v = 0``). ``sqrt(v) ~ r * 2**t`` to 2**-14 relative (``r`` has
15 bits), ``inv`` to 2**-15. ``h`` equals ``(d * inv + 2**(9+t)) >> (10 + t)`` exactly (numerator and
denominator scaled by ``2**(16-t)``), with one multiplier per row and one constant shift (the row
values are a kernel of their own, see ``emit_row_boundary``). Bounds: ``d**2 <= v < (r + 1)**2 4**t``
gives ``|d| < (r + 1) 2**t``, so ``|d * m| < 2**46 (1 + 2**-14)`` for every ``t``, and ``|h| <= 2**20 + 2**6``.
``h / 2**20 = (x - mean) / sqrt(C var)``, so ``h * sqrt(C) / 2**20`` is the normalised value; gamma
(its sign as an integer factor, its magnitude in the per-channel dyadic multiplier) and beta
(added with 8 extra fraction bits, then one rounding shift) give the output. A zero-variance row
gives ``d = 0`` and therefore ``beta``.
"""
import math
from dataclasses import dataclass

import numpy as np
from tvm import relax

from relax_passes.intops.shift_math import (base4_exponent_reference, emit_base4_exponent, emit_isqrt,
                                            emit_row_boundary, isqrt_reference)
from relax_passes.requantize import Dyadic, emit_requantize, emit_widened, requantize_reference, uniform_as_scalar

MEAN_FRAC_BITS = 8
MAX_EXPONENT = 30        # floor(log4 v) for v <= C * 2**48 < 4**31
SQRT_BITS = 15           # w in [4**(SQRT_BITS-1), 4**SQRT_BITS): r = isqrt(w) has SQRT_BITS bits
LOWEST_EXPONENT = -7     # v = 0 or v >= 2**14 = 4**(SQRT_BITS - 1 + LOWEST_EXPONENT)
RECIPROCAL_BITS = 30
NORMALISED_BITS = 20     # h = d / sqrt(v) * 2**NORMALISED_BITS
EXTRA_BITS = 8           # fraction bits of the output kept until beta is added
GAMMA_CLIP = 2**30
MAX_CHANNELS = 2**14
BIAS_LIMIT = 2**29
_NORMALISE_SHIFT = RECIPROCAL_BITS - NORMALISED_BITS            # + t
_MULTIPLIER_SHIFT = _NORMALISE_SHIFT + MAX_EXPONENT - (SQRT_BITS - 1)  # the largest t: one shift for all rows
_W_LOW = 1 << (2 * SQRT_BITS - 2)
_CENTRED_MAX = (2**16 - 1) << MEAN_FRAC_BITS


@dataclass(frozen=True)
class LayerNormParams:
    """Compile-time integers of one I-LayerNorm (per-channel arrays have shape ``(C,)``)."""

    channels: int
    gamma_sign: np.ndarray   # int32 in {-1, 0, 1} (0-d when uniform, as every per-channel array here)
    gamma_scale: Dyadic      # |gamma_c| sqrt(C) 2**(EXTRA-NORMALISED) / S_out, per channel
    beta_bias: np.ndarray    # int32, beta_c / S_out * 2**EXTRA_BITS, |.| <= 2**29


def layernorm_params(input_scale: float, gamma: np.ndarray, beta: np.ndarray, output_scale: float) -> LayerNormParams:
    """Fold float ``gamma``/``beta`` and ``output_scale`` into per-channel integers.

    ``input_scale`` cancels out of LayerNorm and is accepted only for a uniform interface.
    """
    del input_scale
    gamma = np.asarray(gamma, dtype=np.float64).reshape(-1)
    beta = np.asarray(beta, dtype=np.float64).reshape(-1)
    channels = gamma.size
    if beta.size != channels or not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"LayerNorm gamma/beta must both have C in [1, {MAX_CHANNELS}] elements")
    ratio = np.abs(gamma) * math.sqrt(channels) * 2.0 ** (EXTRA_BITS - NORMALISED_BITS) / output_scale
    negligible = ratio < 2.0**-31  # contributes < 2**-11 output LSB even at |h| = 2**20 * sqrt(C)
    gamma_sign = uniform_as_scalar(np.where(negligible, 0, np.sign(gamma)).astype(np.int32))
    bias = np.round(beta / output_scale * 2.0**EXTRA_BITS)
    if np.any(np.abs(bias) > BIAS_LIMIT):
        raise ValueError("LayerNorm |beta| / output_scale exceeds 2**21: output_scale is mis-calibrated")
    return LayerNormParams(channels, gamma_sign, Dyadic.from_ratio(np.where(negligible, 1.0, ratio)),
                           uniform_as_scalar(bias.astype(np.int32)))


def layernorm_bounds(params: LayerNormParams) -> dict[str, tuple[int, int, str]]:
    """``{intermediate: (lowest, highest, dtype)}`` over every int16 input (derivation: module docstring)."""
    c = params.channels
    centred = _CENTRED_MAX
    variance = c * centred**2
    top = int(_exponent(base4_exponent_reference(variance, MAX_EXPONENT)))
    product = (1 << (_MULTIPLIER_SHIFT + NORMALISED_BITS)) + (1 << (_MULTIPLIER_SHIFT + NORMALISED_BITS - SQRT_BITS + 1)) \
        + (1 << (_MULTIPLIER_SHIFT - 1))
    normalised = product >> _MULTIPLIER_SHIFT
    gamma = normalised * int(params.gamma_scale.multiplier.max()) + 2 ** (int(params.gamma_scale.shift.max()) - 1)
    return {
        "row_sum": (-c * 2**15, c * (2**15 - 1), "int32"),
        "centred": (-centred, centred, "int32"),
        "variance_sum": (0, variance, "int64"),
        "exponent": (LOWEST_EXPONENT, top, "int64"),
        "normalised_variance": (_W_LOW, 4 * _W_LOW - 1, "int32"),
        "root": (1 << (SQRT_BITS - 1), (1 << SQRT_BITS) - 1, "int32"),
        "reciprocal": ((1 << RECIPROCAL_BITS) >> SQRT_BITS, (1 << RECIPROCAL_BITS) >> (SQRT_BITS - 1), "int32"),
        "row_multiplier": ((1 << RECIPROCAL_BITS) >> SQRT_BITS << (_MULTIPLIER_SHIFT - _NORMALISE_SHIFT - top),
                           (1 << RECIPROCAL_BITS) >> (SQRT_BITS - 1) << (_MULTIPLIER_SHIFT - _NORMALISE_SHIFT - LOWEST_EXPONENT),
                           "int64"),
        "centred_times_multiplier": (-product, product, "int64"),
        "normalised": (-normalised, normalised, "int32"),
        "gamma_product": (-gamma, gamma, "int64"),
        "gamma_plus_beta": (-GAMMA_CLIP - BIAS_LIMIT, GAMMA_CLIP + BIAS_LIMIT, "int32"),
    }


def _exponent(base4_exponent):
    """t: the shift that brings v into [4**(SQRT_BITS-1), 4**SQRT_BITS)."""
    return np.maximum(base4_exponent - (SQRT_BITS - 1), LOWEST_EXPONENT)


def layernorm_reference(q: np.ndarray, params: LayerNormParams, trace: dict | None = None) -> np.ndarray:
    """numpy integer LayerNorm over the last axis: int16 -> int8."""
    x = q.astype(np.int64)
    total = x.sum(axis=-1, keepdims=True)
    mean = requantize_reference(total, _mean_scale(params.channels), "int32").astype(np.int64)
    d = (x << MEAN_FRAC_BITS) - mean
    variance_sum = (d * d).sum(axis=-1, keepdims=True)
    exponent = _exponent(base4_exponent_reference(variance_sum, MAX_EXPONENT))
    w = np.maximum((variance_sum >> (2 * np.maximum(exponent, 0))) << (2 * np.maximum(-exponent, 0)), _W_LOW)
    root = isqrt_reference(w, SQRT_BITS, _W_LOW)
    reciprocal = (1 << RECIPROCAL_BITS) // root
    row_multiplier = reciprocal << (_MULTIPLIER_SHIFT - _NORMALISE_SHIFT - exponent)
    product = d * row_multiplier + (1 << (_MULTIPLIER_SHIFT - 1))
    normalised = product >> _MULTIPLIER_SHIFT
    scaled = requantize_reference(normalised * params.gamma_sign, params.gamma_scale, "int32").astype(np.int64)
    shifted = np.clip(scaled, -GAMMA_CLIP, GAMMA_CLIP) + params.beta_bias
    if trace is not None:
        trace.update(row_sum=total, centred=d, variance_sum=variance_sum, exponent=exponent, normalised_variance=w,
                     root=root, reciprocal=reciprocal, row_multiplier=row_multiplier, centred_times_multiplier=product,
                     normalised=normalised, gamma_plus_beta=shifted,
                     gamma_product=normalised * params.gamma_sign * params.gamma_scale.multiplier
                     + (np.int64(1) << (params.gamma_scale.shift - 1)))
    return requantize_reference(shifted, _EXTRA_BITS_DOWN, "int8")


def emit_layernorm(bb: relax.BlockBuilder, x: relax.Expr, params: LayerNormParams) -> relax.Var:
    """Relax ops of ``layernorm_reference`` (int16 in, int8 out)."""
    x32 = bb.emit(relax.op.astype(x, "int32"))
    total = bb.emit(relax.op.sum(x32, axis=-1, keepdims=True))
    mean = emit_row_boundary(bb, emit_requantize(bb, total, _mean_scale(params.channels), "int32"))
    centred = bb.emit(relax.op.subtract(relax.op.multiply(x32, _c(1 << MEAN_FRAC_BITS, "int32")), mean))
    # d stays int32 in memory; each consumer widens it itself (32x32->64-bit multiplies)
    d = bb.emit(relax.op.astype(centred, "int64"))
    variance_sum = bb.emit(relax.op.sum(relax.op.multiply(d, d), axis=-1, keepdims=True))
    exponent = bb.emit(relax.op.maximum(relax.op.subtract(emit_base4_exponent(bb, variance_sum, MAX_EXPONENT),
                                                          _c(SQRT_BITS - 1, "int64")), _c(LOWEST_EXPONENT, "int64")))
    down = relax.op.multiply(relax.op.maximum(exponent, _c(0, "int64")), _c(2, "int64"))
    up = relax.op.multiply(relax.op.maximum(relax.op.negative(exponent), _c(0, "int64")), _c(2, "int64"))
    w = bb.emit(relax.op.astype(relax.op.maximum(relax.op.left_shift(relax.op.right_shift(variance_sum, down), up),
                                                 _c(_W_LOW, "int64")), "int32"))
    root = emit_isqrt(bb, w, SQRT_BITS, _W_LOW)
    reciprocal = relax.op.astype(relax.op.floor_divide(_c(1 << RECIPROCAL_BITS, "int32"), root), "int64")
    row_multiplier = emit_row_boundary(bb, relax.op.left_shift(
        reciprocal, relax.op.subtract(_c(_MULTIPLIER_SHIFT - _NORMALISE_SHIFT, "int64"), exponent)))
    d = bb.emit(relax.op.astype(centred, "int64"))
    product = bb.emit(relax.op.add(relax.op.multiply(d, row_multiplier), _c(1 << (_MULTIPLIER_SHIFT - 1), "int64")))
    normalised = bb.emit(relax.op.astype(relax.op.right_shift(product, _c(_MULTIPLIER_SHIFT, "int64")), "int32"))
    signed = bb.emit(relax.op.multiply(normalised, emit_widened(params.gamma_sign, "int32")))
    scaled = emit_requantize(bb, signed, params.gamma_scale, "int32")
    shifted = bb.emit(relax.op.add(relax.op.clip(scaled, -GAMMA_CLIP, GAMMA_CLIP),
                                   emit_widened(params.beta_bias, "int32")))
    return emit_requantize(bb, shifted, _EXTRA_BITS_DOWN, "int8")


def _mean_scale(channels: int) -> Dyadic:
    return Dyadic.from_ratio(2.0**MEAN_FRAC_BITS / channels)


_EXTRA_BITS_DOWN = Dyadic.from_ratio(2.0**-EXTRA_BITS)


def _c(value: int, dtype: str) -> relax.Expr:
    return relax.const(value, dtype)
