"""Narrow constant storage: Dyadic (int32 multiplier, int8 shifts, scalars when uniform), int16 biases with a
shift, narrow gather indices; numpy reference == exact rounding == TVM llvm, incl. extremes; the deploy
lowering keeps every constant at its stored type."""
import numpy as np
import pytest
import tvm
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from tvm import relax

from deploy.lower import lower_to_static_program
from relax_passes import integer_program as ip
from relax_passes.integerize import BIAS_ERROR_LIMIT, narrow_bias, narrow_indices
from relax_passes.intops.single_op import compile_single_op
from relax_passes.requantize import (DTYPE_RANGE, Dyadic, emit_requantize, high_word_pre_shift, narrowest,
                                    requantize_reference, rounded_high_word_shift)

INT32 = st.integers(-(2**31), 2**31 - 1)
EXTREMES = st.sampled_from([-(2**31), 2**31 - 1, 0, -1, 1])
CHANNEL_EXPONENTS = np.array([0, 3, 1, 7, 0, 12])
RATIOS = 0.000731 * 2.0**-CHANNEL_EXPONENTS  # per-channel ratios that differ by powers of two
DYADIC = Dyadic.from_ratio(RATIOS)


def exact_requantize(x: np.ndarray, dyadic: Dyadic, dtype: str) -> np.ndarray:
    """floor(x * m / 2**k + 1/2) in Python integers (round half up), clamped: independent of the numpy path."""
    m = np.broadcast_to(dyadic.multiplier, x.shape[-1:])
    k = np.broadcast_to(dyadic.shift, x.shape[-1:])
    lo, hi = DTYPE_RANGE[dtype]
    out = [[min(max((2 * int(v) * int(m[c]) + 2 ** int(k[c])) // 2 ** (int(k[c]) + 1), lo), hi)
            for c, v in enumerate(row)] for row in x.reshape(-1, x.shape[-1])]
    return np.array(out, dtype=dtype).reshape(x.shape)


def test_channels_differing_by_powers_of_two_store_one_multiplier_and_int8_shifts():
    assert DYADIC.multiplier.ndim == 0 and DYADIC.multiplier.dtype == np.int32
    assert DYADIC.shift.dtype == np.int8 and DYADIC.shift.shape == RATIOS.shape
    assert np.array_equal(DYADIC.shift - DYADIC.shift[0], CHANNEL_EXPONENTS)
    np.testing.assert_allclose(DYADIC.ratio, RATIOS, rtol=2.0**-30)
    uniform = Dyadic.from_ratio(np.full(5, 0.3))
    assert uniform.multiplier.ndim == 0 and uniform.shift.ndim == 0
    mixed = Dyadic.from_ratio(np.array([0.3, 0.5]))
    assert mixed.multiplier.shape == (2,) and mixed.multiplier.dtype == np.int32


@pytest.fixture(scope="module")
def on_host():
    return {dtype: compile_single_op(lambda bb, x, d: emit_requantize(bb, x, d, dtype), DYADIC, (3, 6), "int32")
            for dtype in ("int8", "int16", "int32")}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int32, (3, 6), elements=st.one_of(EXTREMES, INT32, st.integers(-5000, 5000))),
       st.sampled_from(["int8", "int16", "int32"]))
def test_per_channel_shift_requantize_bit_exact(on_host, x, dtype):
    reference = requantize_reference(x, DYADIC, dtype)
    np.testing.assert_array_equal(reference, exact_requantize(x, DYADIC, dtype))
    np.testing.assert_array_equal(on_host[dtype](x), reference)


def half_up(value: int, shift: int) -> int:
    """floor(value / 2**shift + 1/2) in Python integers."""
    return (2 * value + 2**shift) // 2 ** (shift + 1)


def fits_int16(bias, shift: int) -> bool:
    return all(-32768 <= half_up(int(b), shift) <= 32767 for b in bias)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, 7, elements=st.one_of(EXTREMES, st.integers(-(2**31) + 1, 2**31 - 1),
                                                 st.integers(-40000, 40000))),
       st.floats(2.0**-24, 1.0))
def test_narrow_bias_is_int16_only_when_its_error_is_negligible(bias, ratio):
    bias = np.maximum(bias, -(2**31) + 1)
    dyadic = Dyadic.from_ratio(np.full(7, ratio))
    narrow = narrow_bias(bias, dyadic)
    stored, shift = np.asarray(narrow["bias"]), narrow["bias_shift"]
    value = np.broadcast_to(stored.astype(np.int64) << shift, bias.shape)
    if stored.dtype == np.int16:
        assert np.all(np.abs(value - bias) <= (1 << shift) // 2)
        assert (2.0 ** (shift - 1) if shift else 0.0) * float(np.max(dyadic.ratio)) <= BIAS_ERROR_LIMIT
        assert shift == 0 or not fits_int16(bias, shift - 1)  # the smallest shift
    else:  # the int16 form would be too coarse, or would round past the int32 range
        assert stored.dtype == np.int32 and shift == 0 and np.array_equal(value, bias)
        needed = next(s for s in range(32) if fits_int16(bias, s))
        rounded = [half_up(int(b), needed) << needed for b in bias]
        assert 2.0 ** (needed - 1) * float(np.max(dyadic.ratio)) > BIAS_ERROR_LIMIT or max(rounded) >= 2**31


def test_uniform_bias_and_small_indices_are_stored_small():
    zero = narrow_bias(np.zeros(9, np.int64), Dyadic.from_ratio(0.01))
    assert zero["bias"].ndim == 0 and zero["bias_shift"] == 0
    assert narrow_indices(np.arange(16)).dtype == np.int8
    assert narrow_indices(np.array([0, 300])).dtype == np.int16
    assert narrow_indices(np.array([-1, 70000])).dtype == np.int32


def dense_module(dense: ip.Dense, rows: int) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((rows, dense.weight.shape[0]), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(dense.emit(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def test_dense_with_narrow_constants_is_bit_exact_and_deploys_them_narrow():
    rng = np.random.default_rng(3)
    weight = rng.integers(-127, 128, size=(16, 6)).astype(np.int8)
    dense = ip.Dense(out="y", inputs=("x",), qtype=ip.QType("int16", (4, 6), np.asarray(1.0)), weight=weight,
                     bias=rng.integers(-32768, 32768, size=6).astype(np.int16), bias_shift=3,
                     dyadic=Dyadic.from_ratio(RATIOS * 2**6))
    mod = dense_module(dense, 4)
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    for x in (np.full((4, 16), -128, np.int8), np.full((4, 16), 127, np.int8),
              rng.integers(-128, 128, size=(4, 16)).astype(np.int8)):
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), dense.reference(x))
    program = lower_to_static_program(mod)
    stored = sorted((program.tensors[i].dtype, program.tensors[i].shape) for i in program.tensors_of_kind("const"))
    assert stored == [("int16", (6,)), ("int8", (6,)), ("int8", (16, 6))]  # bias, shifts, weight: nothing wider


HIGH_WORD = Dyadic(np.array([2**30, 2**31 - 1, 1, 1518500250, 2**30 + 7, 123456789, 2**31 - 1, 987654321], np.int32),
                   np.array([33, 33, 34, 40, 47, 55, 61, 62], np.int8))  # every k >= 33: the int32 high-word form
MIXED = Dyadic(HIGH_WORD.multiplier, np.array([32, 33, 1, 40, 47, 55, 61, 62], np.int8))  # some k <= 32: int64


@settings(max_examples=400, deadline=None)
@given(st.one_of(EXTREMES, INT32), st.integers(1, 2**31 - 1), st.integers(33, 62))
def test_high_word_identity_holds_in_int32(x, m, k):
    """floor((x*m + 2**(k-1)) / 2**k) == (H + 2**(k-33)) >> (k-32) with H = (x*m) >> 32, no int32 overflow."""
    high = (x * m) >> 32
    assert -(2**31) <= high + 2 ** (k - 33) < 2**31
    assert (x * m + 2 ** (k - 1)) // 2**k == (high + 2 ** (k - 33)) >> (k - 32)


def right_shift_dtypes(dyadic: Dyadic, x_dtype: str = "int32", magnitude: int | None = None) -> set:
    from relax_passes.intops.single_op import single_op_module
    mod = single_op_module(lambda bb, x, d: emit_requantize(bb, x, d, "int8", magnitude), dyadic, (2, 8), x_dtype)
    return {str(b.value.ty.dtype) for b in mod["main"].body.blocks[0].bindings
            if isinstance(b.value, relax.Call) and b.value.op.name == "relax.right_shift"}


def test_high_word_form_only_when_every_shift_is_at_least_33():
    assert right_shift_dtypes(HIGH_WORD) == {"int32", "int64"}  # the product's >> 32, then the int32 rounding shift
    assert right_shift_dtypes(Dyadic(HIGH_WORD.multiplier[:1].reshape(()), np.array(40, np.int8))) == {"int32",
                                                                                                       "int64"}
    assert right_shift_dtypes(MIXED) == {"int64"}


@pytest.fixture(scope="module")
def high_word_on_host():
    return {(name, dtype): compile_single_op(lambda bb, x, d: emit_requantize(bb, x, d, dtype), dyadic, (4, 8), "int32")
            for name, dyadic in (("high_word", HIGH_WORD), ("mixed", MIXED)) for dtype in ("int8", "int32")}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int32, (4, 8), elements=st.one_of(EXTREMES, INT32, st.integers(-5000, 5000))),
       st.sampled_from(["high_word", "mixed"]), st.sampled_from(["int8", "int32"]))
def test_high_word_requantize_bit_exact(high_word_on_host, x, name, dtype):
    dyadic = HIGH_WORD if name == "high_word" else MIXED
    reference = requantize_reference(x, dyadic, dtype)
    np.testing.assert_array_equal(reference, exact_requantize(x, dyadic, dtype))
    np.testing.assert_array_equal(high_word_on_host[(name, dtype)](x), reference)


SMALL_SHIFTS = Dyadic(HIGH_WORD.multiplier, np.array([18, 33, 20, 31, 47, 25, 40, 62], np.int8))  # min k = 18


def test_pre_shift_only_when_the_shifted_input_fits_int32():
    assert high_word_pre_shift("int32", HIGH_WORD) == 0
    assert high_word_pre_shift("int16", SMALL_SHIFTS) is None  # max k + 15 = 77 > 62
    narrow_max = Dyadic(SMALL_SHIFTS.multiplier, np.minimum(SMALL_SHIFTS.shift, 47).astype(np.int8))
    assert high_word_pre_shift("int16", narrow_max) == 15  # |x| <= 2**15: x << 15 fits
    assert high_word_pre_shift("int8", narrow_max) == 15
    assert high_word_pre_shift("int32", narrow_max) is None  # an unbounded accumulator has no room
    assert high_word_pre_shift("int32", narrow_max, magnitude=2**16 - 1) == 15
    assert high_word_pre_shift("int32", narrow_max, magnitude=2**16) is None
    assert right_shift_dtypes(narrow_max, "int16") == {"int32", "int64"}
    assert right_shift_dtypes(narrow_max, "int32", magnitude=2**16 - 1) == {"int32", "int64"}
    assert right_shift_dtypes(narrow_max, "int32") == {"int64"}


PRE_SHIFTED = Dyadic(HIGH_WORD.multiplier, np.array([18, 33, 20, 31, 47, 25, 40, 19], np.int8))


@pytest.fixture(scope="module")
def pre_shifted_on_host():
    return {(x_dtype, dtype): compile_single_op(lambda bb, x, d: emit_requantize(bb, x, d, dtype, 2**16 - 1),
                                                PRE_SHIFTED, (4, 8), x_dtype)
            for x_dtype in ("int16", "int32") for dtype in ("int8", "int32")}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int32, (4, 8), elements=st.one_of(st.sampled_from([-(2**15), 2**15 - 1, 0, -1, 1]),
                                                        st.integers(-(2**15), 2**15 - 1))),
       st.sampled_from(["int16", "int32"]), st.sampled_from(["int8", "int32"]))
def test_pre_shifted_requantize_bit_exact(pre_shifted_on_host, x, x_dtype, dtype):
    """int16 inputs, and int32 inputs within the bound passed, through ``x << 15`` and the high-word form."""
    x = x.astype(x_dtype)
    reference = requantize_reference(x, PRE_SHIFTED, dtype)
    np.testing.assert_array_equal(reference, exact_requantize(x, PRE_SHIFTED, dtype))
    np.testing.assert_array_equal(pre_shifted_on_host[(x_dtype, dtype)](x), reference)


def test_constant_arrays_are_stored_in_the_narrowest_type_that_holds_them():
    assert narrowest(np.array([-582, 761], np.int32)).dtype == np.int16
    assert narrowest(np.array([-128, 127], np.int64)).dtype == np.int8
    assert narrowest(np.array([2**30, 7], np.int32)).dtype == np.int32
    assert narrowest(np.array([200, 3], np.uint8)).dtype == np.uint8
    np.testing.assert_array_equal(narrowest(np.array([-582, 761], np.int32)), [-582, 761])


ROUNDED = {k: Dyadic(np.array(1518500250, np.int32), np.array(k, np.int8)) for k in (20, 31, 32)}


def test_rounded_high_word_for_one_shift_up_to_32():
    assert [rounded_high_word_shift("int16", ROUNDED[k]) for k in (20, 31, 32)] == [12, 1, 0]
    assert rounded_high_word_shift("int16", Dyadic(np.array(1 << 30, np.int32), np.array(33, np.int8))) is None
    assert rounded_high_word_shift("int16", PRE_SHIFTED) is None  # per-channel shifts
    assert rounded_high_word_shift("int32", ROUNDED[31]) is None  # an unbounded accumulator has no room
    assert rounded_high_word_shift("int32", ROUNDED[31], magnitude=2**30 - 1) == 1
    assert rounded_high_word_shift("int32", ROUNDED[32]) == 0


@pytest.fixture(scope="module")
def rounded_on_host():
    return {k: compile_single_op(lambda bb, x, d: emit_requantize(bb, x, d, "int32"), ROUNDED[k], (4, 8), "int16")
            for k in ROUNDED}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int16, (4, 8), elements=st.one_of(st.sampled_from([-(2**15), 2**15 - 1, 0, -1, 1]),
                                                        st.integers(-(2**15), 2**15 - 1))), st.sampled_from([20, 31, 32]))
def test_rounded_high_word_requantize_bit_exact(rounded_on_host, x, k):
    reference = requantize_reference(x, ROUNDED[k], "int32")
    np.testing.assert_array_equal(reference, exact_requantize(x, ROUNDED[k], "int32"))
    np.testing.assert_array_equal(rounded_on_host[k](x), reference)
