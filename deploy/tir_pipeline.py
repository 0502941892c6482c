"""Bare-metal TIR pipeline: TIR PrimFuncs -> plain C99 functions with raw pointer parameters.

The default pipeline ends in ``MakePackedAPI`` + ``LowerTVMBuiltin``, which turn every kernel into a
packed-ABI function that needs the TVM runtime. This pipeline keeps the default lowering, except:

* ``MakePackedAPI`` is replaced by :func:`RawPointerParams`: each buffer parameter becomes its data
  pointer (``int8_t* x``) and the buffer is re-declared on it;
* ``LowerTVMBuiltin`` is dropped (no ``TVMBackendAllocWorkspace``: kernel intermediates stay stack arrays);
* loops are not vectorized and asserts are disabled (``tirx.disable_assert``);
* saturating clamps become one saturate instruction (:mod:`deploy.saturating_clamp`) and the high word of a
  sum of two products ``SMULL`` + ``SMLAL`` (:mod:`deploy.high_word_sum`).

``kernels_to_c(mod, target)`` returns the C source of all kernels, stripped of TVM includes and ``<math.h>``.
"""
import re

import tvm
from tvm import s_tir, tirx
from tvm.tirx import compilation_pipeline

from deploy.high_word_sum import HighWordSum
from deploy.saturating_clamp import SaturatingClamp

PIPELINE_NAME = "isegmenter_bare_metal"


@tirx.transform.prim_func_pass(opt_level=0, name="RawPointerParams")
def RawPointerParams(func: tirx.PrimFunc, _mod, _ctx) -> tirx.PrimFunc:
    """Rewrite ``f(Buffer x, ...)`` into ``f(T* x, ...)`` with ``DeclBuffer(x, data=x_ptr)`` at the top."""
    params, decls = [], []
    for param in func.params:
        if not tirx.buffer.is_buffer_var(param):
            params.append(param)
            continue
        pointer = tirx.Var(param.name, tirx.buffer_data_pointer_type(param))
        params.append(pointer)
        decls.append(tirx.DeclBuffer(param, data=pointer))
    body = tirx.SeqStmt([*decls, func.body])
    return tirx.PrimFunc(params, body, func.ret_type, func.attrs)


def _bare_metal_pipeline():
    """The ``s_tir`` pipeline's passes, with the bare-metal changes listed in the module docstring."""
    _, _, finalize_device = compilation_pipeline.get_tir_pipeline("s_tir")

    @tvm.transform.module_pass(opt_level=0, name="BareMetalTIRPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        passes = [
            s_tir.transform.LowerCrossThreadReduction(),
            s_tir.transform.LowerInitBlock(),
            s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
            s_tir.transform.ConvertBlocksToOpaque(),
            s_tir.transform.CompactBufferAllocation(),
            s_tir.transform.LowerMatchBuffer(),
            s_tir.transform.LowerOpaqueBlock(),
            tirx.transform.FlattenBuffer(),
            tirx.transform.NarrowDataType(32),
            s_tir.transform.LoopPartition(),
            tirx.transform.VectorizeLoop(False),
            tirx.transform.StorageRewrite(),
            tirx.transform.UnrollLoop(),
            tirx.transform.StmtSimplify(),
            tirx.transform.RemoveNoOp(),
            SaturatingClamp,
            HighWordSum,
            tirx.transform.CommonSubexprElim(),
            tirx.transform.VerifyMemory(),
            RawPointerParams,
        ]
        return tvm.ir.transform.Sequential(passes)(mod)

    def _finalize_host():
        return tvm.ir.transform.Sequential([tirx.transform.LowerIntrin()])

    return _pipeline, _finalize_host, finalize_device


compilation_pipeline.register_tir_pipeline(PIPELINE_NAME, _bare_metal_pipeline)

_TVM_INCLUDE = re.compile(r'^#include\s+[<"](tvm/[^>"]*|math\.h|dlpack/[^>"]*)[>"]\s*$', re.MULTILINE)


def kernels_to_c(mod: tvm.IRModule, mcpu: str = "") -> str:
    """Build every PrimFunc of ``mod`` into one C99 source without TVM runtime dependencies."""
    target = tvm.target.Target({"kind": "c", "mcpu": mcpu} if mcpu else {"kind": "c"})
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
        built = tirx.build(mod, target=target, pipeline=PIPELINE_NAME)
    return _TVM_INCLUDE.sub("", built.inspect_source())
