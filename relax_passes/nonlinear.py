"""Lowering of LayerNorm, softmax and GELU onto the integer ops of ``relax_passes.intops``.

Dtype contract (from intops): I-LayerNorm int16 -> int8; Shiftmax int32 scores -> uint8 (scale 2**-8)
or int16 (scale 2**-15); GELU int8 -> int8. Each op's compile-time parameters come from the input scale, the
calibrated output scale and (Shiftmax, λ-ShiftGELU) the float calibration values of the input.
"""
import numpy as np
from tvm import relax

from common.errors import UserError

from . import integer_program as ip
from .intops import gelu, layernorm, shiftmax

GELU_VARIANTS = gelu.VARIANTS
SOFTMAX_DTYPES = tuple(shiftmax.OUTPUT_FRAC_BITS)


def _last_axis(var, axes, ndim):
    if [int(a) % ndim for a in axes] != [ndim - 1]:
        raise UserError(f"{var.name}: only normalisation over the last axis is supported")


def lower(integerizer, var: relax.Var, call: relax.Call, x):
    """Append the integer op for ``call`` (applied to IntValue ``x``); returns its IntValue."""
    kind = call.op.name
    ndim = len(x.qtype.shape)
    if kind == "relax.nn.layer_norm":
        _last_axis(var, call.attrs.axes, ndim)
        gamma, beta = (integerizer.const_of(a) for a in call.args[1:3])
        if gamma is None or beta is None:
            raise UserError(f"{var.name}: LayerNorm gamma and beta must be constants")
        x = integerizer.as_dtype(x, "int16")
        out_scale = integerizer.scale_of(var.name, "int8")
        params = layernorm.layernorm_params(float(x.qtype.scale), gamma, beta, out_scale)
        return integerizer._add(ip.NonLinear, (x,), "int8", x.qtype.shape, out_scale, source=var.name,
                                kind="layer_norm", params=params, reference_fn=layernorm.layernorm_reference,
                                emit_fn=layernorm.emit_layernorm)
    if kind == "relax.nn.softmax":
        _last_axis(var, [call.attrs.axis], ndim)
        in_scale = float(x.qtype.scale)
        scores = integerizer.calibration.values[x.source] / in_scale
        params = shiftmax.shiftmax_params(in_scale, np.round(scores), output_dtype=integerizer.softmax_dtype)
        return integerizer._add(ip.NonLinear, (x,), params.output_dtype, x.qtype.shape, params.output_scale,
                                source=var.name, kind="softmax", params=params,
                                reference_fn=shiftmax.shiftmax_reference, emit_fn=shiftmax.emit_shiftmax)
    return _lower_gelu(integerizer, var, x)


def _lower_gelu(integerizer, var, x):
    if x.qtype.dtype not in ("int8", "int32"):
        x = integerizer.as_dtype(x, "int8")
    in_scale = float(x.qtype.scale)
    out_scale = integerizer.scale_of(var.name, "int8")
    sample = np.round(integerizer.calibration.values[x.source] / in_scale)
    params = gelu.gelu_params(in_scale, out_scale, integerizer.gelu, sample)
    return integerizer._add(ip.NonLinear, (x,), "int8", x.qtype.shape, out_scale, source=var.name,
                            kind="gelu", params=params, reference_fn=gelu.gelu_reference, emit_fn=gelu.emit_gelu)
