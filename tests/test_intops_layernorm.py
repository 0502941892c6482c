"""I-LayerNorm: numpy reference == TVM llvm build bit-exactly; accuracy vs float LayerNorm; overflow bounds."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from relax_passes.intops.layernorm import (MAX_CHANNELS, MAX_EXPONENT, emit_layernorm, layernorm_bounds,
                                           layernorm_params, layernorm_reference)
from relax_passes.intops.single_op import compile_single_op
from relax_passes.requantize import DTYPE_RANGE

C = 32
SHAPE = (3, 4, C)
INPUT_SCALE = 0.02
INT16 = st.integers(-(2**15), 2**15 - 1)


def affine(channels, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.normal(1.0, 0.5, channels)
    gamma[:2] = (0.0, -1.3)[: channels]
    return gamma, rng.normal(0.0, 0.3, channels)


def float_layernorm(q, gamma, beta):
    x = q.astype(np.float64) * INPUT_SCALE
    centred = x - x.mean(axis=-1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=-1, keepdims=True))
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0) * gamma + beta


@pytest.fixture(scope="module")
def params():
    gamma, beta = affine(C)
    return layernorm_params(INPUT_SCALE, gamma, beta, output_scale=4.0 / 127)


@pytest.fixture(scope="module")
def on_host(params):
    return compile_single_op(emit_layernorm, params, SHAPE, "int16")


def assert_bit_exact(on_host, params, q):
    np.testing.assert_array_equal(on_host(q), layernorm_reference(q, params))


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int16, SHAPE, elements=st.one_of(INT16, st.integers(-300, 300))))
def test_bit_exact_fuzzed_values(on_host, params, q):
    assert_bit_exact(on_host, params, q)


@pytest.mark.parametrize("fill", [-(2**15), 2**15 - 1, 0, -7])
def test_zero_variance_rows_give_beta(on_host, params, fill):
    q = np.full(SHAPE, fill, dtype=np.int16)
    assert_bit_exact(on_host, params, q)
    _, beta = affine(C)
    expected = np.clip(np.floor(beta / (4.0 / 127) + 0.5), -128, 127)
    np.testing.assert_array_equal(layernorm_reference(q, params), np.broadcast_to(expected, SHAPE))


def test_extreme_rows(on_host, params):
    q = np.empty(SHAPE, dtype=np.int16)
    q[0] = np.where(np.arange(C) % 2, 2**15 - 1, -(2**15))       # largest variance
    q[1] = np.where(np.arange(C) == 5, 2**15 - 1, -(2**15))      # one outlier
    q[2] = np.where(np.arange(C) == 9, 1, 0)                     # smallest non-zero variance
    assert_bit_exact(on_host, params, q)


@settings(max_examples=4, deadline=None)
@given(st.integers(1, 100), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_bit_exact_fuzzed_shapes(channels, rows, seed):
    gamma, beta = affine(channels, seed)
    params = layernorm_params(INPUT_SCALE, gamma, beta, output_scale=0.05)
    q = np.random.default_rng(seed).integers(-(2**15), 2**15, (rows, channels)).astype(np.int16)
    np.testing.assert_array_equal(compile_single_op(emit_layernorm, params, q.shape, "int16")(q),
                                  layernorm_reference(q, params))


@pytest.mark.parametrize("spread", [3.0, 300.0])
def test_accuracy_vs_float(params, spread):
    rng = np.random.default_rng(3)
    q = np.clip(np.round(rng.standard_t(3, (200, C)) * spread + rng.normal(0, 50, (200, 1))), -(2**15), 2**15 - 1)
    q = q.astype(np.int16)
    gamma, beta = affine(C)
    output_scale = 4.0 / 127
    expected = np.clip(float_layernorm(q, gamma, beta) / output_scale, -128, 127)
    got = layernorm_reference(q, params).astype(np.float64)
    # From the scales: the mean keeps 8 fraction bits (d off by <= 0.51 * 2**-8 LSB, which also raises
    # sum d**2 by <= C/4 2**-16), 1/sqrt is off by < 2**-13 relative (15-bit isqrt floor 2**-14, 16-bit
    # reciprocal floor 2**-15), normalised values are rounded to 2**-20; final rounding: 1/2 + 2**-8.
    centred = q - q.astype(np.float64).mean(axis=-1, keepdims=True)
    root = 2**8 * np.sqrt((centred**2).sum(axis=-1, keepdims=True))
    normalised = np.abs(expected - beta / output_scale) / np.maximum(np.abs(gamma) / output_scale, 1e-12)
    drift = np.abs(gamma) / output_scale * (normalised * (2.0**-13 + C / root**2) + 0.51 * math.sqrt(C) / root
                                            + math.sqrt(C) * 2.0**-19)
    assert np.all(np.abs(got - expected) <= 0.5 + 2.0**-7 + drift + 1e-6)
    assert np.mean(np.abs(got - expected)) < 0.26  # ~ uniform rounding error 1/4


@pytest.mark.parametrize("channels", [1, 6, 768, MAX_CHANNELS])
def test_bounds_fit_their_dtypes(channels):
    gamma = np.full(channels, 50.0)
    params = layernorm_params(INPUT_SCALE, gamma, np.full(channels, -3.0), output_scale=2.0**-10)
    bounds = layernorm_bounds(params)
    for name, (low, high, dtype) in bounds.items():
        assert DTYPE_RANGE.get(dtype, (-(2**63), 2**63 - 1))[0] <= low <= high <= DTYPE_RANGE.get(
            dtype, (-(2**63), 2**63 - 1))[1], name
    assert bounds["variance_sum"][1] < 4 ** (MAX_EXPONENT + 1)  # the base-4 exponent search's range


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.int16, (4, 24), elements=st.one_of(INT16, st.integers(-3, 3))), st.integers(0, 2**32 - 1))
def test_intermediates_stay_within_bounds(q, seed):
    gamma, beta = affine(24, seed)
    params = layernorm_params(INPUT_SCALE, gamma * 20, beta, output_scale=0.01)
    trace = {}
    layernorm_reference(q, params, trace)
    for name, (low, high, _) in layernorm_bounds(params).items():
        assert low <= trace[name].min() and trace[name].max() <= high, name
    # The docstring's claim that lets t >= -7 and the 2**28 floor of w act only on v = 0:
    assert np.all((trace["variance_sum"] == 0) | (trace["variance_sum"] >= 2**14))


@pytest.mark.parametrize("channels", [3, 96, 768, MAX_CHANNELS])
@pytest.mark.parametrize("fill", [-(2**15), 2**15 - 1, -1, 12345])
def test_dyadic_mean_is_exact_on_constant_rows(channels, fill):
    gamma, beta = affine(channels)
    params = layernorm_params(INPUT_SCALE, gamma, beta, output_scale=0.05)
    trace = {}
    layernorm_reference(np.full((1, channels), fill, dtype=np.int16), params, trace)
    assert not trace["centred"].any() and not trace["normalised"].any()


def test_rejects_inconsistent_affine_parameters():
    with pytest.raises(ValueError, match="gamma/beta"):
        layernorm_params(INPUT_SCALE, np.ones(4), np.zeros(5), 0.1)
    with pytest.raises(ValueError, match="output_scale"):
        layernorm_params(INPUT_SCALE, np.ones(4), np.full(4, 1e6), 0.1)
