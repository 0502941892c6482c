"""TFLite -> Relax import: MediaPipe's selfie segmenter against the LiteRT interpreter, the
Convolution2DTransposeBias / float16-weight extensions, and one-line errors for bad input."""
import numpy as np
import pytest
import tvm
from ai_edge_litert import interpreter as litert
from skimage import data, transform
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from common.errors import UserError
from frontend.tflite_import import fetch_mediapipe_selfie, import_tflite
from frontend.tflite_writer import TFLiteWriter

PHOTOS = ("astronaut", "chelsea", "coffee", "camera")


def _litert_run(path, x):
    interpreter = litert.Interpreter(str(path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _compile(imported):
    vm = relax.VirtualMachine(tvm.compile(imported.mod, "llvm"), tvm.cpu())
    params = [tvm.runtime.tensor(p) for p in imported.params]
    return lambda x: vm["main"](tvm.runtime.tensor(x), *params).numpy()


def _photo(name, size):
    """A scikit-image photo as RGB float32 in [0, 1], resized to size x size, batch of one."""
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)[None]


@pytest.fixture(scope="module")
def selfie():
    path = fetch_mediapipe_selfie()
    imported = import_tflite(path)
    return path, imported, _compile(imported)


def test_selfie_import_is_float32_with_weights_as_params(selfie):
    _, imported, _ = selfie
    assert imported.input_shape == (1, 256, 256, 3) and imported.input_dtype == "float32"
    assert imported.source_format == "tflite" and imported.input_name == "input_1"
    main = imported.mod["main"]
    assert len(main.params) == 1 + len(imported.params) == 1 + 110  # every conv weight/bias lifted
    for var, value in zip(main.params[1:], imported.params):
        assert tuple(var.ty.shape) == value.shape and value.dtype == np.float32
    assert imported.notes["float16_weights"] == 110


@pytest.mark.parametrize("name", PHOTOS)
def test_selfie_matches_litert_on_photos(selfie, name):
    path, _, run = selfie
    x = _photo(name, 256)
    expected, got = _litert_run(path, x), run(x)
    agreement = np.mean((got > 0.5) == (expected > 0.5))
    max_abs = float(np.abs(got - expected).max())
    print(f"{name}: mask agreement {agreement:.5f}, max abs diff {max_abs:.2e}")
    assert agreement >= 0.995
    assert max_abs < 1e-3


def _transpose_conv_model(kernel, stride, padding_code, size=3, cin=2, cout=4):
    """One Convolution2DTransposeBias with float16 weights behind DEQUANTIZE, as MediaPipe stores it."""
    rng = np.random.default_rng(kernel)
    w = TFLiteWriter()
    x = w.tensor("x", (1, size, size, cin))
    weight, bias = w.tensor("weight", (cout, kernel, kernel, cin)), w.tensor("bias", (cout,))
    w.op("DEQUANTIZE", [w.constant("weight16", rng.standard_normal((cout, kernel, kernel, cin)).astype(np.float16))],
         [weight])
    w.op("DEQUANTIZE", [w.constant("bias16", rng.standard_normal(cout).astype(np.float16))], [bias])
    out_size = size * stride if padding_code == 1 else (size - 1) * stride + kernel
    y = w.tensor("y", (1, out_size, out_size, cout))
    w.op("CUSTOM:Convolution2DTransposeBias", [x, weight, bias], [y],
         custom_options=np.array([padding_code, stride, stride], "<i4").tobytes())
    return w.finish([x], [y])


@I.ir_module
class ExpectedTransposeConv:
    @R.function
    def main(x: R.Tensor((1, 3, 3, 2), "float32"), w0: R.Tensor((2, 4, 2, 2), "float32"),
             w1: R.Tensor((4,), "float32")) -> R.Tensor((1, 6, 6, 4), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            nchw = R.permute_dims(x, axes=[0, 3, 1, 2])
            up = R.nn.conv2d_transpose(nchw, w0, strides=[2, 2], padding=[0, 0, 0, 0], data_layout="NCHW",
                                       kernel_layout="IOHW", out_dtype="float32")
            nhwc = R.permute_dims(up, axes=[0, 2, 3, 1])
            gv = R.add(nhwc, w1)
            R.output(gv)
        return gv


def test_transpose_conv_bias_imports_as_conv2d_transpose(tmp_path):
    path = tmp_path / "deconv.tflite"
    path.write_bytes(_transpose_conv_model(kernel=2, stride=2, padding_code=1))
    imported = import_tflite(path)
    tvm.ir.assert_structural_equal(imported.mod, ExpectedTransposeConv)
    assert imported.params[0].shape == (2, 4, 2, 2)  # OHWI in the file, IOHW as a parameter


@pytest.mark.parametrize("kernel,stride,padding_code", [(2, 2, 1), (3, 2, 1), (4, 2, 1), (3, 2, 2)])
def test_transpose_conv_bias_matches_litert(tmp_path, kernel, stride, padding_code):
    path = tmp_path / "deconv.tflite"
    path.write_bytes(_transpose_conv_model(kernel, stride, padding_code))
    x = np.random.default_rng(1).standard_normal((1, 3, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(_compile(import_tflite(path))(x), _litert_run(path, x), atol=1e-5)


@pytest.mark.parametrize("approximate,relax_op", [(False, "relax.nn.gelu"), (True, "relax.nn.gelu_tanh")])
def test_gelu_imports_as_one_op_honouring_approximate(tmp_path, approximate, relax_op):
    path = _single_op_model(tmp_path / "gelu.tflite", op="GELU", shape=(2, 64), unary=True,
                            options_name="GeluOptions", Approximate=approximate)
    imported = import_tflite(path)
    body = imported.mod["main"].body.blocks[0].bindings
    assert [b.value.op.name for b in body] == [relax_op]
    x = np.linspace(-6, 6, 128, dtype=np.float32).reshape(2, 64)
    np.testing.assert_allclose(_compile(imported)(x), _litert_run(path, x), atol=1e-5)


@I.ir_module
class ExpectedDense:
    @R.function
    def main(x: R.Tensor((1, 5, 3), "float32"), w0: R.Tensor((3, 4), "float32"),
             w1: R.Tensor((4,), "float32")) -> R.Tensor((1, 5, 4), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            mm = R.matmul(x, w0)
            gv = R.add(mm, w1)
            R.output(gv)
        return gv


def test_fully_connected_keeping_rank_is_matmul_plus_bias(tmp_path):
    rng = np.random.default_rng(2)
    w = TFLiteWriter()
    x, y = w.tensor("x", (1, 5, 3)), w.tensor("y", (1, 5, 4))
    weight = rng.standard_normal((4, 3)).astype(np.float32)
    w.op("FULLY_CONNECTED", [x, w.constant("weight", weight), w.constant("bias", np.ones(4, np.float32))], [y],
         "FullyConnectedOptions", KeepNumDims=True)
    path = tmp_path / "dense.tflite"
    path.write_bytes(w.finish([x], [y]))
    imported = import_tflite(path)
    tvm.ir.assert_structural_equal(imported.mod, ExpectedDense)
    np.testing.assert_array_equal(imported.params[0], weight.T)
    data = rng.standard_normal((1, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(_compile(imported)(data), _litert_run(path, data), atol=1e-5)


def _single_op_model(path, op="ADD", shape=(1, 4), signature=None, dtype="float32", n_inputs=1, unary=False,
                     **options):
    """A model of one ``op`` on its ``n_inputs`` inputs (plus a ones constant when binary on one input)."""
    w = TFLiteWriter()
    inputs = [w.tensor(f"x{i}", shape, dtype, shape_signature=signature) for i in range(n_inputs)]
    y = w.tensor("y", shape, dtype, shape_signature=signature)
    operands = inputs if unary or n_inputs > 1 else inputs + [w.constant("one", np.ones(shape[-1], dtype))]
    w.op(op, operands, [y], **options)
    path.write_bytes(w.finish(inputs, [y]))
    return path


def test_dynamic_input_needs_input_shape(tmp_path):
    path = _single_op_model(tmp_path / "dyn.tflite", shape=(1, 4), signature=(-1, 4),
                            options_name="AddOptions", FusedActivationFunction=0)
    with pytest.raises(UserError, match=r"input 'x0' has dynamic shape \[-1, 4\]; pass input_shape"):
        import_tflite(path)
    imported = import_tflite(path, input_shape=(3, 4))
    assert imported.input_shape == (3, 4)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(_compile(imported)(x), x + 1)
    with pytest.raises(UserError, match="does not fit input 'x0'"):
        import_tflite(path, input_shape=(3, 5))


@pytest.mark.parametrize("op,match", [
    ("RNN", r"unsupported TFLite op\(s\) RNN; supported are"),
    ("CUSTOM:MyFancyOp", r"unsupported TFLite op\(s\) CUSTOM:MyFancyOp; .* custom Convolution2DTransposeBias"),
])
def test_unsupported_op_is_named(tmp_path, op, match):
    with pytest.raises(UserError, match=match):
        import_tflite(_single_op_model(tmp_path / "op.tflite", op=op))


def test_quantized_and_multi_input_models_are_refused(tmp_path):
    with pytest.raises(UserError, match="input 'x0' is int8; only float32 models"):
        import_tflite(_single_op_model(tmp_path / "q.tflite", dtype="int8"))
    with pytest.raises(UserError, match="model has 2 inputs; only single-input"):
        import_tflite(_single_op_model(tmp_path / "two.tflite", n_inputs=2))


def test_corrupt_missing_and_foreign_files(tmp_path):
    good = _single_op_model(tmp_path / "good.tflite", options_name="AddOptions", FusedActivationFunction=0).read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(UserError, match=r"truncated\.tflite: corrupt or truncated TFLite file"):
        import_tflite(truncated)
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"\x08\x07\x12\x04onnx" + bytes(64))
    with pytest.raises(UserError, match=r"model\.onnx: not a TFLite flatbuffer"):
        import_tflite(foreign)
    with pytest.raises(UserError, match="nothing.tflite: no such file"):
        import_tflite(tmp_path / "nothing.tflite")


def test_damaged_files_fail_only_with_user_errors(tmp_path):
    """Seeded truncations and byte flips of a real model: each imports or raises a one-line UserError."""
    from segmenter.tflite_export import TFLITE_PATH

    source = TFLITE_PATH.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for case in range(12):
        damaged = bytearray(source[: rng.integers(8, len(source))] if case % 3 == 0 else source)
        for _ in range(0 if case % 3 == 0 else 8):
            damaged[rng.integers(8, 4096 if case % 3 == 1 else len(damaged))] = rng.integers(0, 256)
        path = tmp_path / f"damaged{case}.tflite"
        path.write_bytes(bytes(damaged))
        try:
            import_tflite(path)
        except UserError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err)
            refused += 1
    assert refused >= 4  # every truncation at least


def test_error_messages_are_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        import_tflite(_single_op_model(tmp_path / "op.tflite", op="RNN"))
    assert "\n" not in str(err.value)


def test_fetch_reports_offline_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(UserError, match=r"could not download mediapipe==0\.10\.21 from PyPI \(offline\?\)"):
        fetch_mediapipe_selfie(tmp_path)
    assert not list(tmp_path.rglob("*.tflite"))
