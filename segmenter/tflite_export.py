"""Export the reference Segmenter to TFLite without TensorFlow: ``python -m segmenter.tflite_export``.

``torch.export`` gives the model as an ATen graph; each ATen op becomes one or a few float32
TFLite builtins written with ``frontend.tflite_writer``:

    conv2d            -> TRANSPOSE(NCHW->NHWC), CONV_2D (OHWI weight), TRANSPOSE back
    linear            -> FULLY_CONNECTED (keep_num_dims)
    layer_norm        -> MEAN, SUB, MUL (square), MEAN, ADD eps, RSQRT, MUL, MUL gamma, ADD beta
    gelu / softmax    -> GELU (exact) / SOFTMAX (last axis)
    matmul            -> BATCH_MATMUL
    add/sub/mul/div   -> ADD/SUB/MUL/DIV (scalars become constants)
    reshape, flatten  -> RESHAPE;  transpose, permute -> TRANSPOSE
    select, slice     -> STRIDED_SLICE (+ RESHAPE for select);  cat -> CONCATENATION
    expand            -> BROADCAST_TO (nothing when the shape is unchanged)
    upsample_nearest2d-> TRANSPOSE, RESIZE_NEAREST_NEIGHBOR (asymmetric, floor = torch "nearest"), TRANSPOSE

The TFLite model keeps the torch interface: input ``image`` float32 [1,3,H,W] in 0..255, output
logits float32 [1,classes,H,W]. Any other ATen op raises a UserError naming it.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from common.paths import MODEL_DIR
from frontend.tflite_writer import TFLiteWriter

TFLITE_PATH = MODEL_DIR / "segmenter.tflite"
_PADDING_VALID = 1  # Padding.VALID in the TFLite schema
# Options tables left out of an op keep their schema defaults (e.g. no fused activation).


class _Ref(int):
    """Index of a tensor already in the TFLite graph (as opposed to a Python scalar argument)."""


class _AtenToTFLite:
    """Translate one exported program into a TFLiteWriter graph."""

    def __init__(self, program: torch.export.ExportedProgram):
        self.program = program
        self.w = TFLiteWriter()
        self.values = {}  # node name -> _Ref of its tensor, or the numpy value of a weight
        self.constants = {}  # id(value) -> (_Ref, value) of each constant written
        self.handlers = {
            "aten.conv2d.default": self.conv2d,
            "aten.linear.default": self.linear,
            "aten.layer_norm.default": self.layer_norm,
            "aten.gelu.default": self.gelu,
            "aten.softmax.int": self.softmax,
            "aten.matmul.default": self.matmul,
            "aten.add.Tensor": lambda n, a, b, alpha=1: self.binary("ADD", n, a, b, alpha),
            "aten.sub.Tensor": lambda n, a, b, alpha=1: self.binary("SUB", n, a, b, alpha),
            "aten.mul.Tensor": lambda n, a, b: self.binary("MUL", n, a, b),
            "aten.div.Tensor": lambda n, a, b: self.binary("DIV", n, a, b),
            "aten.reshape.default": self.reshape,
            "aten.view.default": self.reshape,
            "aten.flatten.using_ints": self.reshape,
            "aten.transpose.int": self.transpose,
            "aten.permute.default": self.permute,
            "aten.select.int": self.select,
            "aten.slice.Tensor": self.slice,
            "aten.cat.default": self.cat,
            "aten.expand.default": self.expand,
            "aten.upsample_nearest2d.vec": self.upsample_nearest,
        }

    # --- graph walking -------------------------------------------------------------------------
    def convert(self, description) -> bytes:
        signature = self.program.graph_signature
        state = {**self.program.state_dict, **self.program.constants}
        weights = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
                   **signature.inputs_to_lifted_tensor_constants}
        inputs, outputs = [], []
        for node in self.program.graph.nodes:
            if node.op == "placeholder" and node.name in weights:
                self.values[node.name] = state[weights[node.name]].detach().numpy().astype(np.float32)
            elif node.op == "placeholder":
                inputs.append(_Ref(self.w.tensor(node.name, node.meta["val"].shape)))
                self.values[node.name] = inputs[-1]
            elif node.op == "call_function":
                handler = self.handlers.get(str(node.target))
                if handler is None:
                    raise UserError(f"cannot export ATen op {node.target} to TFLite; supported: "
                                    f"{', '.join(sorted(self.handlers))}")
                args = [self._arg(a) for a in node.args]
                self.values[node.name] = handler(node, *args, **node.kwargs)
            elif node.op == "output":
                outputs = [self.tensor(self.values[a.name]) for a in node.args[0]]
        return self.w.finish(inputs=inputs, outputs=outputs, description=description)

    def _arg(self, arg):
        if isinstance(arg, torch.fx.Node):
            return self.values[arg.name]
        if isinstance(arg, (list, tuple)):
            return [self._arg(a) for a in arg]
        return arg

    def tensor(self, value, name="const"):
        """Tensor index of ``value``: a tensor already written, or a constant (array or scalar)
        written now (once per array)."""
        if isinstance(value, _Ref):
            return value
        key = id(value)
        if key not in self.constants:
            self.constants[key] = (_Ref(self.w.constant(name, np.asarray(value, dtype=np.float32))), value)
        return self.constants[key][0]

    def emit(self, op, inputs, shape, name, options_name=None, **options):
        out = _Ref(self.w.tensor(name, shape))
        self.w.op(op, inputs, [out], options_name, **options)
        return out

    @staticmethod
    def _shape(node):
        return tuple(node.meta["val"].shape)

    def _int32(self, values, name):
        return _Ref(self.w.constant(name, np.asarray(values, dtype=np.int32)))

    # --- ops -----------------------------------------------------------------------------------
    def conv2d(self, node, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        if groups != 1 or any(padding) or any(d != 1 for d in dilation) or not isinstance(weight, np.ndarray):
            raise UserError(f"{node.name}: only constant-weight conv2d with groups=1, padding=0, dilation=1 exports")
        out_shape = self._shape(node)
        nhwc = self._transpose_to(x, (0, 2, 3, 1), f"{node.name}_nhwc")
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
        conv = self.emit("CONV_2D", [nhwc, self.w.constant(f"{node.name}_weight", weight.transpose(0, 2, 3, 1)),
                                     self.tensor(bias, f"{node.name}_bias")],
                         (out_shape[0], out_shape[2], out_shape[3], out_shape[1]), f"{node.name}_conv",
                         "Conv2DOptions", Padding=_PADDING_VALID, StrideH=stride[0], StrideW=stride[1],
                         DilationHFactor=1, DilationWFactor=1)
        return self._transpose_to(conv, (0, 3, 1, 2), node.name)

    def linear(self, node, x, weight, bias=None):
        inputs = [self.tensor(x), self.tensor(weight, f"{node.name}_weight")]
        inputs.append(self.tensor(bias, f"{node.name}_bias") if bias is not None else -1)  # -1: no bias
        return self.emit("FULLY_CONNECTED", inputs, self._shape(node), node.name, "FullyConnectedOptions",
                         KeepNumDims=True)

    def layer_norm(self, node, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
        if len(normalized_shape) != 1:
            raise UserError(f"{node.name}: only layer_norm over the last axis exports")
        shape = self._shape(node)
        reduced = shape[:-1] + (1,)
        axis = self._int32([len(shape) - 1], f"{node.name}_axis")

        def step(op, inputs, out_shape, suffix, options_name=None, **options):
            return self.emit(op, inputs, out_shape, f"{node.name}_{suffix}", options_name, **options)

        mean = step("MEAN", [x, axis], reduced, "mean", "ReducerOptions", KeepDims=True)
        centered = step("SUB", [x, mean], shape, "centered", "SubOptions")
        square = step("MUL", [centered, centered], shape, "square", "MulOptions")
        var = step("MEAN", [square, axis], reduced, "var", "ReducerOptions", KeepDims=True)
        var_eps = step("ADD", [var, self.tensor(np.float32(eps), f"{node.name}_eps")], reduced, "var_eps",
                       "AddOptions")
        inv_std = step("RSQRT", [var_eps], reduced, "rsqrt")
        out = step("MUL", [centered, inv_std], shape, "normed", "MulOptions")
        if weight is not None:
            out = step("MUL", [out, self.tensor(weight, f"{node.name}_gamma")], shape, "scaled", "MulOptions")
        if bias is not None:
            out = self.emit("ADD", [out, self.tensor(bias, f"{node.name}_beta")], shape, node.name, "AddOptions")
        return out

    def gelu(self, node, x, approximate="none"):
        return self.emit("GELU", [x], self._shape(node), node.name, "GeluOptions", Approximate=approximate == "tanh")

    def softmax(self, node, x, dim, half_to_float=False):
        if dim not in (-1, len(self._shape(node)) - 1):
            raise UserError(f"{node.name}: only softmax over the last axis exports (got dim={dim})")
        return self.emit("SOFTMAX", [x], self._shape(node), node.name, "SoftmaxOptions", Beta=1.0)

    def matmul(self, node, a, b):
        return self.emit("BATCH_MATMUL", [self.tensor(a), self.tensor(b)], self._shape(node), node.name,
                         "BatchMatMulOptions", AdjX=False, AdjY=False)

    def binary(self, op, node, a, b, alpha=1):
        if alpha != 1:
            raise UserError(f"{node.name}: {op.lower()} with alpha={alpha} does not export")
        scalar = (int, float)  # a Python number argument, not a _Ref
        operands = [self.tensor(np.float32(v) if isinstance(v, scalar) and not isinstance(v, _Ref) else v,
                                f"{node.name}_operand") for v in (a, b)]
        return self.emit(op, operands, self._shape(node), node.name, f"{op.capitalize()}Options")

    def reshape(self, node, x, *_):
        shape = self._shape(node)
        return self.emit("RESHAPE", [self.tensor(x), self._int32(shape, f"{node.name}_shape")], shape, node.name)

    def _transpose_to(self, x, perm, name):
        in_shape = self.w.shape_of(x)
        return self.emit("TRANSPOSE", [x, self._int32(perm, f"{name}_perm")],
                         tuple(in_shape[p] for p in perm), name)

    def transpose(self, node, x, dim0, dim1):
        perm = list(range(len(self.w.shape_of(x))))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
        return self._transpose_to(x, perm, node.name)

    def permute(self, node, x, dims):
        rank = len(self.w.shape_of(x))
        return self._transpose_to(x, [d % rank for d in dims], node.name)

    def _strided_slice(self, x, dim, start, end, step, name):
        shape = list(self.w.shape_of(x))
        dim %= len(shape)
        start, end = max(start, 0), min(end, shape[dim])
        begin, stop = [0] * len(shape), list(shape)
        begin[dim], stop[dim] = start, end
        strides = [1] * len(shape)
        strides[dim] = step
        shape[dim] = len(range(start, end, step))
        return self.emit("STRIDED_SLICE", [x, self._int32(begin, f"{name}_begin"), self._int32(stop, f"{name}_end"),
                                           self._int32(strides, f"{name}_strides")], tuple(shape), name,
                         "StridedSliceOptions")

    def select(self, node, x, dim, index):
        index %= self.w.shape_of(x)[dim]
        sliced = self._strided_slice(x, dim, index, index + 1, 1, f"{node.name}_slice")
        return self.reshape(node, sliced)

    def slice(self, node, x, dim=0, start=None, end=None, step=1):
        size = self.w.shape_of(x)[dim]
        start = 0 if start is None else start % size if start < 0 else start
        end = size if end is None else end % size if end < 0 else end
        return self._strided_slice(x, dim, start, end, step, node.name)

    def cat(self, node, tensors, dim=0):
        shape = self._shape(node)
        return self.emit("CONCATENATION", [self.tensor(t, f"{node.name}_part") for t in tensors], shape, node.name,
                         "ConcatenationOptions", Axis=dim % len(shape))

    def expand(self, node, x, sizes, implicit=False):
        shape = self._shape(node)
        x = self.tensor(x, f"{node.name}_value")
        if self.w.shape_of(x) == shape:
            return x
        return self.emit("BROADCAST_TO", [x, self._int32(shape, f"{node.name}_shape")], shape, node.name)

    def upsample_nearest(self, node, x, output_size, scale_factors=None):
        n, c, h, w_ = self._shape(node)
        nhwc = self._transpose_to(x, (0, 2, 3, 1), f"{node.name}_nhwc")
        resized = self.emit("RESIZE_NEAREST_NEIGHBOR", [nhwc, self._int32([h, w_], f"{node.name}_size")],
                            (n, h, w_, c), f"{node.name}_resized", "ResizeNearestNeighborOptions",
                            AlignCorners=False, HalfPixelCenters=False)
        return self._transpose_to(resized, (0, 3, 1, 2), node.name)


def litert_logits(path, image: np.ndarray) -> np.ndarray:
    """Run a .tflite file with the LiteRT interpreter (``ai-edge-litert``) on one input."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def export_tflite(model: torch.nn.Module, path=TFLITE_PATH) -> float:
    """Write ``model`` as a float32 TFLite flatbuffer at ``path`` once LiteRT reproduces the torch
    logits on the committed test images (max abs diff <= MAX_ABS_DIFF, same argmax); return that diff."""
    from segmenter.export import MAX_ABS_DIFF, committed_inputs

    model = model.eval()
    inputs = committed_inputs()
    with torch.no_grad():
        program = torch.export.export(model, (inputs[0],))
        expected = [model(x).numpy() for x in inputs]
    buf = _AtenToTFLite(program).convert(description=f"{type(model).__name__} exported by segmenter.tflite_export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(buf)
    try:
        got = [litert_logits(partial, x.numpy()) for x in inputs]
        diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
        if diff > MAX_ABS_DIFF or any((g.argmax(1) != e.argmax(1)).any() for g, e in zip(got, expected)):
            raise UserError(f"LiteRT runs the exported TFLite {diff:.2e} away from torch (limit {MAX_ABS_DIFF}) "
                            "or with other labels; not saving it")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return diff


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TFLITE_PATH, help="where to write the .tflite file")
    args = parser.parse_args(argv)
    from segmenter.model import load_reference

    torch.set_num_threads(1)
    try:
        diff = export_tflite(load_reference(), args.output)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes); LiteRT vs torch max |diff| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
