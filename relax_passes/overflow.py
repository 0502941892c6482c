"""Static overflow bounds: no integer intermediate of a program can wrap, for ANY input image.

Each op's worst case follows from the full range of its input dtypes (not from calibration data) and
its compile-time constants:

* Conv2d / Dense: ``max_c sum |w| * max|x| + |bias|`` must fit the int32 accumulator (per channel);
* Matmul: ``K * max|a| * max|b|`` must fit int32;
* Add: ``sum_i (max|x_i| * ratio_i + 1)`` must fit int32;
* every dyadic requantization: ``max|x| * m + 2**(k-1)`` must fit int64;
* the intops (LayerNorm, Shiftmax, GELU): their own ``<op>_bounds`` (lowest, highest, dtype) against
  that dtype's range.
"""
import numpy as np

from . import integer_program as ip
from .intops import gelu, layernorm, shiftmax
from .requantize import DTYPE_RANGE, dtype_magnitude

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _limit(dtype: str, lo: int, hi: int) -> int:
    """The magnitude ``[lo, hi]`` may reach in ``dtype`` (the lower end is one larger for negatives)."""
    low, high = (-(2**63), INT64_MAX) if dtype == "int64" else DTYPE_RANGE[dtype]
    return -low if -int(lo) > int(hi) else high


def _requantize_bound(max_in: int, dyadic) -> int:
    return int(max_in * int(np.max(dyadic.multiplier)) + (1 << (int(np.max(dyadic.shift)) - 1)))


def op_bounds(op: ip.IntOp, inputs: list[ip.QType]) -> list[tuple[str, int, int]]:
    """``(what, worst |value|, limit)`` for every wide intermediate of ``op`` given its input types."""
    mags = [dtype_magnitude(q.dtype) for q in inputs]
    if hasattr(op, "bounds"):  # the CNN ops (relax_passes.cnn_ops) state their own, from their inputs' magnitudes
        return op.bounds(mags)
    if isinstance(op, (ip.Conv2d, ip.Dense)):
        acc = ip.accumulator_magnitude(op, inputs[0].dtype)
        return [("accumulator", acc, INT32_MAX), ("requantize", _requantize_bound(acc, op.dyadic), INT64_MAX)]
    if isinstance(op, ip.Matmul):
        return [("accumulator", mags[0] * mags[1] * int(inputs[0].shape[-1]), INT32_MAX)]
    if isinstance(op, ip.Add):
        terms = [int(m * float(np.max(d.ratio))) + 1 for m, d in zip(mags, op.dyadics)]
        return [("sum", sum(terms), INT32_MAX)] + [(f"requantize input {i}", _requantize_bound(m, d), INT64_MAX)
                                              for i, (m, d) in enumerate(zip(mags, op.dyadics))]
    if isinstance(op, ip.Requantize):
        return [("requantize", _requantize_bound(mags[0], op.dyadic), INT64_MAX)]
    if isinstance(op, ip.NonLinear):
        if op.kind == "layer_norm":
            table = layernorm.layernorm_bounds(op.params)
        elif op.kind == "softmax":
            table = shiftmax.shiftmax_bounds(op.params, op.qtype.shape[-1])
        else:
            table = gelu.gelu_bounds(op.params)
        return [(name, max(-int(lo), int(hi)), _limit(dtype, lo, hi)) for name, (lo, hi, dtype) in table.items()]
    return []


def program_bounds(program: ip.Program) -> list[dict]:
    """One row per checked intermediate: ``op``, ``what``, ``bound``, ``limit``, ``ok``."""
    types = {program.input: ip.QType("uint8", program.input_shape, np.asarray(1.0))}
    rows = []
    for op in program.ops:
        for what, bound, limit in op_bounds(op, [types[name] for name in op.inputs]):
            rows.append({"op": op.out, "kind": type(op).__name__, "what": what, "bound": bound, "limit": limit,
                         "ok": bound <= limit})
        types[op.out] = op.qtype
    return rows
