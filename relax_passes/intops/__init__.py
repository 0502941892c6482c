"""Integer-only non-linear ops of the I-Segmenter ViT: Shiftmax, I-LayerNorm, the GELU family.

Contract (every op, one file each; the quantizer's rewrite passes call these):

* ``<Op>Params``: frozen dataclass of compile-time integers (Python ints, int32/int64 numpy arrays,
  ``Dyadic`` multipliers). No float reaches the device.
* ``<op>_params(...)``: computes them in Python from float scales (and calibration data).
* ``<op>_reference(q, params) -> np.ndarray``: the numpy integer reference, THE definition.
* ``emit_<op>(bb, x, params) -> relax.Var``: the same arithmetic as integer Relax ops, emitted into
  an open dataflow block of ``bb``; bit-exact with the reference under ``tvm.compile(mod, "llvm")``.
* ``<op>_bounds(params, ...) -> {intermediate: (worst |value|, dtype)}`` for any integer input.

Ops (scales are the real value of one LSB; all zero points are 0):

===============  =========================================  ===========================================
op               input                                      output
===============  =========================================  ===========================================
Shiftmax         int32 scores ``[..., L]``, ``input_scale``   uint8 probabilities, scale 2**-8 (fixed)
                 = S_q * S_k / sqrt(head_dim): the CALLER
                 folds the attention scaling into it.
                 ``shiftmax_params(input_scale,
                 calibration=int32 scores)``
I-LayerNorm      int16 ``[..., C]``, ``input_scale``          int8, ``output_scale`` (calibrated, given)
                 ``layernorm_params(input_scale, gamma,
                 beta, output_scale)``
GELU             int8 or int32, ``input_scale``               int8, ``output_scale`` (calibrated, given)
                 ``gelu_params(input_scale, output_scale,
                 variant="lambda_shift"|"shift"|"poly",
                 calibration=integer input)``
===============  =========================================  ===========================================

Shared integer primitives (shift-exp, Newton isqrt) live in ``shift_math``; every rescale uses
``relax_passes.requantize``.
"""
from relax_passes.intops.gelu import GeluParams, emit_gelu, gelu_bounds, gelu_params, gelu_reference
from relax_passes.intops.layernorm import (LayerNormParams, emit_layernorm, layernorm_bounds, layernorm_params,
                                           layernorm_reference)
from relax_passes.intops.shiftmax import (OUTPUT_DTYPE as SHIFTMAX_OUTPUT_DTYPE, ShiftmaxParams, emit_shiftmax,
                                          shiftmax_bounds, shiftmax_params, shiftmax_reference)

__all__ = [
    "GeluParams", "gelu_params", "gelu_reference", "emit_gelu", "gelu_bounds",
    "LayerNormParams", "layernorm_params", "layernorm_reference", "emit_layernorm", "layernorm_bounds",
    "ShiftmaxParams", "shiftmax_params", "shiftmax_reference", "emit_shiftmax", "shiftmax_bounds",
    "SHIFTMAX_OUTPUT_DTYPE",
]
