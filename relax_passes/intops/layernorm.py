"""I-LayerNorm: integer LayerNorm over the last axis, int16 residual stream -> int8.

Input ``x`` int16 ``[..., C]`` with per-tensor scale ``input_scale``; float ``gamma``/``beta`` are
folded at compile time; output int8 with the calibrated ``output_scale``.

    s    = sum(x)                                   |s| <= C * 2**15                int32
    mean = (s * 2**9 + C) // (2*C)                  mean * 2**8, round half up      int64
    d    = (x << 8) - mean                          |d| < 2**24                     int32
    v    = sum(d * d)                               <= C * 2**48 < 4**31            int64
    r    = max(isqrt(v), 1)                         Newton from 2**31               int64
    inv  = 2**54 // r                               one division per row            int64
    h    = (d * inv + 2**33) >> 34                  = d / r * 2**20, |h| <= 2**20    int64 -> int32
    g    = clip(requantize(sign_c * h, |gamma_c| sqrt(C) 2**(8-20) / S_out), +-2**30)    int32
    out  = requantize(g + B_c, 2**-8) -> int8,      B_c = round(beta_c / S_out * 2**8)

The mean keeps 8 fraction bits, so ``d`` is exact to 2**-9 input LSB and ``r`` resolves the
standard deviation to 2**-8 input LSB even for nearly constant rows. ``d**2 <= v`` gives
``|d| <= r``, hence ``|d * inv| <= 2**54``. ``h / 2**20 = (x - mean) / sqrt(C var)``, so
``h * sqrt(C) / 2**20`` is the normalised value; gamma (its sign as an integer factor, its
magnitude in the per-channel dyadic multiplier) and beta (added with 8 extra fraction bits, then
one rounding shift) give the output. A zero-variance row gives ``d = 0`` and therefore ``beta``.
"""
import math
from dataclasses import dataclass

import numpy as np
from tvm import relax

from relax_passes.intops.shift_math import emit_isqrt, isqrt_reference
from relax_passes.requantize import Dyadic, emit_requantize, requantize_reference, uniform_as_scalar

MEAN_FRAC_BITS = 8
START_BITS = 31          # 2**31 >= sqrt(C * 2**48) for C <= 2**14
RECIPROCAL_BITS = 54
NORMALISED_BITS = 20     # h = d / r * 2**NORMALISED_BITS
EXTRA_BITS = 8           # fraction bits of the output kept until beta is added
GAMMA_CLIP = 2**30
MAX_CHANNELS = 2**14
BIAS_LIMIT = 2**29
_NORMALISE_SHIFT = RECIPROCAL_BITS - NORMALISED_BITS
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
    """``{intermediate: (lowest, highest, dtype)}`` over every int16 input.

    ``d**2 <= v`` gives ``|d| <= isqrt(v) = r``, hence ``|d * inv| <= 2**54``.
    """
    c = params.channels
    centred = _CENTRED_MAX
    product = 2**RECIPROCAL_BITS + 2 ** (_NORMALISE_SHIFT - 1)
    normalised = product >> _NORMALISE_SHIFT
    gamma = normalised * int(params.gamma_scale.multiplier.max()) + 2 ** (int(params.gamma_scale.shift.max()) - 1)
    return {
        "row_sum": (-c * 2**15, c * (2**15 - 1), "int32"),
        "centred": (-centred, centred, "int32"),
        "variance_sum": (0, c * centred**2, "int64"),
        "centred_times_reciprocal": (-product, product, "int64"),
        "normalised": (-normalised, normalised, "int32"),
        "gamma_product": (-gamma, gamma, "int64"),
        "gamma_plus_beta": (-GAMMA_CLIP - BIAS_LIMIT, GAMMA_CLIP + BIAS_LIMIT, "int32"),
    }


def layernorm_reference(q: np.ndarray, params: LayerNormParams, trace: dict | None = None) -> np.ndarray:
    """numpy integer LayerNorm over the last axis: int16 -> int8."""
    x = q.astype(np.int64)
    c = params.channels
    total = x.sum(axis=-1, keepdims=True)
    mean = ((total << (MEAN_FRAC_BITS + 1)) + c) // (2 * c)
    d = (x << MEAN_FRAC_BITS) - mean
    variance_sum = (d * d).sum(axis=-1, keepdims=True)
    root = np.maximum(isqrt_reference(variance_sum, START_BITS), 1)
    reciprocal = (1 << RECIPROCAL_BITS) // root
    product = d * reciprocal + (1 << (_NORMALISE_SHIFT - 1))
    normalised = product >> _NORMALISE_SHIFT
    scaled = requantize_reference(normalised * params.gamma_sign, params.gamma_scale, "int32").astype(np.int64)
    shifted = np.clip(scaled, -GAMMA_CLIP, GAMMA_CLIP) + params.beta_bias
    if trace is not None:
        trace.update(row_sum=total, centred=d, variance_sum=variance_sum, centred_times_reciprocal=product,
                     normalised=normalised, gamma_plus_beta=shifted,
                     gamma_product=normalised * params.gamma_sign * params.gamma_scale.multiplier
                     + (np.int64(1) << (params.gamma_scale.shift - 1)))
    return requantize_reference(shifted, _EXTRA_BITS_DOWN, "int8")


def emit_layernorm(bb: relax.BlockBuilder, x: relax.Expr, params: LayerNormParams) -> relax.Var:
    """Relax ops of ``layernorm_reference`` (int16 in, int8 out)."""
    c = params.channels
    x32 = bb.emit(relax.op.astype(x, "int32"))
    total = bb.emit(relax.op.sum(x32, axis=-1, keepdims=True))
    wide_total = relax.op.multiply(relax.op.astype(total, "int64"), _c(1 << (MEAN_FRAC_BITS + 1), "int64"))
    mean = bb.emit(relax.op.astype(relax.op.floor_divide(relax.op.add(wide_total, _c(c, "int64")), _c(2 * c, "int64")),
                                   "int32"))
    centred = bb.emit(relax.op.subtract(relax.op.multiply(x32, _c(1 << MEAN_FRAC_BITS, "int32")), mean))
    d = bb.emit(relax.op.astype(centred, "int64"))
    variance_sum = bb.emit(relax.op.sum(relax.op.multiply(d, d), axis=-1, keepdims=True))
    root = bb.emit(relax.op.maximum(emit_isqrt(bb, variance_sum, START_BITS), _c(1, "int64")))
    reciprocal = bb.emit(relax.op.floor_divide(_c(1 << RECIPROCAL_BITS, "int64"), root))
    product = bb.emit(relax.op.add(relax.op.multiply(d, reciprocal), _c(1 << (_NORMALISE_SHIFT - 1), "int64")))
    normalised = bb.emit(relax.op.astype(relax.op.right_shift(product, _c(_NORMALISE_SHIFT, "int64")), "int32"))
    signed = bb.emit(relax.op.multiply(normalised, relax.const(params.gamma_sign, "int32")))
    scaled = emit_requantize(bb, signed, params.gamma_scale, "int32")
    shifted = bb.emit(relax.op.add(relax.op.clip(scaled, -GAMMA_CLIP, GAMMA_CLIP),
                                   relax.const(params.beta_bias, "int32")))
    return emit_requantize(bb, shifted, _EXTRA_BITS_DOWN, "int8")


_EXTRA_BITS_DOWN = Dyadic.from_ratio(2.0**-EXTRA_BITS)


def _c(value: int, dtype: str) -> relax.Expr:
    return relax.const(value, dtype)
