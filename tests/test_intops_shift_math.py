"""Shared integer primitives: shift-exp and fixed-iteration Newton isqrt (reference, emitter, structure)."""
import math

import numpy as np
import pytest
import tvm
from hypothesis import given, settings, strategies as st
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from deploy.lower import lower_to_static_program
from relax_passes.intops import layernorm, shiftmax
from relax_passes.intops.shift_math import (EXP_ORDERS, base4_exponent_reference, emit_base4_exponent, emit_isqrt,
                                            emit_row_boundary, emit_shift_exp, isqrt_iterations, isqrt_reference,
                                            shift_exp_reference)
from relax_passes.intops.single_op import compile_single_op, single_op_module

FRAC, OCTAVES, MANTISSA = 11, 14, 14


@pytest.mark.parametrize("start_bits", [4, 10, 24, 31])
def test_isqrt_exact_on_the_slow_end_and_the_top(start_bits):
    small = np.arange(0, min(4**start_bits, 1 << 18), dtype=np.int64)
    top = 4**start_bits - 1
    near_squares = np.array([k * k + delta for k in (2**start_bits - 1, 2**start_bits // 3, 12345 % 2**start_bits)
                             for delta in (-1, 0, 1)], dtype=np.int64)
    n = np.concatenate([small, np.array([top, top - 1]), np.clip(near_squares, 0, top)])
    expected = np.array([math.isqrt(int(v)) for v in n], dtype=np.int64)
    np.testing.assert_array_equal(isqrt_reference(n, start_bits), expected)


@pytest.fixture(scope="module")
def isqrt_on_host():
    return compile_single_op(lambda bb, x, bits: emit_isqrt(bb, x, bits), 31, (64,), "int64")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 4**31 - 1), st.integers(0, 1000)), min_size=64, max_size=64))
def test_isqrt_emitter_bit_exact(isqrt_on_host, values):
    n = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(isqrt_on_host(n), isqrt_reference(n, 31))
    np.testing.assert_array_equal(isqrt_reference(n, 31), [math.isqrt(v) for v in values])


NORMALISED_LOW = 1 << 28  # LayerNorm's normalised variance: [4**14, 4**15), 15-bit root


def test_isqrt_on_a_normalised_range_needs_four_steps_and_is_exact():
    assert isqrt_iterations(15, NORMALISED_LOW) == 4
    low = np.arange(NORMALISED_LOW, NORMALISED_LOW + (1 << 18), dtype=np.int64)  # largest start error
    squares = np.arange(1 << 14, 1 << 15, 7, dtype=np.int64) ** 2
    n = np.concatenate([low, np.clip(np.concatenate([squares - 1, squares, squares + 1]), NORMALISED_LOW, 4**15 - 1),
                        np.arange(4**15 - 1000, 4**15, dtype=np.int64)])
    np.testing.assert_array_equal(isqrt_reference(n, 15, NORMALISED_LOW), [math.isqrt(int(v)) for v in n])


@pytest.fixture(scope="module")
def isqrt32_on_host():
    return compile_single_op(lambda bb, x, _: emit_isqrt(bb, x, 15, NORMALISED_LOW), None, (64,), "int32")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.one_of(st.integers(NORMALISED_LOW, 4**15 - 1), st.sampled_from([NORMALISED_LOW, 4**15 - 1])),
                min_size=64, max_size=64))
def test_isqrt_int32_emitter_bit_exact(isqrt32_on_host, values):
    n = np.array(values, dtype=np.int32)
    np.testing.assert_array_equal(isqrt32_on_host(n), isqrt_reference(n, 15, NORMALISED_LOW))
    np.testing.assert_array_equal(isqrt_reference(n, 15, NORMALISED_LOW), [math.isqrt(v) for v in values])


def exact_base4_exponent(v: int) -> int:
    return max(v.bit_length() - 1, 0) // 2


@pytest.fixture(scope="module")
def base4_on_host():
    return compile_single_op(lambda bb, x, _: emit_base4_exponent(bb, x, 30), None, (64,), "int64")


EDGES = [0, 1, 3, 4, 15, 16, 2**28 - 1, 2**28, 2**62 - 1] + [4**k + d for k in range(31) for d in (-1, 0)]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 2**62 - 1), st.integers(0, 2**20), st.sampled_from(EDGES)),
                min_size=64, max_size=64))
def test_base4_exponent_reference_and_emitter(base4_on_host, values):
    v = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(base4_exponent_reference(v, 30), [exact_base4_exponent(x) for x in values])
    np.testing.assert_array_equal(base4_on_host(v), base4_exponent_reference(v, 30))


@pytest.fixture(scope="module", params=EXP_ORDERS)
def shift_exp_on_host(request):
    order = request.param
    emit = lambda bb, y, _: emit_shift_exp(bb, y, FRAC, OCTAVES, MANTISSA, order)  # noqa: E731
    return order, compile_single_op(emit, None, (128,), "int16")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-((OCTAVES + 1) << FRAC), 0), min_size=128, max_size=128))
def test_shift_exp_emitter_bit_exact(shift_exp_on_host, values):
    order, on_host = shift_exp_on_host
    y = np.array(values, dtype=np.int16)
    np.testing.assert_array_equal(on_host(y), shift_exp_reference(y, FRAC, OCTAVES, MANTISSA, order))


# The chord 1 + f of 2**f is at most 6.15 % high; with the quadratic correction the error is 0.27 %
# (+ < 2 * 2**-F from flooring the correction); the final shift floors at most 1 LSB.
@pytest.mark.parametrize(("order", "low", "high"), [(1, 1.0, 1.0615),
                                                     (2, 1 - 0.0027 - 2 * 2**-FRAC, 1.0027 + 2 * 2**-FRAC)])
def test_shift_exp_accuracy_and_flush(order, low, high):
    y = np.arange(-((OCTAVES + 1) << FRAC), 1, dtype=np.int64)
    e = shift_exp_reference(y, FRAC, OCTAVES, MANTISSA, order)
    exact = 2.0**MANTISSA * np.exp2(y / 2.0**FRAC)
    kept = -y <= OCTAVES << FRAC
    assert np.all(e[kept] <= exact[kept] * high)
    assert np.all(e[kept] >= exact[kept] * low - 1)
    assert e[-1] == 2**MANTISSA and np.all(e[y < -(OCTAVES + 1) * 2**FRAC + 2**FRAC] == 0)
    assert np.all(np.diff(e) >= 0)  # monotone in y


@I.ir_module
class ShiftExpExpected:
    @R.function
    def main(x: R.Tensor((4,), "int16")) -> R.Tensor((4,), "int32"):
        with R.dataflow():
            y = R.astype(x, "int32")
            octave = R.negative(R.right_shift(y, R.const(2, "int32")))
            fraction = R.bitwise_and(y, R.const(3, "int32"))
            mantissa = R.left_shift(R.add(fraction, R.const(4, "int32")), R.const(2, "int32"))
            shifted = R.right_shift(mantissa, octave)
            e = R.multiply(shifted, R.astype(R.less_equal(octave, R.const(3, "int32")), "int32"))
            out = e  # single_op_module's dataflow output
            R.output(out)
        return out


def test_shift_exp_structure():
    before = single_op_module(lambda bb, y, _: emit_shift_exp(bb, y, 2, 3, 4), None, (4,), "int16")
    tvm.ir.assert_structural_equal(before, ShiftExpExpected)
    y = np.array([0, -1, -5, -16], dtype=np.int16)  # 2**(y/4) * 16 by chord: 16, 14, 7 (6.73), flushed
    np.testing.assert_array_equal(compile_single_op(lambda bb, v, _: emit_shift_exp(bb, v, 2, 3, 4), None,
                                                    (4,), "int16")(y), [16, 14, 7, 0])


@I.ir_module
class RowBoundaryExpected:
    @R.function
    def main(x: R.Tensor((3, 1), "int64")) -> R.Tensor((3, 1), "int64"):
        with R.dataflow():
            y = R.sum(x, axis=[-1], keepdims=True)
            out = y
            R.output(out)
        return out


def test_row_boundary_structure_and_identity():
    before = single_op_module(lambda bb, x, _: emit_row_boundary(bb, x), None, (3, 1), "int64")
    tvm.ir.assert_structural_equal(before, RowBoundaryExpected)
    x = np.array([[-(2**62)], [0], [2**62 - 1]], dtype=np.int64)
    np.testing.assert_array_equal(compile_single_op(lambda bb, v, _: emit_row_boundary(bb, v), None, (3, 1),
                                                    "int64")(x), x)


def _divisions_per_kernel(mod):
    """{kernel: (number of integer divisions, output shape)} of ``mod`` lowered like the deploy flow."""
    found = {}
    for gv, func in lower_to_static_program(mod).kernels.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            script = func.script()
            divisions = sum(script.count(token) for token in (" // ", " % ", "T.Div(", "T.truncdiv(", "T.floordiv("))
            found[gv.name_hint] = (divisions, tuple(int(d) for d in func.params[-1].shape))
    return found


def _layernorm_module():
    params = layernorm.layernorm_params(0.02, np.linspace(-1, 2, 24), np.linspace(-0.2, 0.3, 24), 0.03)
    return single_op_module(layernorm.emit_layernorm, params, (1, 8, 24), "int16")


def _shiftmax_module():
    return single_op_module(shiftmax.emit_shiftmax, shiftmax.shiftmax_params(0.01, output_dtype="int16"),
                            (1, 2, 8, 8), "int32")


@pytest.mark.parametrize("module", [_layernorm_module, _shiftmax_module])
def test_divisions_only_in_per_row_kernels(module):
    """The row boundary keeps every division out of the per-element kernels after operator fusion."""
    kernels = _divisions_per_kernel(module())
    assert any(divisions for divisions, _ in kernels.values())
    for name, (divisions, shape) in kernels.items():
        assert divisions == 0 or shape[-1] == 1, (name, shape)
