"""TIR pass of the bare-metal C pipeline: the high word of a product, or of a sum of two, -> ``SMULL`` (+ ``SMLAL``)
or ``SMMULR``.

The requantize epilogue of a biased matmul computes ``int32((int64(acc + bias) * m) >> 32)``; TVM's simplifier
distributes it into ``int32((int64(acc) * m + int64(bias) * m) >> 32)`` and GCC folds that back into a 64-bit
add and a 64 x 32-bit multiply (five instructions on Arm). This pass rewrites exactly that form, with ``acc``,
``bias`` and ``m`` int32 and ``m`` the same in both products, into ``iseg_mulhi_sum(acc, bias, m)``, which
:data:`HIGH_WORD_SUM` defines in every generated C file: ``SMULL`` + ``SMLAL`` on Thumb-2 Arm cores (exact:
the int64 sum of two int32 x int32 products cannot overflow), the same int64 expression elsewhere (RISC-V,
host). A single product ``int32((int64(x) * m) >> 32)`` becomes ``iseg_mulhi(x, m)``, one ``SMMUL`` (``SMULL``
without the DSP extension): left to
itself GCC merges a pre-shift ``x * 2**s`` into the constant, which then no longer fits a signed 32-bit operand
and costs an unsigned multiply and a sign correction (four instructions). The rounded high word
``int32((int64(x) * m + 2**31) >> 32)`` becomes ``iseg_mulhi_round(x, m)``: ``SMMULR`` on cores with the DSP
extension (exactly that value). Only the C build runs this pass; the TVM host build keeps the expression it is
compared against.
"""
import tvm_ffi
from tvm import tirx

HIGH_WORD_SUM = """\
#if defined(__ARM_ARCH_ISA_THUMB) && __ARM_ARCH_ISA_THUMB == 2
static inline int32_t iseg_mulhi_sum(int32_t x, int32_t y, int32_t m)
{
    int32_t low, high;
    __asm__("smull %0, %1, %2, %4\\n\\tsmlal %0, %1, %3, %4" : "=&r"(low), "=&r"(high) : "r"(x), "r"(y), "r"(m));
    (void)low;
    return high;
}
static inline int32_t iseg_mulhi(int32_t x, int32_t m)
{
    int32_t high;
#if defined(__ARM_FEATURE_DSP)
    __asm__("smmul %0, %1, %2" : "=r"(high) : "r"(x), "r"(m));
#else
    int32_t low;
    __asm__("smull %0, %1, %2, %3" : "=r"(low), "=r"(high) : "r"(x), "r"(m));
    (void)low;
#endif
    return high;
}
#else
static inline int32_t iseg_mulhi_sum(int32_t x, int32_t y, int32_t m)
{
    return (int32_t)(((int64_t)x * m + (int64_t)y * m) >> 32);
}
static inline int32_t iseg_mulhi(int32_t x, int32_t m)
{
    return (int32_t)(((int64_t)x * m) >> 32);
}
#endif
#if defined(__ARM_FEATURE_DSP)
static inline int32_t iseg_mulhi_round(int32_t x, int32_t m)
{
    int32_t high;
    __asm__("smmulr %0, %1, %2" : "=r"(high) : "r"(x), "r"(m));
    return high;
}
#else
static inline int32_t iseg_mulhi_round(int32_t x, int32_t m)
{
    return (int32_t)(((int64_t)x * m + ((int64_t)1 << 31)) >> 32);
}
#endif
"""


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _widened_int32(expr):
    """``x`` for ``int64(x)`` with an int32 ``x``, else None."""
    if isinstance(expr, tirx.Cast) and _dtype(expr) == "int64" and _dtype(expr.value) == "int32":
        return expr.value
    return None


def _int32_multiplier(expr):
    """The int32 form of a multiplier: an int64 immediate that fits int32, or ``int64(m)`` of an int32 ``m``."""
    if isinstance(expr, tirx.IntImm):
        return tirx.IntImm("int32", int(expr.value)) if -(2**31) <= int(expr.value) < 2**31 else None
    return _widened_int32(expr)


def _as_multiply(x):
    """``a * 2**c`` for ``a << c`` (a requantize pre-shift): the same value, but C leaves ``<<`` of a negative
    ``a`` undefined; inside the ``iseg_mulhi`` call GCC cannot merge the factor into the multiplier either."""
    if isinstance(x, tirx.LShift) and isinstance(x.b, tirx.IntImm):
        return tirx.Mul(x.a, tirx.IntImm(_dtype(x), 1 << int(x.b.value)))
    return x


def _high_word(expr):
    """``iseg_mulhi_sum(x, y, m)`` for ``int32((int64(x) * m + int64(y) * m) >> 32)``, ``iseg_mulhi(x, m)`` for
    ``int32((int64(x) * m) >> 32)``, ``iseg_mulhi_round(x, m)`` for ``int32((int64(x) * m + 2**31) >> 32)``, else
    ``expr``."""
    if _dtype(expr) != "int32" or not isinstance(expr.value, tirx.RShift):
        return expr
    shift = expr.value
    if not (isinstance(shift.b, tirx.IntImm) and int(shift.b.value) == 32):
        return expr
    if isinstance(shift.a, tirx.Mul):
        x, multiplier = _widened_int32(shift.a.a), _int32_multiplier(shift.a.b)
        if x is None or multiplier is None:
            return expr
        return tirx.call_pure_extern("int32", "iseg_mulhi", _as_multiply(x), multiplier)
    if not isinstance(shift.a, tirx.Add):
        return expr
    if isinstance(shift.a.a, tirx.Mul) and isinstance(shift.a.b, tirx.IntImm) and int(shift.a.b.value) == 1 << 31:
        x, multiplier = _widened_int32(shift.a.a.a), _int32_multiplier(shift.a.a.b)
        if x is None or multiplier is None:
            return expr
        return tirx.call_pure_extern("int32", "iseg_mulhi_round", _as_multiply(x), multiplier)
    products = (shift.a.a, shift.a.b)
    if not all(isinstance(p, tirx.Mul) for p in products):
        return expr
    (x, m), (y, m_again) = ((_widened_int32(p.a), p.b) for p in products)
    multiplier = _int32_multiplier(m)
    if x is None or y is None or multiplier is None or not tvm_ffi.structural_equal(m, m_again):
        return expr
    return tirx.call_pure_extern("int32", "iseg_mulhi_sum", x, y, multiplier)


@tirx.transform.prim_func_pass(opt_level=0, name="HighWordSum")
def HighWordSum(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    """Replace every ``int32((int64(x) * m [+ int64(y) * m]) >> 32)`` in ``func`` by ``iseg_mulhi[_sum]`` (see module)."""
    return tvm_ffi.structural_map(func, ((tirx.Cast, _high_word),))
