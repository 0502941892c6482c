"""TIR pass of the bare-metal C pipeline: saturating clamps -> one saturate instruction.

Rewrites an int32 ``max(min(x, 2**(n-1) - 1), -2**(n-1))`` (either nesting order) into
``ISEG_SSAT(x, n)`` and ``max(min(x, 2**n - 1), 0)`` into ``ISEG_USAT(x, n)``, two macros that
:data:`SATURATE_MACROS` defines in every generated C file: Arm's ``SSAT``/``USAT`` (``__ssat``/``__usat``)
where the compiler has them (``__ARM_FEATURE_SAT``: every Armv7-M/Armv8-M Mainline core), else the same
ternaries TVM would have printed (RISC-V). Both compute exactly the clamp; GCC does not find ``SSAT`` in the
two compare-and-select pairs by itself, so every requantize epilogue saves about five instructions per
element. Only the C build runs this pass; the TVM host build keeps the plain clamp it is compared against.
"""
import numpy as np
import tvm
import tvm_ffi
from tvm import tirx

SATURATE_MACROS = """\
#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#define ISEG_SSAT(x, n) __ssat((x), (n))
#define ISEG_USAT(x, n) ((int32_t)__usat((x), (n)))
#else
#define ISEG_SAT_MIN_(x, hi) ((x) < (hi) ? (x) : (hi))
#define ISEG_SSAT(x, n) (ISEG_SAT_MIN_((x), (int32_t)((1u << ((n) - 1)) - 1u)) > -(int32_t)(1u << ((n) - 1)) \\
    ? ISEG_SAT_MIN_((x), (int32_t)((1u << ((n) - 1)) - 1u)) : -(int32_t)(1u << ((n) - 1)))
#define ISEG_USAT(x, n) (ISEG_SAT_MIN_((x), (int32_t)((1u << (n)) - 1u)) > 0 \\
    ? ISEG_SAT_MIN_((x), (int32_t)((1u << (n)) - 1u)) : 0)
#endif
"""


def _constant(expr) -> int | None:
    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _bits(lo: int, hi: int) -> tuple[str, int] | None:
    """``("ISEG_SSAT", n)`` / ``("ISEG_USAT", n)`` when ``[lo, hi]`` is a signed / unsigned n-bit range."""
    for n in range(1, 32):
        if (lo, hi) == (-(1 << (n - 1)), (1 << (n - 1)) - 1):
            return "ISEG_SSAT", n
        if (lo, hi) == (0, (1 << n) - 1):
            return "ISEG_USAT", n
    return None


def _saturate(expr: tvm.ir.expr.Expr) -> tvm.ir.expr.Expr:
    """The saturate call for a ``Max`` of a ``Min`` (or a ``Min`` of a ``Max``) with constant bounds, else ``expr``."""
    outer, inner_type = (tirx.Max, tirx.Min) if isinstance(expr, tirx.Max) else (tirx.Min, tirx.Max)
    if str(expr.ty.dtype) != "int32" or not isinstance(expr.a, inner_type):
        return expr
    bounds = (_constant(expr.b), _constant(expr.a.b))
    if None in bounds:
        return expr
    lo, hi = bounds if outer is tirx.Max else bounds[::-1]
    match = _bits(lo, hi)
    if match is None:
        return expr
    macro, n = match
    return tirx.call_pure_extern("int32", macro, expr.a.a, tirx.IntImm("int32", n))


def _saturated_range(expr) -> tuple[int, int] | None:
    """The value range of an ``ISEG_SSAT``/``ISEG_USAT`` call, else None."""
    if isinstance(expr, tvm.ir.expr.Call) and expr.op.name == "tirx.call_pure_extern":
        name, *args = expr.args
        n = int(args[1].value) if len(args) == 2 and isinstance(args[1], tirx.IntImm) else None
        if str(name.value) == "ISEG_SSAT" and n:
            return -(1 << (n - 1)), (1 << (n - 1)) - 1
        if str(name.value) == "ISEG_USAT" and n:
            return 0, (1 << n) - 1
    return None


NARROW_TYPES = ("int8", "uint8", "int16", "uint16")


def _drop_round_trip(expr: tvm.ir.expr.Expr) -> tvm.ir.expr.Expr:
    """``int32(narrow(ISEG_SSAT(x, n)))`` -> ``ISEG_SSAT(x, n)`` when ``narrow`` holds every value of the saturate
    (so both casts are the identity; GCC would still emit a sign or zero extension for them)."""
    if str(expr.ty.dtype) != "int32" or not isinstance(expr.value, tirx.Cast):
        return expr
    saturated = _saturated_range(expr.value.value)
    narrow = str(expr.value.ty.dtype)
    if saturated is None or narrow not in NARROW_TYPES:
        return expr
    if not np.iinfo(narrow).min <= saturated[0] <= saturated[1] <= np.iinfo(narrow).max:
        return expr
    return expr.value.value


@tirx.transform.prim_func_pass(opt_level=0, name="SaturatingClamp")
def SaturatingClamp(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    """Replace every signed/unsigned n-bit int32 clamp in ``func`` by ``ISEG_SSAT``/``ISEG_USAT`` and drop the
    narrowing round trips around them (see module)."""
    return tvm_ffi.structural_map(func, (((tirx.Max, tirx.Min), _saturate), (tirx.Cast, _drop_round_trip)))
