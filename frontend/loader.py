"""``frontend.load``: recognise a model file, import it into Relax and canonicalise it."""
from pathlib import Path

from common.errors import UserError

from .canonicalize import canonicalize
from .imported import ImportedModel
from .onnx_import import import_onnx
from .torch_import import import_exported_program

_ZIP_MAGIC = b"PK\x03\x04"
_TFLITE_IDENTIFIER = b"TFL3"  # FlatBuffer file identifier, bytes 4..8


def detect_format(path: Path) -> str:
    """``"onnx"``, ``"torch"`` or ``"tflite"`` from the file's first bytes and its extension."""
    if not path.is_file():
        raise UserError(f"{path}: no such model file; give a .onnx, .pt2 or .tflite file")
    with path.open("rb") as file:
        head = file.read(8)
    if head[4:8] == _TFLITE_IDENTIFIER:
        return "tflite"
    if head[:4] == _ZIP_MAGIC:
        return "torch"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt2", ".tflite"):
        kind = "a zip archive" if suffix == ".pt2" else "a TFL3 FlatBuffer"
        raise UserError(f"{path}: file is not {kind} as a {suffix} file must be (truncated or corrupt?); re-export it")
    raise UserError(f"{path}: unknown model format '{suffix or 'no extension'}'; supported: .onnx, .pt2 (torch.export), .tflite")


def load(path, *, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import a model file into canonical Relax: ``main(input, *params)`` with ``params`` as numpy.

    ``input_shape`` fixes dynamic input dimensions (it must agree with the static ones).
    """
    path = Path(path)
    kind = detect_format(path)
    shape = None if input_shape is None else tuple(int(d) for d in input_shape)
    if kind == "onnx":
        imported = import_onnx(path, shape)
    elif kind == "torch":
        imported = import_exported_program(path, shape)
    else:
        imported = _import_tflite(path, shape)
    return canonicalize(imported)


def _import_tflite(path: Path, input_shape: tuple[int, ...] | None) -> ImportedModel:
    try:
        from .tflite_import import import_tflite
    except ImportError:
        raise UserError(f"{path}: TFLite import is not available in this build; use the .onnx or .pt2 export") from None
    return import_tflite(path, input_shape=input_shape)
