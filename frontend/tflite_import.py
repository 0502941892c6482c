"""Import a float TFLite model into Relax: ``import_tflite(path) -> ImportedModel``.

Built on TVM 0.27's ``relax.frontend.tflite.from_tflite`` with a converter subclass that adds
what real third-party float models need:

* float16 weights stored behind ``DEQUANTIZE`` (the TFLite "float16 quantization") become
  float32 constants at import time -- exact, and what the TFLite runtime itself does once at
  prepare time -- so every conv/dense weight arrives as a plain constant in Relax's layout;
* MediaPipe's custom op ``Convolution2DTransposeBias`` (transposed conv + bias) becomes
  ``nn.conv2d_transpose`` + ``add``;
* ``GELU`` becomes one ``nn.gelu`` / ``nn.gelu_tanh`` (honouring its ``approximate`` option);
* a float ``FULLY_CONNECTED`` that keeps its input's rank becomes ``matmul`` [+ ``add``] without
  the flatten/unflatten reshapes of TVM's converter.

The converter embeds weights as constants; they are lifted into parameters of ``main`` (input
first, then one parameter per weight), which is the ImportedModel contract. Anything the
frontend cannot take (corrupt file, quantized or multi-input model, dynamic shape without
``input_shape``, unsupported op) raises a one-line ``UserError``.
"""
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.tflite import tflite_frontend

from common.errors import UserError
from common.paths import CACHE_DIR
from frontend.imported import ImportedModel

#: A real third-party float segmentation model: MediaPipe's selfie segmenter (Apache-2.0).
MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
MEDIAPIPE_SELFIE = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"

#: Custom op codes this importer converts, and the name its converter registers them under.
CUSTOM_OPS = {"Convolution2DTransposeBias": "CONVOLUTION_2D_TRANSPOSE_BIAS"}

_TFLITE_PADDING_SAME, _TFLITE_PADDING_VALID = 1, 2  # TfLitePadding in the C API


def _tflite_schema():
    """The ``tflite`` flatbuffer bindings, or a UserError saying how to install them."""
    try:
        import tflite
    except ImportError as err:
        raise UserError("the 'tflite' package is missing; run `pip install tflite==2.18.0`") from err
    return tflite


def _op_name(model, op) -> str:
    """Builtin operator name (e.g. ``CONV_2D``) or ``CUSTOM:<code>`` for a custom op."""
    from tflite.BuiltinOperator import BuiltinOperator

    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
    if builtin == BuiltinOperator.CUSTOM:
        return "CUSTOM:" + (code.CustomCode() or b"").decode("utf-8", "replace")
    names = tflite_frontend.build_str_map(BuiltinOperator())
    return names.get(builtin, f"BUILTIN_{builtin}")


class _Converter(tflite_frontend.OperatorConverter):
    """TVM's TFLite operator converter plus float16 weights and MediaPipe's transposed conv."""

    def __init__(self, model, subgraph, exp_tab, ctx, conversion_state=None):
        super().__init__(model, subgraph, exp_tab, ctx, conversion_state)
        for name in CUSTOM_OPS.values():
            self.convert_map[name] = self.convert_conv2d_transpose_bias
        self.float16_weights = self._float16_weights()

    def _float16_weights(self) -> dict[int, np.ndarray]:
        """Output tensor index -> float32 value, for each DEQUANTIZE of a stored float16 tensor."""
        from tflite.TensorType import TensorType

        weights = {}
        for i in range(self.subgraph.OperatorsLength()):
            op = self.subgraph.Operators(i)
            if _op_name(self.model, op) != "DEQUANTIZE":
                continue
            (source,) = self.get_input_tensors(op)
            if source.tensor.Type() == TensorType.FLOAT16 and source.buffer.DataLength() > 0:
                value = super().get_tensor_value(source).astype(np.float32)
                weights[int(op.Outputs(0))] = value
        return weights

    def get_op_code_str(self, op):
        name = _op_name(self.model, op)
        if name.startswith("CUSTOM:"):
            return CUSTOM_OPS.get(name[len("CUSTOM:"):], name)
        return super().get_op_code_str(op)

    def get_tensor_value(self, tensor_wrapper, is_sparse=False):
        if tensor_wrapper.tensor_idx in self.float16_weights:
            return self.float16_weights[tensor_wrapper.tensor_idx]
        return super().get_tensor_value(tensor_wrapper, is_sparse)

    def convert_dequantize(self, op):
        if int(op.Outputs(0)) in self.float16_weights:
            return None  # read as a float32 constant by the ops that use it
        return super().convert_dequantize(op)

    def convert_gelu(self, op):
        """GELU as one ``nn.gelu`` (or ``nn.gelu_tanh`` when ``approximate`` is set; TVM's own
        converter expands it into erf arithmetic and ignores that flag)."""
        from tflite.GeluOptions import GeluOptions

        if self.is_quantized(op):
            return super().convert_gelu(op)  # raises TVM's "quantized GELU" error
        (data,) = self.get_input_tensors(op)
        approximate = False
        if op.BuiltinOptions() is not None:
            options = GeluOptions()
            options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            approximate = bool(options.Approximate())
        gelu = relax.op.nn.gelu_tanh if approximate else relax.op.nn.gelu
        return gelu(self.get_tensor_expr(data))

    def convert_fully_connected(self, op):
        """A float ``FULLY_CONNECTED`` with ``keep_num_dims`` and constant weights as
        ``matmul(x, W^T) [+ bias]`` on the input's own rank (TVM's converter flattens the input
        to 2-D and reshapes back); everything else goes to TVM's converter."""
        from tflite.FullyConnectedOptions import FullyConnectedOptions
        from tflite.TensorType import TensorType

        data, weight, *bias = self.get_input_tensors(op)
        options = FullyConnectedOptions()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        is_float_constant = weight.tensor.Type() == TensorType.FLOAT32 and not self.has_expr(weight.tensor_idx)
        if self.is_quantized(op) or not options.KeepNumDims() or not is_float_constant:
            return super().convert_fully_connected(op)
        out = relax.op.matmul(self.get_tensor_expr(data), self.exp_tab.new_const(
            np.ascontiguousarray(self.get_tensor_value(weight).T), dtype="float32",
            source_name=weight.tensor.Name()))
        if bias and bias[0].tensor_idx != -1:
            out = relax.op.add(out, self.get_tensor_expr(bias[0]))
        return self.convert_fused_activation_function(out, options.FusedActivationFunction())

    def convert_conv2d_transpose_bias(self, op):
        """MediaPipe ``Convolution2DTransposeBias``: inputs (data NHWC, weight OHWI, bias O);
        custom options are a packed ``TfLiteTransposeConvParams`` (padding, stride_w, stride_h)."""
        data, weight, bias = self.get_input_tensors(op)
        (output,) = self.get_output_tensors(op)
        padding, stride_w, stride_h = np.frombuffer(op.CustomOptionsAsNumpy().tobytes()[:12], "<i4")
        if padding not in (_TFLITE_PADDING_SAME, _TFLITE_PADDING_VALID):
            raise UserError(f"Convolution2DTransposeBias with padding code {padding}: only SAME/VALID are supported")
        in_h, in_w = tflite_frontend.to_int_list(data.tensor.ShapeAsNumpy())[1:3]
        out_h, out_w = tflite_frontend.to_int_list(output.tensor.ShapeAsNumpy())[1:3]
        _, k_h, k_w, _ = self.get_tensor_value(weight).shape
        pads = []
        for size_in, size_out, k, s in ((in_h, out_h, k_h, stride_h), (in_w, out_w, k_w, stride_w)):
            total = (size_in - 1) * s + k - size_out  # rows/cols the full transposed conv has too many
            if total < 0:
                raise UserError(f"Convolution2DTransposeBias with kernel {k} < stride {s} is not supported")
            pads.append((total // 2, total - total // 2))  # TFLite drops the odd one at the end
        weight_iohw = self.exp_tab.new_const(
            np.ascontiguousarray(self.get_tensor_value(weight).transpose(3, 0, 1, 2)),
            dtype="float32", source_name=weight.tensor.Name())
        # TVM 0.27 legalizes conv2d_transpose for NCHW data only: transpose around it.
        data_nchw = relax.op.permute_dims(self.get_tensor_expr(data), (0, 3, 1, 2))
        out = relax.op.nn.conv2d_transpose(
            data_nchw, weight_iohw,
            strides=(int(stride_h), int(stride_w)),
            padding=(pads[0][0], pads[1][0], pads[0][1], pads[1][1]),
            data_layout="NCHW", kernel_layout="IOHW", out_dtype="float32")
        out = relax.op.permute_dims(out, (0, 2, 3, 1))
        return relax.op.add(out, self.get_tensor_expr(bias))


def _read_model(path: Path):
    """The parsed flatbuffer of ``path``, or a UserError for a missing / non-TFLite file."""
    tflite = _tflite_schema()
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass the path of a .tflite model")
    buf = path.read_bytes()
    if len(buf) < 8 or not tflite.Model.ModelBufferHasIdentifier(buf, 0):
        raise UserError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite model file")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        subgraph = model.Subgraphs(0)
        for i in range(subgraph.OperatorsLength()):
            _op_name(model, subgraph.Operators(i))
        bad = next((t for t in map(subgraph.Tensors, range(subgraph.TensorsLength())) if not _buffer_fits(model, t)),
                   None)
    except Exception as err:  # flatbuffers raises struct.error/IndexError/TypeError on damaged data
        raise UserError(f"{path}: corrupt or truncated TFLite file ({type(err).__name__}); re-export it") from err
    if bad is not None:
        raise UserError(f"{path}: corrupt TFLite file (data of tensor '{bad.Name().decode(errors='replace')}' "
                        "does not match its shape); re-export it")
    return model


def _buffer_fits(model, tensor) -> bool:
    """Whether the tensor's constant data (if it has any) is as large as its shape and type say."""
    data_bytes = model.Buffers(tensor.Buffer()).DataLength()
    if data_bytes == 0:
        return True
    itemsize = np.dtype(tflite_frontend._decode_type(tensor.Type())).itemsize
    return data_bytes == itemsize * int(np.prod(tensor.ShapeAsNumpy() if tensor.ShapeLength() else []))


def _input_spec(path: Path, model, input_shape):
    """(name, static shape) of the single float32 input; UserError for anything else."""
    from tflite.TensorType import TensorType

    subgraph = model.Subgraphs(0)
    if subgraph.InputsLength() != 1:
        raise UserError(f"{path}: model has {subgraph.InputsLength()} inputs; only single-input models are supported")
    tensor = subgraph.Tensors(subgraph.Inputs(0))
    name = tflite_frontend.get_tensor_name(subgraph, subgraph.Inputs(0))
    if tensor.Type() != TensorType.FLOAT32:
        dtype = tflite_frontend._decode_type(tensor.Type())
        raise UserError(f"{path}: input '{name}' is {dtype}; only float32 models are supported "
                        "(the integer-only rewrite quantizes them itself)")
    stated = [int(d) for d in (tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else
                               tensor.ShapeAsNumpy())]
    if input_shape is None:
        if any(d < 0 for d in stated):
            raise UserError(f"{path}: input '{name}' has dynamic shape {stated}; "
                            "pass input_shape=(...) with every dimension fixed")
        return name, tuple(stated)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != len(stated) or any(s >= 0 and s != d for s, d in zip(stated, shape)) or min(shape) <= 0:
        raise UserError(f"{path}: input_shape {shape} does not fit input '{name}' of shape {stated}; "
                        "only its dynamic (-1) dimensions may be set")
    return name, shape


def _check_ops(model) -> None:
    """UserError naming every operator the converter has no handler for."""
    probe = _Converter(model, model.Subgraphs(0), tflite_frontend.ExprTable(), relax.BlockBuilder())
    subgraph = model.Subgraphs(0)
    names = {probe.get_op_code_str(subgraph.Operators(i)) for i in range(subgraph.OperatorsLength())}
    missing = sorted(n for n in names if n not in probe.convert_map)
    if missing:
        raise UserError(f"unsupported TFLite op(s) {', '.join(missing)}; supported are the float builtins "
                        f"of TVM 0.27's TFLite frontend and custom {', '.join(CUSTOM_OPS)}")


def _lift_weights(func: relax.Function, weights: list) -> tuple[relax.Function, list[np.ndarray]]:
    """``func`` with each of the ``weights`` constants it uses replaced by a new parameter
    (after the inputs, in order of first use)."""
    lifted: dict[int, relax.Var] = {}
    values = []

    @relax.expr_functor.mutator
    class _Lift(relax.expr_functor.PyExprMutator):
        def visit_generic_const_(self, const):
            index = next((i for i, w in enumerate(weights) if const.same_as(w)), None)
            if index is None:
                return const
            if index not in lifted:
                lifted[index] = relax.Var(f"w{len(lifted)}", relax.TensorType(const.value.shape, const.value.dtype))
                values.append(const.value.numpy())
            return lifted[index]

    body = _Lift().visit_expr(func.body)
    params = list(func.params) + list(lifted.values())
    return relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs), values


def import_tflite(path, *, input_shape=None) -> ImportedModel:
    """Import the float TFLite model at ``path`` into Relax with its weights as parameters.

    ``input_shape`` fixes the dynamic (-1) dimensions of the input; the result's ``input_shape``
    is the shape the model states (NHWC for most image models).
    """
    path = Path(path)
    model = _read_model(path)
    input_name, shape = _input_spec(path, model, input_shape)
    converters = []

    def make_converter(*args):
        converters.append(_Converter(*args))
        return converters[-1]

    try:
        _check_ops(model)
        mod = tflite_frontend.from_tflite(model, shape_dict={input_name: shape}, dtype_dict={input_name: "float32"},
                                          op_converter=make_converter)
    except UserError as err:
        raise UserError(f"{path}: {err}") from err
    except Exception as err:  # TVM reports converter limits as assorted exception types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: TVM's TFLite frontend cannot convert this model: {reason}") from err
    weights = [expr for expr, _ in converters[0].exp_tab.params.values()]
    main, params = _lift_weights(mod["main"].without_attr("params"), weights)
    mod["main"] = main
    return ImportedModel(mod=mod, params=params, input_name=input_name, input_shape=shape,
                         input_dtype="float32", source_format="tflite", source_path=str(path),
                         notes={"float16_weights": len(converters[0].float16_weights)})


def fetch_mediapipe_selfie(cache_dir=None) -> Path:
    """Path of MediaPipe's ``selfie_segmentation.tflite`` (1x256x256x3 RGB in [0, 1] -> 1x256x256x1
    person probability), downloaded once from the ``mediapipe`` wheel on PyPI into the cache."""
    cache = Path(cache_dir or CACHE_DIR) / "mediapipe"
    target = cache / Path(MEDIAPIPE_SELFIE).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", MEDIAPIPE_WHEEL, "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", str(cache)], capture_output=True, text=True)
    wheels = sorted(cache.glob("mediapipe-*.whl"))
    if download.returncode != 0 or not wheels:
        raise UserError(f"could not download {MEDIAPIPE_WHEEL} from PyPI (offline?); "
                        f"put {Path(MEDIAPIPE_SELFIE).name} from that wheel at {target}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        partial = target.with_suffix(".part")
        partial.write_bytes(wheel.read(MEDIAPIPE_SELFIE))
    partial.replace(target)
    for wheel_path in wheels:
        wheel_path.unlink()  # 35 MB; only the 250 KB model is kept
    return target
