"""torch.export program (.pt2) -> Relax (``relax.frontend.torch.from_exported_program``)."""
from pathlib import Path

from tvm import relax, tirx

from common.errors import UserError

from .imported import ImportedModel
from .onnx_import import first_line


def import_exported_program(path: Path, input_shape: tuple[int, ...] | None = None) -> ImportedModel:
    """Import a program saved with ``torch.export.save`` that takes one image tensor."""
    try:
        import torch  # only this import path needs torch
    except ImportError:
        raise UserError(f"{path}: reading a .pt2 program needs torch; pip install torch==2.13.0") from None
    from tvm.relax.frontend.torch import from_exported_program

    try:
        program = torch.export.load(str(path))
    except Exception as err:  # zipfile, pickle and torch errors alike
        raise UserError(f"{path}: not a readable torch.export program ({first_line(err)}); re-export it") from None
    user_inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise UserError(f"{path}: the program must take exactly one input tensor, it takes {len(user_inputs)}")
    try:
        mod = from_exported_program(program, keep_params_as_input=True, unwrap_unit_return_tuple=True)
    except Exception as err:
        raise UserError(f"{path}: TVM's torch.export importer failed: {first_line(err)}") from None
    mod, params = relax.frontend.detach_params(mod)
    image = mod["main"].params[0]
    mod, shape = _static_input(mod, image, path, input_shape)
    return ImportedModel(
        mod=mod,
        params=[p.numpy() for p in params.get("main", [])],
        input_name=user_inputs[0].arg.name,
        input_shape=shape,
        input_dtype=str(image.ty.dtype),
        source_format="torch",
        source_path=str(path),
    )


def _static_input(mod, image, path, override):
    """Bind symbolic input dims to ``override``; refuse a dynamic input without one."""
    dims = list(image.ty.shape)
    symbolic = {i: d for i, d in enumerate(dims) if not isinstance(d, tirx.IntImm)}
    if override is None:
        if symbolic:
            where = ", ".join(f"dim {i} ('{d.name}')" for i, d in symbolic.items())
            raise UserError(
                f"{path}: input '{image.name}' has dynamic {where}; pass input_shape=(...) "
                "or export with static shapes (torch.export.export without dynamic_shapes)"
            )
        return mod, tuple(int(d) for d in dims)
    static = [(i, int(d)) for i, d in enumerate(dims) if i not in symbolic]
    if len(override) != len(dims) or any(override[i] != d for i, d in static):
        raise UserError(f"{path}: input_shape={tuple(override)} does not fit input '{image.name}' of shape {dims}")
    if symbolic:
        bound = mod.clone()
        bound["main"] = mod["main"].bind_symbolic_vars({d: int(override[i]) for i, d in symbolic.items()})
        mod = bound
    return mod, tuple(int(d) for d in override)
