"""Integer Relax module -> a static program: TIR kernels plus a flat list of kernel calls.

``lower_to_static_program(mod)`` runs the Relax lowering up to ``CallTIRRewrite`` (every op becomes a
``call_tir``-style call of a fused PrimFunc with explicit output tensors), then walks ``main``'s
bindings into a :class:`StaticProgram`: tensors (input, output, constants, intermediates), kernel calls
in order, and aliases (``reshape`` / variable copies share storage).

No ``FoldConstant``: it would evaluate ``astype(int8 constant, "int64")`` (and a requantized constant
operand) at compile time and store the wide result; instead such constant-input ops are fused into the
kernels that read them, so every constant is deployed at its narrow storage type. Memory planning of the
intermediates is :mod:`deploy.memory_plan`'s job; scheduling of the kernels is :mod:`deploy.schedule`'s.
"""
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax, tirx

from common.errors import UserError
from deploy.table_gather import MarkTableGathersElementWise

LOWERING_PASSES = (
    relax.transform.LegalizeOps,
    relax.transform.AnnotateTIROpPattern,
    MarkTableGathersElementWise,
    relax.transform.FuseOps,
    relax.transform.FuseTIR,
    relax.transform.DeadCodeElimination,
    relax.transform.RewriteDataflowReshape,
    relax.transform.ToNonDataflow,
    relax.transform.RemovePurityChecking,
    relax.transform.CallTIRRewrite,
)


@dataclass
class Tensor:
    """One tensor of the static program. ``kind``: input | output | const | intermediate."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str
    value: np.ndarray | None = None  # constants only

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class KernelCall:
    """``kernel(args...)``: each arg indexes ``StaticProgram.tensors``; the last ones are outputs."""

    kernel: str
    args: list[int]


@dataclass
class StaticProgram:
    """What the C emitter needs: kernels (TIR), tensors and the calls in execution order."""

    kernels: tvm.IRModule
    tensors: list[Tensor] = field(default_factory=list)
    calls: list[KernelCall] = field(default_factory=list)
    input_index: int = -1
    output_index: int = -1

    def tensors_of_kind(self, kind: str) -> list[int]:
        return [i for i, t in enumerate(self.tensors) if t.kind == kind]


def _static_shape(ty, what: str) -> tuple[tuple[int, ...], str]:
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise UserError(f"{what} is not a tensor of static shape; deploy needs static shapes")
    shape = []
    for dim in ty.shape.values:
        if not isinstance(dim, tvm.tirx.IntImm):
            raise UserError(f"{what} has a symbolic dimension {dim}; deploy needs static shapes")
        shape.append(int(dim.value))
    return tuple(shape), str(ty.dtype)


def lower_relax(mod: tvm.IRModule) -> tvm.IRModule:
    """Relax ops -> fused PrimFuncs called with explicit output buffers (no memory planning)."""
    return tvm.ir.transform.Sequential([make() for make in LOWERING_PASSES])(mod)


def lower_to_static_program(mod: tvm.IRModule, allow_float: bool = False) -> StaticProgram:
    """Lower ``mod`` (``main(image) -> class_map``, weights as constants) into a StaticProgram.

    Float tensors are refused unless ``allow_float`` (the fp32 comparison build)."""
    main = mod["main"]
    if len(main.params) != 1:
        raise UserError(
            f"main takes {len(main.params)} arguments; bind the weights as constants (one image input expected)"
        )
    lowered = lower_relax(mod)
    kernels = tvm.IRModule(
        {gv: func.with_attr("global_symbol", gv.name_hint)
         for gv, func in lowered.functions.items() if isinstance(func, tirx.PrimFunc)}
    )
    program = StaticProgram(kernels=kernels)
    tensor_of: dict[relax.Var, int] = {}

    def add(tensor: Tensor) -> int:
        if not tensor.dtype.startswith(("int", "uint", "bool")) and not (allow_float and tensor.dtype == "float32"):
            raise UserError(f"tensor '{tensor.name}' is {tensor.dtype}: the deployed module must be integer-only; "
                            "run the relax_passes integerization first")
        program.tensors.append(tensor)
        return len(program.tensors) - 1

    def constant_index(const) -> int:
        value = const.value.numpy()
        return add(Tensor(f"weight{len(program.tensors_of_kind('const'))}", value.shape, str(value.dtype), "const", value))

    def operand(expr, what: str) -> int:
        if isinstance(expr, relax.Var) and expr in tensor_of:
            return tensor_of[expr]
        if isinstance(expr, tvm.ir.Constant):
            return constant_index(expr)
        raise UserError(f"not available yet: deploying {what} ({type(expr).__name__}) in main")

    param = lowered["main"].params[0]
    shape, dtype = _static_shape(param.ty, "the model input")
    program.input_index = tensor_of[param] = add(Tensor("image", shape, dtype, "input"))
    body = lowered["main"].body
    for block in body.blocks:
        for binding in block.bindings:
            value, var = binding.value, binding.var
            if isinstance(value, relax.Var):
                tensor_of[var] = tensor_of[value]
            elif isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.builtin.alloc_tensor"):
                shape, dtype = _static_shape(var.ty, var.name)
                tensor_of[var] = add(Tensor(var.name, shape, dtype, "intermediate"))
            elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
                args = [operand(arg, f"an argument of {value.op.name_hint}") for arg in value.args]
                program.calls.append(KernelCall(value.op.name_hint, args))
            elif isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.reshape"):
                tensor_of[var] = operand(value.args[0], "a reshape input")
            else:
                raise UserError(f"not available yet: deploying the binding '{var.name} = {value}' of main")
    result = body.body
    if not (isinstance(result, relax.Var) and result in tensor_of):
        raise UserError("main must return one tensor computed by the model (a class map)")
    program.output_index = tensor_of[result]
    output = program.tensors[program.output_index]
    if output.kind != "intermediate":
        raise UserError("main returns its input or a constant; nothing to deploy")
    output.kind, output.name = "output", "class_map"
    output.shape, output.dtype = _static_shape(result.ty, "the model output")
    return program
