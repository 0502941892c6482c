"""Integer GELU family: int8/int32 input -> int8, as ``x * gate(x)`` with an integer gate in [0, 2**15].

Every variant first brings the input onto an int16 grid ``xi`` with scale ``S_x = S_in * 2**j``
(an exact power-of-two rescale) that covers ``max(128 * S_out, 8)``: beyond it the int8 output
saturates or GELU is 0. Then ``out = requantize(xi * gate, S_x * 2**-15 / S_out) -> int8``.

Gates (``P = GATE_BITS = 15``):

* ``"shift"`` (I-ViT ShiftGELU): ``sigmoid(1.702 x)`` from the shift-exp.
  ``z = requantize(xi, S_x * alpha * log2(e) * 2**F)`` (log2 domain, ``F = 11``),
  ``e = shift_exp(-|z|) ~ 2**14 * exp(-|alpha x|)``,
  ``s = (e * 2**15 + (2**14 + e) // 2) // (2**14 + e) = sigmoid(-|alpha x|) * 2**15`` (one division
  per element, as in I-ViT, but in the symmetric form so the denominator is >= 2**14),
  ``gate = 2**15 - s`` for ``x > 0`` else ``s``.
* ``"lambda_shift"`` (λ-ShiftGELU, default): the same gate with two per-layer calibrated constants,
  ``gate = 2**15 * [x >= λ]`` for ``|x| >= λ`` (an input-range split: the long tail is exact ReLU,
  where ``x * sigmoid(1.702 x)`` is off by up to 0.02) and the sigmoid slope ``alpha`` refitted to
  the dense small-value region, where it also offsets the shift-exp chord's bias (up to +6 % on
  ``exp``, which flattens the sigmoid). ``(alpha, λ)`` minimise the output MSE (after int8
  requantization) on the calibration tensor over ``SLOPE_GRID x SPLIT_GRID``; plain ShiftGELU
  ``(1.702, inf)`` is one more candidate, so on the calibration data λ-ShiftGELU is never worse.
  (The second-order shift-exp was tried as a third λ-parameter and never won: the chord's bias with
  a larger ``alpha`` fits erf-GELU better than an exact sigmoid does.)
* ``"poly"`` (I-BERT i-GELU): ``gate = (1 + L(x / sqrt 2)) / 2`` with
  ``L(u) = sign(u) * (a * (min(|u|, -b) + b)**2 + 1)``, ``a = -0.2888``, ``b = -1.769``:
  ``u`` on a grid with ``b = -4096`` LSB, ``v = min(|u|, 4096) - 4096``,
  ``gate = 2**14 + sign(u) * (2**14 - requantize(v * v, |a| S_u**2 2**14))``.
"""
import math
from dataclasses import dataclass

import numpy as np
from tvm import relax

from relax_passes.intops.shift_math import LOG2E, emit_shift_exp, shift_exp_reference
from relax_passes.lookup_table import emit_lookup
from relax_passes.requantize import DTYPE_RANGE, Dyadic, emit_requantize, requantize_reference

VARIANTS = ("lambda_shift", "shift", "poly")
GATE_BITS = 15
INTERNAL_MAX = 2**15 - 1
INTERNAL_MIN_RANGE = 8.0
EXP_FRAC_BITS = 11
EXP_OCTAVES = 14
EXP_MANTISSA_BITS = 14
_LOG2_CLIP = (EXP_OCTAVES + 1) << EXP_FRAC_BITS
SHIFT_GELU_SLOPE = 1.702
NO_SPLIT = INTERNAL_MAX + 2   # tail threshold never reached by |xi| <= 2**15
SLOPE_GRID = tuple(np.round(np.arange(1.50, 1.9201, 0.02), 2))
SPLIT_GRID = tuple(np.arange(2.0, 6.01, 0.5)) + (math.inf,)
ERF_A, ERF_B = -0.2888, -1.769
ERF_KNEE = 4096               # -b in erf-argument LSB
CALIBRATION_SAMPLES = 16384
MULTIPLIER_ONE_SHIFT = 30     # Dyadic of 2**e: multiplier 2**30, shift 30 - e
_erf = np.frompyfunc(math.erf, 1, 1)


@dataclass(frozen=True)
class ShiftGate:
    """sigmoid(alpha x) gate; ``tail_threshold`` in xi LSB (``NO_SPLIT``: none)."""

    to_log2: Dyadic
    tail_threshold: int


@dataclass(frozen=True)
class ErfGate:
    """I-BERT second-order erf gate."""

    to_erf: Dyadic
    coefficient: Dyadic


@dataclass(frozen=True)
class GeluParams:
    """Compile-time integers of one integer GELU."""

    variant: str
    to_internal: Dyadic        # S_in -> S_x, an exact power of two
    gate: ShiftGate | ErfGate
    to_output: Dyadic          # S_x * 2**-GATE_BITS -> S_out


def gelu_params(input_scale: float, output_scale: float, variant: str = "lambda_shift",
                calibration: np.ndarray | None = None) -> GeluParams:
    """Params for one GELU; ``lambda_shift`` needs the calibration input (integers at ``input_scale``)."""
    if variant not in VARIANTS:
        raise ValueError(f"GELU variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "lambda_shift":
        if calibration is None:
            raise ValueError("lambda_shift GELU needs the calibration input to choose λ")
        return _params(input_scale, output_scale, "lambda_shift",
                       *calibrate_lambda(calibration, input_scale, output_scale))
    return _params(input_scale, output_scale, variant, SHIFT_GELU_SLOPE, math.inf)


def calibrate_lambda(calibration: np.ndarray, input_scale: float, output_scale: float) -> tuple[float, float]:
    """(alpha, λ) minimising the integer op's output MSE vs float GELU on the calibration input."""
    flat = np.asarray(calibration).reshape(-1)
    sample = flat[:: max(1, flat.size // CALIBRATION_SAMPLES)]
    target = gelu_float(sample.astype(np.float64) * input_scale)
    candidates = [(SHIFT_GELU_SLOPE, math.inf)] + [(float(slope), float(split)) for slope in SLOPE_GRID
                                                    for split in SPLIT_GRID]
    errors = [np.mean((gelu_reference(sample, _params(input_scale, output_scale, "lambda_shift", *candidate))
                       .astype(np.float64) * output_scale - target) ** 2) for candidate in candidates]
    return candidates[int(np.argmin(errors))]


def gelu_float(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float64, the accuracy yardstick."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64))


def _params(input_scale: float, output_scale: float, variant: str, slope: float, split: float) -> GeluParams:
    covered = max(128.0 * output_scale, INTERNAL_MIN_RANGE)
    exponent = math.ceil(math.log2(covered / (INTERNAL_MAX * input_scale)))
    internal_scale = input_scale * 2.0**exponent
    if variant == "poly":
        erf_scale = -ERF_B / ERF_KNEE
        gate = ErfGate(Dyadic.from_ratio(internal_scale / (math.sqrt(2.0) * erf_scale)),
                       Dyadic.from_ratio(-ERF_A * erf_scale**2 * 2.0 ** (GATE_BITS - 1)))
    else:
        threshold = NO_SPLIT if math.isinf(split) else min(NO_SPLIT, round(split / internal_scale))
        gate = ShiftGate(Dyadic.from_ratio(internal_scale * slope * LOG2E * 2.0**EXP_FRAC_BITS), threshold)
    return GeluParams(variant, Dyadic.from_ratio(2.0**-exponent), gate,
                      Dyadic.from_ratio(internal_scale * 2.0**-GATE_BITS / output_scale))


def gelu_bounds(params: GeluParams) -> dict[str, tuple[int, int, str]]:
    """``{intermediate: (lowest, highest, dtype)}`` over every int8/int32 input."""
    gate_one = 1 << GATE_BITS
    bounds = {"internal": (-(2**15), 2**15 - 1, "int16"), "gate": (0, gate_one, "int32"),
              "product": (-(2**15) * gate_one, (2**15 - 1) * gate_one, "int32")}
    if isinstance(params.gate, ShiftGate):
        exp_max = 1 << EXP_MANTISSA_BITS
        bounds.update(log2_domain=(-_LOG2_CLIP, _LOG2_CLIP, "int32"), exp=(0, exp_max, "int32"),
                      sigmoid_numerator=(exp_max // 2, exp_max * gate_one + exp_max, "int32"))
    else:
        bounds.update(erf_argument=(-(2**15), 2**15 - 1, "int16"), erf_square=(0, ERF_KNEE**2, "int32"))
    return bounds


def gelu_reference(q: np.ndarray, params: GeluParams, trace: dict | None = None) -> np.ndarray:
    """numpy integer GELU: int8/int32 at ``input_scale`` -> int8 at ``output_scale``."""
    xi = requantize_reference(np.asarray(q), params.to_internal, "int16").astype(np.int64)
    if isinstance(params.gate, ShiftGate):
        gate = _shift_gate_reference(xi, params.gate, trace)
    else:
        gate = _erf_gate_reference(xi, params.gate, trace)
    product = xi * gate
    if trace is not None:
        trace.update(internal=xi, gate=gate, product=product)
    return requantize_reference(product, params.to_output, "int8")


def _shift_gate_reference(xi, gate: ShiftGate, trace):
    z = np.clip(requantize_reference(xi, gate.to_log2, "int32").astype(np.int64), -_LOG2_CLIP, _LOG2_CLIP)
    e = shift_exp_reference(-np.abs(z), EXP_FRAC_BITS, EXP_OCTAVES, EXP_MANTISSA_BITS)
    numerator = (e << GATE_BITS) + ((e + (1 << EXP_MANTISSA_BITS)) >> 1)
    negative_half = numerator // (e + (1 << EXP_MANTISSA_BITS))
    sigmoid = np.where(xi > 0, (1 << GATE_BITS) - negative_half, negative_half)
    if trace is not None:
        trace.update(log2_domain=z, exp=e, sigmoid_numerator=numerator)
    return np.where(xi >= gate.tail_threshold, 1 << GATE_BITS, np.where(xi <= -gate.tail_threshold, 0, sigmoid))


def _erf_gate_reference(xi, gate: ErfGate, trace):
    u = requantize_reference(xi, gate.to_erf, "int16").astype(np.int64)
    v = np.minimum(np.abs(u), ERF_KNEE) - ERF_KNEE
    square = v * v
    if trace is not None:
        trace.update(erf_argument=u, erf_square=square)
    half = 1 << (GATE_BITS - 1)
    return half + np.sign(u) * (half - requantize_reference(square, gate.coefficient, "int32").astype(np.int64))


def gelu_table(params: GeluParams) -> np.ndarray:
    """``gelu_reference`` of every int8 code, index ``q + 128``: the whole op for an int8 input."""
    return gelu_reference(np.arange(-128, 128, dtype=np.int8), params)


def emit_gelu(bb: relax.BlockBuilder, x: relax.Expr, params: GeluParams) -> relax.Var:
    """Relax ops of ``gelu_reference`` (int8/int32 in, int8 out).

    An int8 input has only 256 codes, so the integer GELU is evaluated for all of them here, at compile
    time (:func:`gelu_table`), and the device does one gather instead of the arithmetic: the same integers,
    like TFLite Micro's int8 GELU table. An int32 input gets :func:`emit_gelu_arithmetic`."""
    if str(x.ty.dtype) == "int8":
        return emit_lookup(bb, x, gelu_table(params))
    return emit_gelu_arithmetic(bb, x, params)


def emit_gelu_arithmetic(bb: relax.BlockBuilder, x: relax.Expr, params: GeluParams) -> relax.Var:
    """Relax ops of ``gelu_reference`` evaluated on the device (int32 intermediates)."""
    xi = _emit_internal(bb, x, params.to_internal)
    if isinstance(params.gate, ShiftGate):
        gate = _emit_shift_gate(bb, xi, params.gate)
    else:
        gate = _emit_erf_gate(bb, xi, params.gate)
    product = bb.emit(relax.op.multiply(xi, gate))
    return emit_requantize(bb, product, params.to_output, "int8")


def _emit_internal(bb, x, to_internal: Dyadic):
    """``requantize(x, S_in -> S_x)`` to int16, as int32. ``S_in / S_x`` is a power of two: when it is
    ``2**up >= 1`` the product ``x * 2**30`` has ``shift`` zero low bits, so the rescale is exactly
    ``clip(x << up)`` (in int32 whenever ``|x| << up`` fits), one shift instead of 64-bit arithmetic."""
    up = int(MULTIPLIER_ONE_SHIFT - to_internal.shift)
    magnitude = -DTYPE_RANGE[str(x.ty.dtype)][0]
    if int(to_internal.multiplier) != 1 << MULTIPLIER_ONE_SHIFT or up < 0 or magnitude << up >= 2**31:
        return bb.emit(relax.op.astype(emit_requantize(bb, x, to_internal, "int16"), "int32"))
    shifted = relax.op.left_shift(relax.op.astype(x, "int32"), _i32(up))
    return bb.emit(relax.op.clip(shifted, -(2**15), 2**15 - 1))


def _emit_shift_gate(bb, xi, gate: ShiftGate):
    z = bb.emit(relax.op.clip(emit_requantize(bb, xi, gate.to_log2, "int32"), -_LOG2_CLIP, _LOG2_CLIP))
    e = emit_shift_exp(bb, relax.op.negative(relax.op.abs(z)), EXP_FRAC_BITS, EXP_OCTAVES, EXP_MANTISSA_BITS)
    denominator = bb.emit(relax.op.add(e, _i32(1 << EXP_MANTISSA_BITS)))
    numerator = bb.emit(relax.op.add(relax.op.left_shift(e, _i32(GATE_BITS)),
                                     relax.op.right_shift(denominator, _i32(1))))
    negative_half = bb.emit(relax.op.floor_divide(numerator, denominator))
    sigmoid = bb.emit(relax.op.where(relax.op.greater(xi, _i32(0)),
                                     relax.op.subtract(_i32(1 << GATE_BITS), negative_half), negative_half))
    split = relax.op.where(relax.op.less_equal(xi, _i32(-gate.tail_threshold)), _i32(0), sigmoid)
    return bb.emit(relax.op.where(relax.op.greater_equal(xi, _i32(gate.tail_threshold)),
                                  _i32(1 << GATE_BITS), split))


def _emit_erf_gate(bb, xi, gate: ErfGate):
    u = bb.emit(relax.op.astype(emit_requantize(bb, xi, gate.to_erf, "int16"), "int32"))
    v = bb.emit(relax.op.subtract(relax.op.minimum(relax.op.abs(u), _i32(ERF_KNEE)), _i32(ERF_KNEE)))
    term = emit_requantize(bb, relax.op.multiply(v, v), gate.coefficient, "int32")
    half = _i32(1 << (GATE_BITS - 1))
    return bb.emit(relax.op.add(half, relax.op.multiply(relax.op.sign(u), relax.op.subtract(half, term))))


def _i32(value: int) -> relax.Expr:
    return relax.const(value, "int32")
