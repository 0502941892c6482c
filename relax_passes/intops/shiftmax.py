"""Shiftmax: integer softmax over the last axis (I-ViT), int32 attention scores -> uint8 or int16 probabilities.

Input: the int32 accumulator ``x`` of ``q . k^T`` whose real value is ``x * input_scale``; the
CALLER folds the attention scaling ``1/sqrt(head_dim)`` into ``input_scale``.
Output, zero point 0: by default ``OUTPUT_DTYPE`` uint8 with scale 2**-8 (probability 1 saturates
at 255/256); ``output_dtype="int16"`` gives scale 2**-15 (0..32767), which the ablation shows is
needed when attention is spread over hundreds of tokens (p ~ 1/L is ~1 uint8 LSB).

    x   = clip(x, -2**30, 2**30 - 1)                                   int32
    d   = x - max(x, axis=-1)                                          int32, <= 0
    y   = clip(requantize(d, input_scale * log2(e) * 2**F), -(n+1)*2**F, 0)   int16 (log2 domain)
    e   = shift_exp(y, F, n, M)           ~ 2**M * exp(d * input_scale) in [0, 2**M]   int16 range
    s   = sum(e, axis=-1)                 in [2**M, L * 2**M]                          int32
    r   = 2**30 // s                      (one division per row, its own kernel)       int32
    p   = min((e * r + 2**(29 - B)) >> (30 - B), max)        0 <= e * r <= 2**30     int32

``M = MANTISSA_BITS = 14``. ``n`` (octaves of the exponential kept, I-ViT's ``n``) is chosen per
layer from calibration scores: the smallest ``n`` whose flushed tail (terms below ``2**-n`` of the
row maximum) costs every calibration row less than a quarter output LSB of probability mass.
``F = 15 - ceil(log2(n + 1))`` is then the finest log2-domain resolution that keeps ``y`` in int16.
``exp_order=2`` adds the shift-exp's one-multiply quadratic correction (chord error 6.1 % -> 0.27 %).
``B`` = output fraction bits (8 or 15). The reciprocal's floor costs at most ``e / 2**(30 - B)``
(``2**-8`` uint8 / ``1/2`` int16) output LSB.
"""
import math
from dataclasses import dataclass

import numpy as np
from tvm import relax

from relax_passes.intops.shift_math import EXP_ORDERS, LOG2E, emit_row_boundary, emit_shift_exp, shift_exp_reference
from relax_passes.requantize import DTYPE_RANGE, Dyadic, emit_requantize, requantize_reference

OUTPUT_DTYPE = "uint8"
OUTPUT_FRAC_BITS = {"uint8": 8, "int16": 15}
MANTISSA_BITS = 14
RECIPROCAL_BITS = 30
INPUT_CLIP = 2**30
MAX_ROW_LENGTH = 2**16


@dataclass(frozen=True)
class ShiftmaxParams:
    """Compile-time integers of one Shiftmax layer."""

    to_log2: Dyadic   # input LSB -> log2-domain LSB (2**-frac_bits octave)
    frac_bits: int    # F
    octaves: int      # n: exp terms below 2**-n of the row max become 0
    output_dtype: str = OUTPUT_DTYPE
    exp_order: int = 1  # 1: I-ViT's chord 2**u ~ 1 + u; 2: plus the one-multiply quadratic correction

    @property
    def output_shift(self) -> int:
        return RECIPROCAL_BITS - OUTPUT_FRAC_BITS[self.output_dtype]

    @property
    def output_scale(self) -> float:
        return 2.0**-OUTPUT_FRAC_BITS[self.output_dtype]


def shiftmax_params(input_scale: float, calibration: np.ndarray | None = None,
                    octaves: int | None = None, output_dtype: str = OUTPUT_DTYPE, exp_order: int = 1) -> ShiftmaxParams:
    """Params from the real scale of the scores and calibration scores (int32 accumulators).

    ``octaves`` overrides the calibrated ``n``; with neither, ``n = MANTISSA_BITS`` (keep all).
    """
    if output_dtype not in OUTPUT_FRAC_BITS:
        raise ValueError(f"Shiftmax output_dtype must be one of {tuple(OUTPUT_FRAC_BITS)}, got {output_dtype!r}")
    if exp_order not in EXP_ORDERS:
        raise ValueError(f"Shiftmax exp_order must be one of {EXP_ORDERS}, got {exp_order!r}")
    if octaves is None:
        octaves = (MANTISSA_BITS if calibration is None
                   else calibrate_octaves(calibration, input_scale, OUTPUT_FRAC_BITS[output_dtype]))
    if not 1 <= octaves <= MANTISSA_BITS:
        raise ValueError(f"Shiftmax octaves must be in [1, {MANTISSA_BITS}], got {octaves}")
    frac_bits = 15 - math.ceil(math.log2(octaves + 1))
    return ShiftmaxParams(Dyadic.from_ratio(input_scale * LOG2E * 2.0**frac_bits), frac_bits, octaves, output_dtype,
                          exp_order)


def calibrate_octaves(calibration: np.ndarray, input_scale: float, output_frac_bits: int = 8) -> int:
    """Smallest n whose flushed exp tail loses < 1/4 output LSB of mass on every calibration row."""
    octave_gap = (calibration.max(axis=-1, keepdims=True) - calibration.astype(np.float64)) * input_scale * LOG2E
    weights = np.exp2(-octave_gap)
    row_sum = weights.sum(axis=-1)
    tolerance = 0.25 * 2.0**-output_frac_bits
    for octaves in range(1, MANTISSA_BITS + 1):
        lost = np.where(octave_gap > octaves, weights, 0.0).sum(axis=-1) / row_sum
        if np.all(lost < tolerance):
            return octaves
    return MANTISSA_BITS


def shiftmax_bounds(params: ShiftmaxParams, row_length: int) -> dict[str, tuple[int, int, str]]:
    """``{intermediate: (lowest, highest, dtype)}`` over every int32 input with rows of ``row_length``."""
    if not 1 <= row_length <= MAX_ROW_LENGTH:
        raise ValueError(f"Shiftmax rows must have 1..{MAX_ROW_LENGTH} elements, got {row_length}")
    exp_max = 1 << MANTISSA_BITS
    rounding = 1 << (params.output_shift - 1)
    return {
        "scores_minus_max": (-(2 * INPUT_CLIP - 1), 0, "int32"),
        "log2_domain": (-((params.octaves + 1) << params.frac_bits), 0, "int16"),
        "exp": (0, exp_max, "int32"),  # emitted as int32; fits int16 (2**14)
        "exp_sum": (exp_max, row_length * exp_max, "int32"),
        "reciprocal": ((1 << RECIPROCAL_BITS) // (row_length * exp_max), (1 << RECIPROCAL_BITS) // exp_max, "int32"),
        "exp_times_reciprocal": (rounding, (1 << RECIPROCAL_BITS) + rounding, "int32"),
    }


def shiftmax_reference(q: np.ndarray, params: ShiftmaxParams, trace: dict | None = None) -> np.ndarray:
    """numpy integer Shiftmax over the last axis: int32 scores -> probabilities (``params.output_scale``)."""
    x = np.clip(q.astype(np.int64), -INPUT_CLIP, INPUT_CLIP - 1)
    d = x - x.max(axis=-1, keepdims=True)
    lower = -((params.octaves + 1) << params.frac_bits)
    y = np.clip(requantize_reference(d, params.to_log2, "int32").astype(np.int64), lower, 0)
    e = shift_exp_reference(y, params.frac_bits, params.octaves, MANTISSA_BITS, params.exp_order)
    total = e.sum(axis=-1, keepdims=True)
    reciprocal = (1 << RECIPROCAL_BITS) // total
    scaled = e * reciprocal + (1 << (params.output_shift - 1))
    if trace is not None:
        trace.update(scores_minus_max=d, log2_domain=y, exp=e, exp_sum=total, reciprocal=reciprocal,
                     exp_times_reciprocal=scaled)
    return np.minimum(scaled >> params.output_shift, DTYPE_RANGE[params.output_dtype][1]).astype(params.output_dtype)


def emit_shiftmax(bb: relax.BlockBuilder, x: relax.Expr, params: ShiftmaxParams) -> relax.Var:
    """Relax ops of ``shiftmax_reference`` (int32 in, uint8/int16 out; int16/int32 intermediates)."""
    scores = bb.emit(relax.op.clip(relax.op.astype(x, "int32"), -INPUT_CLIP, INPUT_CLIP - 1))
    d = bb.emit(relax.op.subtract(scores, relax.op.max(scores, axis=-1, keepdims=True)))
    lower = -((params.octaves + 1) << params.frac_bits)
    log2_domain = emit_requantize(bb, d, params.to_log2, "int16")
    y = bb.emit(relax.op.clip(log2_domain, lower, 0))
    e = emit_shift_exp(bb, y, params.frac_bits, params.octaves, MANTISSA_BITS, params.exp_order)
    total = bb.emit(relax.op.sum(e, axis=-1, keepdims=True))
    reciprocal = emit_row_boundary(bb, relax.op.floor_divide(_i32(1 << RECIPROCAL_BITS), total))
    scaled = bb.emit(relax.op.add(relax.op.multiply(e, reciprocal), _i32(1 << (params.output_shift - 1))))
    shifted = bb.emit(relax.op.right_shift(scaled, _i32(params.output_shift)))
    top = _i32(DTYPE_RANGE[params.output_dtype][1])
    return bb.emit(relax.op.astype(relax.op.minimum(shifted, top), params.output_dtype))


def _i32(value: int) -> relax.Expr:
    return relax.const(value, "int32")
