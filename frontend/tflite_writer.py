"""Write TFLite flatbuffers with the ``tflite`` schema's own builder functions.

A minimal graph writer: add tensors (constants carry their data), add operators by builtin name
(or custom code) with their options table given as field values, then ``finish`` to get the
``.tflite`` bytes. Used by ``segmenter.tflite_export`` and by the importer's tests.

    w = TFLiteWriter()
    x = w.tensor("x", (1, 4))
    y = w.tensor("y", (1, 4))
    w.op("ADD", [x, w.constant("one", np.ones(4, np.float32))], [y],
         "AddOptions", FusedActivationFunction=0)
    buf = w.finish(inputs=[x], outputs=[y])
"""
import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

_TENSOR_TYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "int64": "INT64",
                 "int8": "INT8", "uint8": "UINT8", "int16": "INT16", "bool": "BOOL"}
_BUFFER_ALIGNMENT = 16  # TFLite kernels may read constant data with vector loads


def _schema(name):
    """The generated module ``tflite.<name>`` (``tflite.<name>`` itself is the class)."""
    return importlib.import_module(f"tflite.{name}")


def _enum(name, member):
    return getattr(getattr(_schema(name), name), member)


@dataclass
class _Tensor:
    name: str
    shape: tuple
    dtype: str
    buffer: int
    shape_signature: tuple | None


@dataclass
class _Operator:
    opcode: int
    inputs: list
    outputs: list
    options_name: str | None
    options: dict
    custom_options: bytes | None


@dataclass
class TFLiteWriter:
    """One-subgraph TFLite model under construction."""

    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=lambda: [b""])  # buffer 0: the empty sentinel
    operators: list = field(default_factory=list)
    opcodes: list = field(default_factory=list)  # (builtin name, custom code)

    def tensor(self, name, shape, dtype="float32", shape_signature=None) -> int:
        """An activation tensor; ``shape_signature`` marks dynamic dimensions with -1."""
        self.tensors.append(_Tensor(name, tuple(int(d) for d in shape), dtype, 0,
                                    None if shape_signature is None else tuple(shape_signature)))
        return len(self.tensors) - 1

    def constant(self, name, value) -> int:
        """A constant tensor holding ``value`` (its dtype must be one TFLite stores)."""
        value = np.ascontiguousarray(value)
        self.buffers.append(value.tobytes())
        self.tensors.append(_Tensor(name, value.shape, str(value.dtype), len(self.buffers) - 1, None))
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, options_name=None, custom_options=None, **options) -> None:
        """Append operator ``name`` (builtin, e.g. ``CONV_2D``, or ``CUSTOM:<code>``)."""
        key = ("CUSTOM", name[len("CUSTOM:"):]) if name.startswith("CUSTOM:") else (name, None)
        if key not in self.opcodes:
            self.opcodes.append(key)
        self.operators.append(_Operator(self.opcodes.index(key), list(inputs), list(outputs),
                                        options_name, options, custom_options))

    def shape_of(self, index) -> tuple:
        return self.tensors[index].shape

    def finish(self, inputs, outputs, description="") -> bytes:
        """The serialized model with ``inputs``/``outputs`` as the subgraph's signature."""
        b = flatbuffers.Builder(1024)
        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        operators = [self._operator(b, op) for op in self.operators]
        opcodes = [self._opcode(b, name, custom) for name, custom in self.opcodes]

        sub = _schema("SubGraph")
        vectors = {k: self._vector(b, sub, "SubGraph", k, v, kind) for k, v, kind in (
            ("Tensors", tensors, "offset"), ("Inputs", inputs, "int32"),
            ("Outputs", outputs, "int32"), ("Operators", operators, "offset"))}
        name = b.CreateString("main")
        sub.SubGraphStart(b)
        for key, vec in vectors.items():
            getattr(sub, f"SubGraphAdd{key}")(b, vec)
        sub.SubGraphAddName(b, name)
        subgraph = sub.SubGraphEnd(b)

        model = _schema("Model")
        opcodes_vec = self._vector(b, model, "Model", "OperatorCodes", opcodes, "offset")
        subgraphs_vec = self._vector(b, model, "Model", "Subgraphs", [subgraph], "offset")
        buffers_vec = self._vector(b, model, "Model", "Buffers", buffers, "offset")
        desc = b.CreateString(description)
        model.ModelStart(b)
        model.ModelAddVersion(b, 3)
        model.ModelAddOperatorCodes(b, opcodes_vec)
        model.ModelAddSubgraphs(b, subgraphs_vec)
        model.ModelAddDescription(b, desc)
        model.ModelAddBuffers(b, buffers_vec)
        b.Finish(model.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _vector(b, module, table, field_name, items, kind):
        getattr(module, f"{table}Start{field_name}Vector")(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item) if kind == "offset" else b.PrependInt32(int(item))
        return b.EndVector()

    @staticmethod
    def _buffer(b, data):
        mod = _schema("Buffer")
        vec = None
        if data:
            b.StartVector(1, len(data), _BUFFER_ALIGNMENT)
            b.head -= len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector(len(data))
        mod.BufferStart(b)
        if vec is not None:
            mod.BufferAddData(b, vec)
        return mod.BufferEnd(b)

    def _tensor(self, b, t):
        mod = _schema("Tensor")
        name = b.CreateString(t.name)
        shape = self._vector(b, mod, "Tensor", "Shape", t.shape, "int32")
        signature = (self._vector(b, mod, "Tensor", "ShapeSignature", t.shape_signature, "int32")
                     if t.shape_signature is not None else None)
        mod.TensorStart(b)
        mod.TensorAddShape(b, shape)
        if signature is not None:
            mod.TensorAddShapeSignature(b, signature)
        mod.TensorAddType(b, _enum("TensorType", _TENSOR_TYPES[t.dtype]))
        mod.TensorAddBuffer(b, t.buffer)
        mod.TensorAddName(b, name)
        return mod.TensorEnd(b)

    def _operator(self, b, op):
        mod = _schema("Operator")
        options = self._options(b, op.options_name, op.options) if op.options_name else None
        custom = b.CreateByteVector(op.custom_options) if op.custom_options is not None else None
        inputs = self._vector(b, mod, "Operator", "Inputs", op.inputs, "int32")
        outputs = self._vector(b, mod, "Operator", "Outputs", op.outputs, "int32")
        mod.OperatorStart(b)
        mod.OperatorAddOpcodeIndex(b, op.opcode)
        mod.OperatorAddInputs(b, inputs)
        mod.OperatorAddOutputs(b, outputs)
        if options is not None:
            mod.OperatorAddBuiltinOptionsType(b, _enum("BuiltinOptions", op.options_name))
            mod.OperatorAddBuiltinOptions(b, options)
        if custom is not None:
            mod.OperatorAddCustomOptions(b, custom)
        return mod.OperatorEnd(b)

    @staticmethod
    def _options(b, name, fields):
        """Options table ``name`` (e.g. ``Conv2DOptions``) with scalar ``fields`` set."""
        mod = _schema(name)
        getattr(mod, f"{name}Start")(b)
        for key, value in fields.items():
            getattr(mod, f"{name}Add{key}")(b, value)
        return getattr(mod, f"{name}End")(b)

    @staticmethod
    def _opcode(b, name, custom):
        mod = _schema("OperatorCode")
        code = _enum("BuiltinOperator", name)
        custom_str = b.CreateString(custom) if custom is not None else None
        mod.OperatorCodeStart(b)
        mod.OperatorCodeAddBuiltinCode(b, code)
        mod.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))  # PLACEHOLDER_FOR_GREATER_OP_CODES
        if custom_str is not None:
            mod.OperatorCodeAddCustomCode(b, custom_str)
        mod.OperatorCodeAddVersion(b, 1)
        return mod.OperatorCodeEnd(b)
