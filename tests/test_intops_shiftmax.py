"""Shiftmax: numpy reference == TVM llvm build bit-exactly; accuracy vs float softmax; overflow bounds."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from relax_passes.intops.shiftmax import (calibrate_octaves, emit_shiftmax, shiftmax_bounds,
                                          shiftmax_params, shiftmax_reference)
from relax_passes.intops.single_op import compile_single_op
from relax_passes.requantize import DTYPE_RANGE

SCALE = 1.0 / 700  # a q.k^T accumulator LSB with 1/sqrt(d) folded in
SHAPE = (2, 5, 33)
INT32 = st.integers(-(2**31), 2**31 - 1)


def realistic_scores(rng, shape, spread=3.0):
    return np.round(rng.normal(0, spread, shape) / SCALE).astype(np.int32)


@pytest.fixture(scope="module")
def params():
    return shiftmax_params(SCALE, calibration=realistic_scores(np.random.default_rng(0), (8, 64, 33)))


@pytest.fixture(scope="module")
def on_host(params):
    return compile_single_op(emit_shiftmax, params, SHAPE, "int32")


def assert_bit_exact(on_host, params, q):
    np.testing.assert_array_equal(on_host(q), shiftmax_reference(q, params))


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int32, SHAPE, elements=st.one_of(INT32, st.integers(-20000, 20000))))
def test_bit_exact_fuzzed_values(on_host, params, q):
    assert_bit_exact(on_host, params, q)


@pytest.fixture(scope="module")
def int16_params():
    return shiftmax_params(SCALE, calibration=realistic_scores(np.random.default_rng(0), (8, 64, 33)),
                           output_dtype="int16", exp_order=2)


@pytest.fixture(scope="module")
def int16_on_host(int16_params):
    return compile_single_op(emit_shiftmax, int16_params, SHAPE, "int32")


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int32, SHAPE, elements=st.one_of(INT32, st.integers(-20000, 20000))))
def test_bit_exact_fuzzed_values_int16_output(int16_on_host, int16_params, q):
    out = int16_on_host(q)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, shiftmax_reference(q, int16_params))


@pytest.mark.parametrize("fill", [-(2**31), 2**31 - 1, 0, 12345])
def test_constant_rows_are_uniform(on_host, params, fill):
    q = np.full(SHAPE, fill, dtype=np.int32)
    assert_bit_exact(on_host, params, q)
    np.testing.assert_array_equal(shiftmax_reference(q, params), np.round(256 / SHAPE[-1]))


def test_one_huge_logit_is_one_hot(on_host, params):
    q = np.full(SHAPE, -(2**31), dtype=np.int32)
    q[..., 7] = 2**31 - 1
    q[1, 2, :] = np.where(np.arange(SHAPE[-1]) == 3, 50_000, 0)  # 71 nats above the others
    assert_bit_exact(on_host, params, q)
    out = shiftmax_reference(q, params)
    assert np.all(out.max(axis=-1) == 255) and np.count_nonzero(out) == out.size // SHAPE[-1]


@settings(max_examples=4, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 300)), st.integers(0, 2**32 - 1))
def test_bit_exact_fuzzed_shapes(params, shape, seed):
    q = realistic_scores(np.random.default_rng(seed), shape, spread=8.0)
    np.testing.assert_array_equal(compile_single_op(emit_shiftmax, params, shape, "int32")(q),
                                  shiftmax_reference(q, params))


def float_softmax(q):
    x = q.astype(np.float64) * SCALE
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# Chord 2**f ~ 1 + f is at most 6.2 % high (0.27 % with exp_order=2), so p is off by <= 2 * err * p (1 - p)
# (<= err / 2) + half an output LSB + the reciprocal's floor.
@pytest.mark.parametrize(("dtype", "exp_order", "relative"), [("uint8", 1, 0.062), ("int16", 1, 0.062),
                                                              ("int16", 2, 0.0028)])
@pytest.mark.parametrize("spread", [0.5, 3.0, 10.0])
def test_accuracy_vs_float(dtype, exp_order, relative, spread):
    params = shiftmax_params(SCALE, octaves=14, output_dtype=dtype, exp_order=exp_order)
    q = realistic_scores(np.random.default_rng(1), (64, 65), spread)
    expected = float_softmax(q)
    got = shiftmax_reference(q, params).astype(np.float64) * params.output_scale
    assert np.max(np.abs(got - expected)) <= relative / 2 + params.output_scale
    assert np.max(np.abs(got.sum(axis=-1) - 1.0)) <= relative + 65 * params.output_scale / 2
    clear = np.sort(expected, axis=-1)[:, -1] - np.sort(expected, axis=-1)[:, -2] > 0.05
    np.testing.assert_array_equal(got[clear].argmax(axis=-1), expected[clear].argmax(axis=-1))


def test_octaves_follow_the_calibration_spread():
    rng = np.random.default_rng(2)
    peaked = realistic_scores(rng, (16, 64), spread=0.2)
    wide = realistic_scores(rng, (16, 64), spread=6.0)
    assert calibrate_octaves(peaked, SCALE) < calibrate_octaves(wide, SCALE)
    assert shiftmax_params(SCALE, calibration=peaked).frac_bits > shiftmax_params(SCALE, calibration=wide).frac_bits


@pytest.mark.parametrize("octaves", [1, 5, 14])
@pytest.mark.parametrize("row_length", [1, 197, 2**16])
def test_bounds_fit_their_dtypes(octaves, row_length):
    bounds = shiftmax_bounds(shiftmax_params(SCALE, octaves=octaves), row_length)
    for name, (low, high, dtype) in bounds.items():
        assert DTYPE_RANGE[dtype][0] <= low <= high <= DTYPE_RANGE[dtype][1], name
    for name in ("log2_domain", "exp"):  # Shiftmax in INT16: the per-element exp path fits int16
        assert DTYPE_RANGE["int16"][0] <= bounds[name][0] <= bounds[name][1] <= DTYPE_RANGE["int16"][1], name


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int32, (3, 40), elements=st.one_of(INT32, st.integers(-5000, 5000))),
       st.integers(1, 14))
def test_intermediates_stay_within_bounds(q, octaves):
    params = shiftmax_params(SCALE, octaves=octaves)
    trace = {}
    shiftmax_reference(q, params, trace)
    for name, (low, high, _) in shiftmax_bounds(params, q.shape[-1]).items():
        assert low <= trace[name].min() and trace[name].max() <= high, name


def test_rejects_rows_longer_than_the_int32_sum_allows(params):
    with pytest.raises(ValueError, match="rows"):
        shiftmax_bounds(params, 2**16 + 1)
