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


def trim_flat_start(table: np.ndarray) -> tuple[np.ndarray, int]:
    """``(table[lo:], lo)``: without the repeats of its first value (an activation's table is flat where it
    saturates low), which clamping the index at ``lo`` gives back."""
    changes = np.flatnonzero(table[1:] != table[:-1])
    lo = int(changes[0]) if changes.size else len(table) - 1
    return table[lo:], lo


def emit_lookup(bb: relax.BlockBuilder, x: relax.Expr, table: np.ndarray) -> relax.Var:
    """``table[x + 128]`` of an int8 ``x``: one gather from a constant stored without its flat start
    (:func:`trim_flat_start`). The index is ``clip(x + 128 - lo, 0, 255)``: one ``USAT`` on Arm (the upper bound
    never binds; trimming a flat end as well would cost a second clamp, about five instructions)."""
    kept, lo = trim_flat_start(table)
    index = relax.op.add(bb.emit(relax.op.astype(x, "int32")), relax.const(np.int32(128 - lo), "int32"))
    if lo > 0:
        index = relax.op.clip(index, 0, 255)
    return bb.emit(relax.op.take(relax.const(kept), bb.emit(index), axis=0))


@dataclass
class Lookup(IntOp):
    """``table[q + 128]`` of an int8 value: a compile-time table of an element-wise function."""

    table: np.ndarray = None  # (256,) in the output dtype

    def reference(self, x):
        return self.table[x.astype(np.int16) + 128]

    def emit(self, bb, x):
        return emit_lookup(bb, x, self.table)

    def constants(self):
        return [self.table]

    def bounds(self, mags):
        """A signed input of magnitude ``m`` spans ``[-m, m - 1]``: indices ``[128 - m, m + 127]`` within the table."""
        return [("table index above", mags[0] + 127, len(self.table) - 1), ("table index below 0", mags[0] - 128, 0)]
