"""ONNX file -> Relax (``relax.frontend.onnx.from_onnx``), with the input spec checked first."""
import contextlib
import io
import re
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from common.errors import UserError

from .imported import ImportedModel
from .vocabulary import SUPPORTED_ONNX_OPS


def read_onnx(path: Path) -> onnx.ModelProto:
    """Parse ``path`` as an ONNX model, or raise a UserError saying it is not one."""
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError) as err:
        raise UserError(f"{path}: not a readable ONNX model ({first_line(err)}); re-export it") from None
    if not model.graph.node:
        raise UserError(f"{path}: ONNX model has no graph nodes (truncated or empty file?); re-export it")
    return model


def import_onnx(path: Path, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import an ONNX model with one float image input; weights come back as ``params``."""
    model = read_onnx(path)
    unsupported = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")} - SUPPORTED_ONNX_OPS)
    foreign = sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if unsupported or foreign:
        raise UserError(
            f"{path}: unsupported ONNX op(s) {', '.join(unsupported + foreign)}; "
            f"supported: {', '.join(sorted(SUPPORTED_ONNX_OPS))}"
        )
    _check_attributes(model, path)
    name, shape, dtype = _input_spec(model, path, input_shape)
    importer_log = io.StringIO()
    try:
        with contextlib.redirect_stdout(importer_log):  # TVM prints the failing node with all its inputs
            mod = from_onnx(model, shape_dict={name: list(shape)}, keep_params_in_input=True)
    except Exception as err:  # TVM raises many types; the user needs one line
        failing = re.search(r"Error converting operator (\w+)", importer_log.getvalue())
        where = f" on a {failing.group(1)} node" if failing else ""
        raise UserError(f"{path}: TVM's ONNX importer failed{where}: {first_line(err)}") from None
    mod, params = relax.frontend.detach_params(mod)
    return ImportedModel(
        mod=mod,
        params=[p.numpy() for p in params.get("main", [])],
        input_name=name,
        input_shape=shape,
        input_dtype=dtype,
        source_format="onnx",
        source_path=str(path),
        notes={"opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)},
    )


def _check_attributes(model: onnx.ModelProto, path: Path) -> None:
    """Refuse claimed ops used in ways the frontend does not support."""
    for node in model.graph.node:
        where = f"{path}: ONNX node '{node.name or node.op_type}'"
        if node.op_type == "Resize":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
            if mode != "nearest":
                raise UserError(f"{where} uses Resize mode '{mode}'; only mode 'nearest' is supported (export with nearest upsampling)")
        if node.op_type == "LayerNormalization" and any(node.output[1:]):
            raise UserError(f"{where} uses LayerNormalization's Mean/InvStdDev outputs; only output Y is supported")


def _input_spec(model: onnx.ModelProto, path: Path, override: tuple[int, ...] | None):
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UserError(f"{path}: the model must take exactly one input tensor, it takes {len(inputs)} ({names})")
    (graph_input,) = inputs
    tensor_type = graph_input.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in tensor_type.shape.dim]
    if override is not None:
        if len(override) != len(dims) or any(isinstance(d, int) and d != o for d, o in zip(dims, override)):
            raise UserError(f"{path}: input_shape={tuple(override)} does not fit input '{graph_input.name}' of shape {dims}")
        return graph_input.name, tuple(int(d) for d in override), dtype
    dynamic = [(i, d) for i, d in enumerate(dims) if not isinstance(d, int)]
    if dynamic:
        where = ", ".join(f"dim {i} ('{d}')" for i, d in dynamic)
        raise UserError(
            f"{path}: input '{graph_input.name}' has dynamic {where}; pass input_shape=(...) "
            "or export the model with static shapes"
        )
    return graph_input.name, tuple(dims), dtype


def first_line(err: BaseException) -> str:
    """The most telling single line of an exception (TVM puts its message last)."""
    text = str(err).strip() or type(err).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else text

