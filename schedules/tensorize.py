"""Tensorize int8 matmul kernels with the target's integer SIMD through a shipped C micro-kernel.

The tensor intrinsic ``iseg_dot_s8_<n>``: its description is the int8 inner product of length ``n``
(``C[0] += int32(A[k]) * int32(B[k])``), its implementation one ``T.call_extern`` of ``iseg_dot_s8`` from
``schedules/microkernels/iseg_dot_s8.c`` (MVE ``vmladavaq_s8``, DSP ``__smlad``/``__sxtb16`` or plain C,
picked by the compiler's feature macros). That file is emitted next to the generated kernels.

:func:`tensorize_matmul` schedules a fused ``[M, K] x [K, N]`` int8 matmul kernel for it: the default
schedule (epilogue fused, reduction init hoisted), the ``B`` operand packed once per call into ``[N, K]``
(so each dot product reads two contiguous rows), and the reduction loop replaced by the intrinsic.
"""
import dataclasses
from pathlib import Path

import tvm
from tvm import s_tir, tirx
from tvm.script import tirx as T

from deploy.schedule import apply_default_schedules
from targets import Board

MICROKERNEL = Path(__file__).resolve().parent / "microkernels" / "iseg_dot_s8.c"
EXTERN_NAME = "iseg_dot_s8"
MVE_LANES = 16  # the MVE build needs lengths that are multiples of 16 (DSP: of 4)
MVE_CFLAGS = ("-mcpu=cortex-m55+nofp", "-mfloat-abi=softfp", "-mthumb")  # MVE-I on, FP off
# CPACR (0xE000ED88): grant CP10/CP11, which gates MVE, then synchronise. Run before the first MVE instruction.
ENABLE_MVE = '    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;\n    __asm volatile("dsb\\n\\tisb" ::: "memory");'


def mve_board(board: Board) -> Board:
    """``board`` (a Cortex-M55) compiled with integer MVE; firmware must run ``ENABLE_MVE`` first."""
    if not board.name.startswith("cortex-m55"):
        raise ValueError(f"MVE needs a Cortex-M55, not {board.name}")
    return dataclasses.replace(board, name=f"{board.name}-mve", cflags=MVE_CFLAGS, mve=True)


def microkernel_sources() -> dict[str, str]:
    """File name -> source of the micro-kernels a tensorized kernel calls (emit them with the kernels)."""
    return {MICROKERNEL.name: MICROKERNEL.read_text()}


def dot_intrinsic(length: int) -> str:
    """Register (once) and return the name of the length-``length`` int8 dot-product intrinsic."""
    name = f"iseg_dot_s8_{length}"
    if s_tir.TensorIntrin.get(name, allow_missing=True) is not None:
        return name

    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (length,), "int8", offset_factor=1)
        B = T.match_buffer(b, (length,), "int8", offset_factor=1)
        C = T.match_buffer(c, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0], A[0:length], B[0:length])
            T.writes(C[0])
            for k in range(length):
                with T.sblock("update"):
                    vk = T.axis.remap("R", [k])
                    C[0] = C[0] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vk])

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (length,), "int8", offset_factor=1)
        B = T.match_buffer(b, (length,), "int8", offset_factor=1)
        C = T.match_buffer(c, (1,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0], A[0:length], B[0:length])
            T.writes(C[0])
            C[0] = T.call_extern("int32", EXTERN_NAME, A.access_ptr("r"), B.access_ptr("r"), length, C[0])

    s_tir.TensorIntrin.register(name, description, implementation)
    return name


def _reduction_block(sch: s_tir.Schedule, func_name: str):
    for block_rv in sch.get_child_blocks(sch.get_sblock("root", func_name=func_name)):
        if any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block_rv).iter_vars):
            return block_rv
    raise ValueError(f"{func_name} has no reduction to tensorize")


def tensorize_matmul(mod: tvm.IRModule) -> tvm.IRModule:
    """Every kernel of ``mod`` (int8 ``[..., M, K] x [K, N]`` matmuls) with its inner product on ``iseg_dot_s8``."""
    sch = s_tir.Schedule(apply_default_schedules(mod))
    for gv in list(mod.get_global_vars()):
        name = gv.name_hint
        block = _reduction_block(sch, name)
        loops = sch.get_loops(block)
        iter_vars = sch.get(block).iter_vars
        length = int(iter_vars[-1].dom.extent)
        spatial_then_k = all(iv.iter_type == tirx.IterVar.DataPar for iv in iter_vars[:-1])
        b_operand = sch.get(block).reads[-1].source  # reads: C, A, B
        if len(loops) != len(iter_vars) or not spatial_then_k or len(b_operand.shape) != 2 or length % MVE_LANES:
            raise ValueError(f"{name}: not a 2-D matmul with K a multiple of {MVE_LANES}")
        packed = sch.cache_read(block, len(sch.get(block).reads) - 1, "global")
        sch.transform_layout(packed, ("write", 0), lambda k, n: (n, k))
        sch.tensorize(loops[-1], dot_intrinsic(length))
    return sch.mod


def tensorize_matmuls(kernels: tvm.IRModule, skip: frozenset[str] = frozenset()) -> tuple[tvm.IRModule, list[str]]:
    """Tensorize each kernel of a network that is an int8 matmul (others, and those in ``skip``, stay as they are).

    Returns the module and the names of the tensorized kernels (already scheduled: pass them to
    ``apply_default_schedules`` in ``skip``)."""
    functions, tensorized = dict(kernels.functions.items()), []
    for gv, func in kernels.functions.items():
        if gv.name_hint in skip or not isinstance(func, tirx.PrimFunc):
            continue
        try:
            functions[gv] = tensorize_matmul(tvm.IRModule({gv: func}))[gv]
        except (ValueError, RuntimeError):  # ScheduleError: not a matmul, not int8 (e.g. int16 attention), or no match
            continue
        tensorized.append(gv.name_hint)
    return tvm.IRModule(functions, attrs=kernels.attrs), tensorized
