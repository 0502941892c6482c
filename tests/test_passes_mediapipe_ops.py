"""The CNN integer ops (MediaPipe selfie path): numpy reference == TVM llvm, each also checked against the float op it
stands for; SinkLayoutPermutes Before -> Expected; the integerize rules on a tiny MobileNet-style block."""
import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.script import relax as R

from relax_passes import cnn_ops, lookup_table
from relax_passes import integer_program as ip
from relax_passes.calibrate import calibrate
from relax_passes.integerize import integerize, weight_error_shift
from relax_passes.requantize import Dyadic
from relax_passes.sink_layout_permutes import SinkLayoutPermutes
from relax_passes.verify_integer_only import float_offenders

RNG = np.random.default_rng(3)


def run_op(op, *inputs):
    """``op`` built alone into a Relax module and run by the TVM llvm VM."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(x.shape, str(x.dtype))) for i, x in enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(op.emit(bb, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    assert float_offenders(mod["main"]) == []
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(x) for x in inputs)).numpy()


def make(cls, shape, dtype, scale=1.0, **fields):
    return cls(out="y", inputs=("x",), qtype=ip.QType(dtype, tuple(shape), np.asarray(scale)), **fields)


def assert_bit_exact(op, *inputs):
    want = op.reference(*inputs)
    got = run_op(op, *inputs)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    return want


def int16_extremes(shape):
    x = RNG.integers(-32768, 32768, size=shape).astype(np.int16)
    x.reshape(-1)[:2] = (-32768, 32767)
    return x


def test_pad_borders_hold_the_value():
    x = RNG.integers(-128, 128, size=(1, 2, 3, 4)).astype(np.int8)
    op = make(cnn_ops.Pad, (1, 2, 4, 6), "int8", pad=(0, 1, 1, 1), value=-128)
    y = assert_bit_exact(op, x)
    assert np.array_equal(y[:, :, :3, 1:5], x) and np.all(y[:, :, 3, :] == -128) and np.all(y[..., [0, 5]] == -128)


def test_relu_and_multiply_and_global_avg_pool_against_float():
    x = int16_extremes((1, 3, 5, 7))
    assert np.array_equal(assert_bit_exact(make(cnn_ops.Relu, x.shape, "int16"), x), np.maximum(x, 0))

    gate = RNG.integers(0, 256, size=(1, 3, 1, 1)).astype(np.uint8)
    ratio = 2.0**-9
    y = assert_bit_exact(make(cnn_ops.Multiply, x.shape, "int16", dyadic=Dyadic.from_ratio(ratio)), x, gate)
    assert np.max(np.abs(y - np.clip(x.astype(np.float64) * gate * ratio, -32768, 32767))) <= 0.5 + 1e-9

    ratio = 1.0 / 35 * 0.75
    y = assert_bit_exact(make(cnn_ops.GlobalAvgPool, (1, 3, 1, 1), "int16", dyadic=Dyadic.from_ratio(ratio)), x)
    assert np.max(np.abs(y - x.astype(np.float64).sum(axis=(2, 3), keepdims=True) * ratio)) <= 0.5 + 1e-9


@settings(max_examples=20, deadline=None)
@given(st.floats(0.001, 0.2), st.floats(0.001, 0.2))
def test_hard_swish_is_the_float_formula_within_one_lsb(in_scale, out_scale):
    x = np.arange(-32768, 32768, 257, dtype=np.int16).reshape(1, 1, 1, -1)
    op = make(cnn_ops.HardSwish, x.shape, "int16", out_scale, three=round(3 / in_scale), six=round(6 / in_scale),
              dyadic=Dyadic.from_ratio(in_scale * in_scale / (6 * out_scale)))
    y = op.reference(x)
    real = x * in_scale
    want = np.clip(np.round(real * np.clip(real + 3, 0, 6) / 6 / out_scale), -32768, 32767)
    # the 3 and 6 rounded to the input grid move the result by at most 1/2 input LSB x (|x| + 3) / 6
    slack = 0.5 * in_scale * (np.abs(real) + 3) / 6 / out_scale + 1
    assert np.all(np.abs(y - want) <= slack)


def test_hard_swish_and_lookup_tvm_equal_reference():
    x = int16_extremes((1, 2, 4, 4))
    scale = 0.01
    op = make(cnn_ops.HardSwish, x.shape, "int16", three=300, six=600, dyadic=Dyadic.from_ratio(scale / 6))
    assert_bit_exact(op, x)
    table = lookup_table.tabulate(lookup_table.sigmoid, 0.05, lookup_table.SIGMOID_SCALE, "uint8")
    codes = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 16, 16)
    y = assert_bit_exact(make(lookup_table.Lookup, codes.shape, "uint8", table=table), codes)
    assert np.array_equal(y.reshape(-1), np.round(255 / (1 + np.exp(-np.arange(-128, 128) * 0.05))).astype(np.uint8))
    assert np.all((y >= 128) == (codes >= 0))  # mask = p >= 128 is sigmoid >= 0.5


@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric"])
def test_bilinear_resize_matches_tvm_float_resize(mode):
    x = RNG.integers(-128, 128, size=(1, 3, 4, 5)).astype(np.int8)
    taps = [cnn_ops.linear_taps(n, 2 * n, mode) for n in (4, 5)]
    op = make(cnn_ops.BilinearResize, (1, 3, 8, 10), "int32", taps_h=taps[0], taps_w=taps[1],
              dyadic=Dyadic.from_ratio(1.0))  # ratio 1: the int32 result is the value x 2**(2*bits)
    got = assert_bit_exact(op, x)
    bb = relax.BlockBuilder()
    data = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [data]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.image.resize2d(data, (8, 10), layout="NCHW", method="linear",
                                                         coordinate_transformation_mode=mode))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), "llvm"), tvm.cpu())
    want = vm["main"](tvm.runtime.tensor(x.astype(np.float32))).numpy()
    exact = all(np.array_equal(t[3], np.round(t[3])) for t in taps)  # 2x resizes: weights k/4 are exact
    tolerance = 1e-4 if mode != "align_corners" else 128 * 2 ** -cnn_ops.RESIZE_FRAC_BITS
    assert exact and np.max(np.abs(got / 2.0 ** (2 * cnn_ops.RESIZE_FRAC_BITS) - want)) <= tolerance


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, (0, 0, 0, 0)), (3, 2, (1, 1, 0, 0)), (4, 2, (1, 1, 1, 1))])
def test_conv2d_transpose_matches_tvm_float(kernel, stride, padding):
    x = RNG.integers(-128, 128, size=(1, 3, 4, 5)).astype(np.int8)
    weight = RNG.integers(-127, 128, size=(3, 2, kernel, kernel)).astype(np.int8)
    bias = RNG.integers(-1000, 1000, size=2).astype(np.int32)
    oh = (4 - 1) * stride + kernel - padding[0] - padding[2]
    ow = (5 - 1) * stride + kernel - padding[1] - padding[3]
    op = make(cnn_ops.Conv2dTranspose, (1, 2, oh, ow), "int32", weight=weight, bias=bias, strides=(stride, stride),
              padding=padding, dyadic=Dyadic.from_ratio(np.full((1, 2, 1, 1), 0.5)))
    assert_bit_exact(op, x)
    bb = relax.BlockBuilder()
    data = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [data]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.conv2d_transpose(data, relax.const(weight.astype(np.float32)),
                                                              strides=stride, padding=padding))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), "llvm"), tvm.cpu())
    want = vm["main"](tvm.runtime.tensor(x.astype(np.float32))).numpy() + bias.reshape(1, -1, 1, 1)
    assert np.array_equal(op.accumulate(x), want.astype(np.int64))


def test_depthwise_conv2d_groups():
    x = RNG.integers(-32768, 32768, size=(1, 4, 6, 6)).astype(np.int16)
    weight = RNG.integers(-127, 128, size=(4, 1, 3, 3)).astype(np.int8)
    op = make(ip.Conv2d, (1, 4, 2, 2), "int32", weight=weight, bias=np.arange(4, dtype=np.int32),
              strides=(2, 2), groups=4, dyadic=Dyadic.from_ratio(np.full((1, 4, 1, 1), 1.0)))
    got = assert_bit_exact(op, x)
    want = np.array([[[[(x[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].astype(np.int64) * weight[c, 0]).sum() + c
                        for j in range(2)] for i in range(2)] for c in range(4)]])
    assert np.array_equal(got, want)


def test_bias_correction_shift_is_the_mean_output_error():
    weight = RNG.normal(size=(6, 2, 3, 3))
    q = np.round(weight / 0.05).astype(np.int8)
    scale = np.full(6, 0.05)
    x = RNG.normal(1.0, 0.5, size=(1, 4, 7, 7))
    shift = weight_error_shift(weight, q, scale, x, groups=2)
    group_of = np.arange(6) // 3
    means = x.mean(axis=(0, 2, 3))
    want = [((q[o] * 0.05 - weight[o]).sum(axis=(1, 2)) * means[2 * group_of[o]:2 * group_of[o] + 2]).sum()
            for o in range(6)]
    assert np.allclose(shift, want)


# ---- SinkLayoutPermutes ---------------------------------------------------------------------------------------
# fmt: off
@tvm.script.ir_module
class NHWCRegion:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32")) -> R.Tensor((1, 4, 1, 1), "float32"):
        with R.dataflow():
            a = R.permute_dims(x, axes=[0, 2, 3, 1])
            b = R.add(a, R.const(np.arange(4, dtype="float32")))
            c = R.nn.relu(b)
            d = R.nn.avg_pool2d(c, pool_size=[8, 8], strides=[8, 8], layout="NHWC", out_layout="NHWC")
            e = R.sigmoid(d)
            f = R.multiply(c, e)
            g = R.image.resize2d(f, R.shape([16, 16]), layout="NHWC", method="linear",
                                 coordinate_transformation_mode="half_pixel", rounding_method="")
            h = R.permute_dims(g, axes=[0, 3, 1, 2])
            i = R.nn.avg_pool2d(h, pool_size=[16, 16], strides=[16, 16])
            R.output(i)
        return i


@tvm.script.ir_module
class NCHWRegion:
    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32")) -> R.Tensor((1, 4, 1, 1), "float32"):
        with R.dataflow():
            b = R.add(x, R.const(np.arange(4, dtype="float32").reshape(1, 4, 1, 1)))
            c = R.nn.relu(b)
            d = R.nn.avg_pool2d(c, pool_size=[8, 8], strides=[8, 8], layout="NCHW", out_layout="NCHW")
            e = R.sigmoid(d)
            f = R.multiply(c, e)
            g = R.image.resize2d(f, R.shape([16, 16]), layout="NCHW", method="linear",
                                 coordinate_transformation_mode="half_pixel", rounding_method="")
            i = R.nn.avg_pool2d(g, pool_size=[16, 16], strides=[16, 16])
            R.output(i)
        return i
# fmt: on


def test_sink_layout_permutes_structure_and_numbers():
    after = SinkLayoutPermutes()(NHWCRegion)
    tvm.ir.assert_structural_equal(after, NCHWRegion, map_free_vars=True)
    x = RNG.normal(size=(1, 4, 8, 8)).astype(np.float32)
    outputs = [relax.VirtualMachine(tvm.compile(m, "llvm"), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
               for m in (NHWCRegion, after)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-6)


# ---- integerize rules on a tiny MobileNet-style block ----------------------------------------------------------
CONV = (RNG.normal(size=(8, 3, 3, 3)) * 0.01).astype(np.float32)
DEPTHWISE = (RNG.normal(size=(8, 1, 3, 3)) * 0.3).astype(np.float32)
SQUEEZE = (RNG.normal(size=(8, 8, 1, 1)) * 0.5).astype(np.float32)
UP = (RNG.normal(size=(8, 1, 2, 2)) * 0.3).astype(np.float32)
BIAS = RNG.normal(size=(1, 8, 1, 1)).astype(np.float32)


def mobile_block(bb, image):
    conv = bb.emit(relax.op.nn.conv2d(image, relax.const(CONV), strides=2, padding=(0, 0, 1, 1)))
    x = bb.emit(relax.op.add(conv, relax.const(BIAS)))
    plus3 = bb.emit(relax.op.add(x, relax.const(3.0)))
    hswish = bb.emit(relax.op.divide(bb.emit(relax.op.multiply(x, bb.emit(relax.op.clip(plus3, 0, 6)))),
                                     relax.const(6.0)))
    dw = bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(hswish, relax.const(DEPTHWISE), padding=1, groups=8))))
    pooled = bb.emit(relax.op.nn.avg_pool2d(dw, pool_size=(8, 8), strides=(8, 8)))
    gate = bb.emit(relax.op.sigmoid(bb.emit(relax.op.nn.conv2d(pooled, relax.const(SQUEEZE)))))
    excited = bb.emit(relax.op.add(bb.emit(relax.op.multiply(dw, gate)), hswish))
    resized = bb.emit(relax.op.image.resize2d(excited, (16, 16), method="linear", rounding_method=""))
    up = bb.emit(relax.op.nn.conv2d_transpose(resized, relax.const(UP), strides=2))
    return relax.op.sigmoid(bb.emit(relax.op.add(up, relax.const(np.full((1, 1, 1, 1), 0.1, np.float32)))))


@pytest.fixture(scope="module")
def block():
    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType((1, 3, 16, 16), "float32"))
    with bb.function("main", [image]):
        with bb.dataflow():
            out = bb.emit_output(mobile_block(bb, image))
        bb.emit_func_output(out)
    mod = bb.get()
    images = RNG.integers(0, 256, size=(2, 1, 3, 16, 16)).astype(np.float32)
    calibration = calibrate(mod, list(images[:1]), progress=False)
    program = integerize(mod["main"], calibration, activations="int16", bias_correction=True)
    return mod, program, images


def test_mobile_block_rules(block):
    _, program, _ = block
    kinds = [type(op).__name__ for op in program.ops]
    assert kinds == ["ImageInput", "Pad", "Conv2d", "HardSwish", "Pad", "Conv2d", "Relu", "GlobalAvgPool", "Conv2d",
                     "Requantize", "Lookup", "Multiply", "Add", "BilinearResize", "Conv2dTranspose", "Requantize",
                     "Lookup"]
    pad, conv, _, _, depthwise = program.ops[1:6]
    assert pad.value == -128 and pad.pad == (0, 0, 1, 1)  # the raw image's real zero is q = -128
    assert depthwise.groups == 8 and program.ops[4].value == 0
    assert program.ops[-1].qtype.dtype == "uint8" and program.output == program.ops[-1].out
    wide = (ip.Conv2d, cnn_ops.HardSwish, cnn_ops.Multiply)
    assert all(op.qtype.dtype in ("int16", "int32") for op in program.ops if isinstance(op, wide))


def test_mobile_block_bit_exact_and_close_to_float(block):
    mod, program, images = block
    float_vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    int_vm = relax.VirtualMachine(tvm.compile(program.to_relax(), "llvm"), tvm.cpu())
    for image in images:
        pixels = image[0].transpose(1, 2, 0)[None].astype(np.uint8)
        want = program.run(pixels)[program.output]
        assert np.array_equal(int_vm["main"](tvm.runtime.tensor(pixels)).numpy(), want)
        probability = float_vm["main"](tvm.runtime.tensor(image)).numpy()
        assert np.max(np.abs(want / 255.0 - probability)) < 0.03


def test_overflow_bounds_of_the_cnn_ops_catch_a_too_large_pool():
    pool = make(cnn_ops.GlobalAvgPool, (1, 1, 1, 1), "int16", pixels=256 * 256, dyadic=Dyadic.from_ratio(2.0**-16))
    (what, bound, limit), _ = pool.bounds([32768])
    assert what == "sum" and bound == 2**31 > limit
    assert all(b <= lim for _, b, lim in make(cnn_ops.GlobalAvgPool, (1, 1, 1, 1), "int16", pixels=128 * 128,
                                                 dyadic=Dyadic.from_ratio(2.0**-14)).bounds([32768]))


def emitted(op, *types):
    """``op.emit`` alone in a ``main`` over parameters of the given (shape, dtype)."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(shape, dtype)) for i, (shape, dtype) in enumerate(types)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(op.emit(bb, *params))
        bb.emit_func_output(out)
    return bb.get(), params


def expected(params, body):
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def test_emitted_relax_is_the_expected_integer_program():
    """Pad, HardSwish and Lookup written out by hand (Expected) against what the ops emit."""
    from relax_passes.requantize import emit_requantize

    pad = make(cnn_ops.Pad, (1, 2, 5, 6), "int8", pad=(1, 0, 1, 2), value=-128)
    got, params = emitted(pad, ((1, 2, 3, 4), "int8"))

    def pad_body(bb, x):
        rows = bb.emit(relax.op.concat([relax.const(np.full((1, 2, 1, 4), -128, np.int8)), x,
                                        relax.const(np.full((1, 2, 1, 4), -128, np.int8))], axis=2))
        return bb.emit(relax.op.concat([rows, relax.const(np.full((1, 2, 5, 2), -128, np.int8))], axis=3))

    tvm.ir.assert_structural_equal(got, expected(params, pad_body))

    dyadic = Dyadic.from_ratio(0.001)
    hswish = make(cnn_ops.HardSwish, (1, 2, 3, 4), "int16", three=300, six=600, dyadic=dyadic)
    got, params = emitted(hswish, ((1, 2, 3, 4), "int16"))

    def hswish_body(bb, x):
        wide = bb.emit(relax.op.astype(x, "int64"))
        gate = bb.emit(relax.op.clip(bb.emit(relax.op.add(wide, relax.const(300, "int64"))), 0, 600))
        return emit_requantize(bb, bb.emit(relax.op.multiply(wide, gate)), dyadic, "int16")

    tvm.ir.assert_structural_equal(got, expected(params, hswish_body))

    table = np.arange(256).astype(np.uint8)
    got, params = emitted(make(lookup_table.Lookup, (1, 2, 3, 4), "uint8", table=table), ((1, 2, 3, 4), "int8"))

    def lookup_body(bb, x):
        index = bb.emit(relax.op.add(bb.emit(relax.op.astype(x, "int32")), relax.const(np.int32(128), "int32")))
        return bb.emit(relax.op.take(relax.const(table), index, axis=0))

    tvm.ir.assert_structural_equal(got, expected(params, lookup_body))


def test_sink_layout_permutes_round_trip_to_the_output():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 2, 3, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            nhwc = bb.emit(relax.op.nn.relu(bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))))
            out = bb.emit_output(relax.op.permute_dims(nhwc, [0, 3, 1, 2]))
        bb.emit_func_output(out)
    after = SinkLayoutPermutes()(bb.get())
    ops = [b.value.op.name for b in after["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)]
    assert ops == ["relax.nn.relu"]
    value = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    vm = relax.VirtualMachine(tvm.compile(after, "llvm"), tvm.cpu())
    assert np.array_equal(vm["main"](tvm.runtime.tensor(value)).numpy(), np.maximum(value, 0))


@settings(max_examples=4, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.integers(1, 2), st.sampled_from(["int8", "int16"]),
       st.integers(0, 2**32 - 1))
def test_fuzzed_depthwise_resize_pool_multiply_bit_exact(channels, height, width, stride, dtype, seed):
    """Random shapes and values (with both extremes of the dtype) through four CNN ops: numpy == TVM llvm."""
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 127) if dtype == "int8" else (-32768, 32767)
    x = rng.integers(lo, hi + 1, size=(1, channels, height + 2, width + 2)).astype(dtype)
    x.reshape(-1)[:2] = (lo, hi)
    weight = rng.integers(-127, 128, size=(channels, 1, 3, 3)).astype(np.int8)
    out_hw = (height - 1) // stride + 1, (width - 1) // stride + 1
    ratio = rng.uniform(2.0**-20, 2.0**-8, size=(1, channels, 1, 1))
    conv = make(ip.Conv2d, (1, channels, *out_hw), "int16", weight=weight, groups=channels,
                bias=rng.integers(-2**20, 2**20, size=channels).astype(np.int32), strides=(stride, stride),
                dyadic=Dyadic.from_ratio(ratio))
    taps = [cnn_ops.linear_taps(n, 2 * n + 1, "half_pixel") for n in out_hw]
    resize = make(cnn_ops.BilinearResize, (1, channels, 2 * out_hw[0] + 1, 2 * out_hw[1] + 1), dtype,
                  taps_h=taps[0], taps_w=taps[1], dyadic=Dyadic.from_ratio(rng.uniform(2.0**-15, 2.0**-13)))
    pool = make(cnn_ops.GlobalAvgPool, (1, channels, 1, 1), "int8", pixels=x.shape[2] * x.shape[3],
                dyadic=Dyadic.from_ratio(rng.uniform(0.001, 1.0) / (x.shape[2] * x.shape[3])))
    multiply = make(cnn_ops.Multiply, x.shape, dtype, dyadic=Dyadic.from_ratio(rng.uniform(0.001, 1.0)))
    y = conv.reference(x)
    gate = pool.reference(x)
    want = [y, resize.reference(y), gate, multiply.reference(x, gate)]

    bb = relax.BlockBuilder()  # one module for the four ops: one compilation per example
    data = relax.Var("x", relax.TensorType(x.shape, dtype))
    with bb.function("main", [data]):
        with bb.dataflow():
            conv_out, pool_out = conv.emit(bb, data), pool.emit(bb, data)
            outs = [conv_out, resize.emit(bb, conv_out), pool_out, multiply.emit(bb, data, pool_out)]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    got = relax.VirtualMachine(tvm.compile(bb.get(), "llvm"), tvm.cpu())["main"](tvm.runtime.tensor(x))
    for g, w in zip(got, want):
        assert g.numpy().dtype == w.dtype and np.array_equal(g.numpy(), w)
