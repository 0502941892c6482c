"""Integerize rules on tiny float modules: structure (Before -> Expected), numbers, bit-exactness."""
import numpy as np
import pytest
import tvm
from tvm import relax

from common.errors import UserError
from frontend.host_run import run_on_host
from relax_passes import integer_program as ip
from relax_passes.calibrate import calibrate
from relax_passes.integerize import RANGE_HEADROOM, integerize, nearest_indices
from relax_passes.requantize import Dyadic, emit_requantize

RNG = np.random.default_rng(1)
IMAGES = RNG.integers(0, 256, size=(3, 1, 3, 8, 8)).astype("float32")


def float_module(body, in_shape=(1, 3, 8, 8)):
    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType(in_shape, "float32"))
    with bb.function("main", [image]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, image))
        bb.emit_func_output(out)
    return bb.get()


PATCH = (RNG.normal(size=(16, 3, 4, 4)) * 0.02).astype("float32")
PATCH_BIAS = RNG.normal(size=(1, 16, 1, 1)).astype("float32")
DENSE = RNG.normal(size=(16, 5)).astype("float32")
DENSE_BIAS = RNG.normal(size=(5,)).astype("float32")


def patch_tokens(bb, image):
    conv = bb.emit(relax.op.nn.conv2d(image, relax.const(PATCH), strides=[4, 4]))
    biased = bb.emit(relax.op.add(conv, relax.const(PATCH_BIAS)))
    return bb.emit(relax.op.permute_dims(bb.emit(relax.op.reshape(biased, (1, 16, 4))), [0, 2, 1]))


def dense_head(bb, image):
    tokens = patch_tokens(bb, image)
    mm = bb.emit(relax.op.matmul(tokens, relax.const(DENSE)))
    logits = bb.emit(relax.op.add(mm, relax.const(DENSE_BIAS)))
    return relax.op.permute_dims(logits, [0, 2, 1])  # [1, 5 classes, 4 tokens]


def quantized(body, images=IMAGES[:1], **options):
    mod = float_module(body)
    calibration = calibrate(mod, list(images), progress=False)
    return mod, calibration, integerize(mod["main"], calibration, **options)


def run_tvm(mod, image):
    return run_on_host(mod, image)


def test_dense_rule_structure():
    """conv+bias and matmul+bias each become one int8 op with a narrow bias and a per-channel requantize."""
    _, calibration, program = quantized(dense_head)
    kinds = [type(op).__name__ for op in program.ops]
    assert kinds == ["ImageInput", "Conv2d", "Reshape", "PermuteDims", "Dense", "PermuteDims", "ArgMax"]
    conv, dense = program.ops[1], program.ops[4]

    # Independent hand quantization of the rule: symmetric int8 weights per output channel, each channel's
    # scale the tensor's max/127 over the largest power of two that keeps the channel within +-127.
    def channel_scales(weight, axes):
        top = np.abs(weight.astype(np.float64)).max(axes)
        return top.max() / 127 / 2.0 ** np.floor(np.log2(top.max() / top))

    w_scale = channel_scales(DENSE, 0)
    assert np.array_equal(dense.weight, np.round(DENSE / w_scale).astype(np.int8))
    assert np.all(np.abs(dense.weight).max(0) > 63)  # every channel keeps more than half of the int8 range
    acc_scale = conv.qtype.scale * w_scale
    assert dense.bias.dtype == np.int16 and dense.bias_shift == 0  # these biases fit int16 unshifted
    assert np.array_equal(dense.bias, np.round(DENSE_BIAS / acc_scale))
    out_scale = calibration.absmax[program.ops[4].source] * RANGE_HEADROOM["int8"] / 127
    np.testing.assert_allclose(dense.dyadic.ratio, acc_scale / out_scale, rtol=1e-8)
    assert dense.dyadic.multiplier.ndim == 0 and dense.dyadic.shift.shape == (5,)  # one multiplier, 5 shifts
    # Conv input is x - 128: the offset is folded into the bias (large: int16 after a shift).
    c_scale = channel_scales(PATCH, (1, 2, 3))
    conv_q = np.round(PATCH / c_scale[:, None, None, None]).astype(np.int64)
    want_bias = (np.round(PATCH_BIAS.reshape(-1) / c_scale) + 128 * conv_q.sum((1, 2, 3))).astype(np.int64)
    assert np.array_equal(conv.weight, conv_q)
    shift = conv.bias_shift
    assert conv.bias.dtype == np.int16 and np.abs((want_bias + 2**shift // 2) >> (shift - 1)).max() > 32767
    assert np.array_equal(conv.bias, (want_bias + 2**shift // 2) >> shift)

    # Expected Relax for the Dense op, written out by hand.
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 16), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            product = bb.emit(relax.op.matmul(x, relax.const(dense.weight), out_dtype="int32"))
            acc = bb.emit(relax.op.add(product, relax.op.astype(relax.const(dense.bias), "int32")))
            out = bb.emit_output(emit_requantize(bb, acc, Dyadic.from_ratio(acc_scale / out_scale), "int8"))
        bb.emit_func_output(out)
    got = relax.BlockBuilder()
    with got.function("main", [x]):
        with got.dataflow():
            out = got.emit_output(dense.emit(got, x))
        got.emit_func_output(out)
    tvm.ir.assert_structural_equal(got.get(), bb.get())


def sqnr_db(reference, approximation):
    return 10 * np.log10(np.sum(reference**2) / np.sum((reference - approximation) ** 2))


def transformer_block(bb, image):
    """LayerNorm -> q.k^T * scale -> softmax -> .v -> residual add -> LayerNorm -> GELU MLP -> residual."""
    tokens = patch_tokens(bb, image)
    x = bb.emit(relax.op.add(tokens, relax.const(RNG.normal(size=(1, 4, 16)).astype("float32"))))
    gamma = relax.const(RNG.uniform(0.5, 1.5, 16).astype("float32"))
    beta = relax.const(RNG.normal(size=16).astype("float32") * 0.1)
    h = bb.emit(relax.op.nn.layer_norm(x, gamma, beta, axes=[-1]))
    q = bb.emit(relax.op.matmul(h, relax.const(RNG.normal(size=(16, 16)).astype("float32") * 0.3)))
    k = bb.emit(relax.op.matmul(h, relax.const(RNG.normal(size=(16, 16)).astype("float32") * 0.3)))
    v = bb.emit(relax.op.matmul(h, relax.const(RNG.normal(size=(16, 16)).astype("float32") * 0.3)))
    scores = bb.emit(relax.op.multiply(relax.op.matmul(q, relax.op.permute_dims(k, [0, 2, 1])),
                                       relax.const(0.25, "float32")))
    attn = bb.emit(relax.op.matmul(relax.op.nn.softmax(scores, axis=-1), v))
    x = bb.emit(relax.op.add(x, attn))
    h = bb.emit(relax.op.nn.layer_norm(x, gamma, beta, axes=[-1]))
    hidden = bb.emit(relax.op.nn.gelu(relax.op.matmul(h, relax.const(RNG.normal(size=(16, 32)).astype("float32") * 0.3))))
    x = bb.emit(relax.op.add(x, relax.op.matmul(hidden, relax.const(RNG.normal(size=(32, 16)).astype("float32") * 0.2))))
    return relax.op.permute_dims(x, [0, 2, 1])


@pytest.mark.parametrize("gelu", ["lambda_shift", "shift", "poly"])
def test_transformer_block_is_bit_exact_and_close_to_float(gelu):
    mod, calibration, program = quantized(transformer_block, gelu=gelu)
    kinds = {op.kind for op in program.ops if isinstance(op, ip.NonLinear)}
    assert kinds == {"layer_norm", "softmax", "gelu"}
    debug = relax.VirtualMachine(tvm.compile(program.to_relax(debug=True), "llvm"), tvm.cpu())
    for image in IMAGES:
        hwc = image[0].transpose(1, 2, 0)[None].astype(np.uint8)
        values = program.run(hwc)
        outputs = debug["main"](tvm.runtime.tensor(hwc))
        for op, got in zip(program.ops, outputs):
            assert np.array_equal(got.numpy(), values[op.out]), op.out
    # The last residual add, dequantized, against the float model on the calibration image.
    values = program.run(IMAGES[0, 0].transpose(1, 2, 0)[None].astype(np.uint8))
    final = next(op for op in reversed(program.ops) if isinstance(op, ip.Add))
    real = values[final.out].astype(np.float64) * final.qtype.scale
    assert sqnr_db(calibration.values[final.source], real) > 20


def test_per_layer_values_track_the_float_model():
    """On the calibration image every dequantized int8/int16 value is within 25 dB of its float variable."""
    _, calibration, program = quantized(dense_head)
    values = program.run(IMAGES[0, 0].transpose(1, 2, 0)[None].astype(np.uint8))
    checked = 0
    for op in program.ops:
        if isinstance(op, (ip.Conv2d, ip.Dense)):
            real = values[op.out].astype(np.float64) * op.qtype.scale
            assert sqnr_db(calibration.values[op.source], real) > 25, op.out
            checked += 1
    assert checked == 2


@pytest.mark.parametrize("n_in,n_out,mode,rounding", [
    (16, 64, "half_pixel", "round"), (5, 13, "half_pixel", "round"), (16, 64, "asymmetric", "floor"),
    (7, 3, "half_pixel", "round_prefer_ceil"), (4, 9, "align_corners", "round")])
def test_nearest_indices_match_tvm_resize2d(n_in, n_out, mode, rounding):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 1, 2, n_in), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.image.resize2d(x, (2, n_out), method="nearest_neighbor",
                                                          coordinate_transformation_mode=mode,
                                                          rounding_method=rounding))
        bb.emit_func_output(out)
    source = np.tile(np.arange(n_in, dtype="float32"), (1, 1, 2, 1))
    want = run_on_host(bb.get(), source)[0][0, 0, 0].astype(np.int64)
    assert np.array_equal(nearest_indices(n_in, n_out, mode, rounding), want)


def test_unsupported_operator_is_a_one_line_user_error():
    with pytest.raises(UserError, match="operator relax.exp is not supported"):
        quantized(lambda bb, image: relax.op.exp(patch_tokens(bb, image)))
    with pytest.raises(UserError, match="positive scalar"):
        quantized(lambda bb, image: relax.op.multiply(patch_tokens(bb, image), relax.const(-2.0, "float32")))


def test_dense_straight_on_the_image_folds_the_input_offset():
    """matmul(raw pixels, W): the -128 input offset is compensated in the int32 bias."""
    weight = RNG.normal(size=(8, 6)).astype("float32") * 0.01

    def body(bb, image):
        rows = bb.emit(relax.op.reshape(image, (1, 24, 8)))
        return relax.op.permute_dims(relax.op.matmul(rows, relax.const(weight)), [0, 2, 1])

    _, calibration, program = quantized(body)
    dense = next(op for op in program.ops if isinstance(op, ip.Dense))
    values = program.run(IMAGES[0, 0].transpose(1, 2, 0)[None].astype(np.uint8))
    real = values[dense.out].astype(np.float64) * dense.qtype.scale
    assert sqnr_db(calibration.values[dense.source], real) > 30


def test_elementwise_op_on_the_raw_image_is_refused():
    with pytest.raises(UserError, match="reads the raw image"):
        quantized(lambda bb, image: relax.op.add(image, image))
