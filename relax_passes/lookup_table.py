"""Integer lookup tables: any element-wise function of an int8 value, tabulated at compile time.

An int8 input has only 256 values, so ``f`` (here: sigmoid) is exactly represented by the
256 outputs ``clamp(round(f(q * S_in) / S_out))``, computed here in float64 Python at compile time.
On the device: ``y = table[q + 128]`` (one integer gather, no arithmetic on reals). This is exact up
to the output rounding: the same result as the float function evaluated on the dequantized input.
"""
from dataclasses import dataclass

import numpy as np
from tvm import relax

from .integer_program import IntOp
from .requantize import DTYPE_RANGE

INT8_CODES = np.arange(-128, 128, dtype=np.float64)
SIGMOID_SCALE = 1 / 255  # uint8 probability p = round(255 * sigmoid(x)): p >= 128 <=> sigmoid(x) >= 0.5
SIGMOID_CLIP = 6.25  # round(255 * sigmoid(x)) is 255 for x >= 6.24 (and 0 for x <= -6.24): a wider input range
# would only spend int8 codes on saturated outputs


def tabulate(function, in_scale: float, out_scale: float, dtype: str) -> np.ndarray:
    """``clamp(round(function(q * in_scale) / out_scale))`` for every int8 code ``q`` (index ``q + 128``)."""
    lo, hi = DTYPE_RANGE[dtype]
    return np.clip(np.round(function(INT8_CODES * in_scale) / out_scale), lo, hi).astype(dtype)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class Lookup(IntOp):
    """``table[q + 128]`` of an int8 value: a compile-time table of an element-wise function."""

    table: np.ndarray = None  # (256,) in the output dtype

    def reference(self, x):
        return self.table[x.astype(np.int16) + 128]

    def emit(self, bb, x):
        index = bb.emit(relax.op.add(bb.emit(relax.op.astype(x, "int32")), relax.const(np.int32(128), "int32")))
        return bb.emit(relax.op.take(relax.const(self.table), index, axis=0))

    def constants(self):
        return [self.table]

    def bounds(self, mags):
        """A signed input of magnitude ``m`` spans ``[-m, m - 1]``: indices ``[128 - m, m + 127]`` within the table."""
        return [("table index above", mags[0] + 127, len(self.table) - 1), ("table index below 0", mags[0] - 128, 0)]
