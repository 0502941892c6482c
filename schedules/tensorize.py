"""Tensorize integer matmul kernels with register-blocked GEMM micro-kernels (``schedules/microkernels``).

The tensor intrinsic ``iseg_gemm_<a>_<b>_<R>x<C>_k<K>``: its description is an ``R x C`` int32 output tile
over a length-``K`` reduction, ``C[i, j] += int32(A[i, k]) * int32(B[j, k])`` with int8 or int16 operands,
``A`` rows and ``B`` columns contiguous (any row stride); its implementation one ``T.call_extern`` of
``iseg_gemm_<a>_<b>_<R>x<C>(A, lda, B, ldb, C, ldc, K)`` from ``schedules/microkernels/iseg_gemm.h`` (MVE
``VMLADAVA``, DSP ``SMLAD``/``SXTB16`` or plain C, picked by the compiler's feature macros). That header is
emitted next to the generated kernels, which include it: every tile call is inlined.

:func:`schedule_gemm` rewrites a fused ``[..., M, K] x [..., K, N]`` kernel for one tile shape: elementwise
producers/consumers inlined, ``B`` packed once per call (per batch) into ``[..., N, K]``, the output tiled
``R x C`` with the epilogue (bias, requantize) computed per tile from an ``R x C`` accumulator, the tile's
reduction replaced by the intrinsic. Widened (int8 GEMMs on DSP boards): ``B`` and each row tile of ``A`` are
packed into int16 buffers (``unsafe_set_dtype``), the tile reads them as ``int8(x)`` (intrinsic
``iseg_gemm_s16_s16_<R>x<C>_k<K>_from_int8``) and runs the int16 micro-kernel: ``LDRD`` + ``SMLAD``, no sign
extension in the loop. Every step is a traced schedule primitive, so MetaSchedule records it
(:func:`gemm_space` puts it in the search) and a tuning log replays it once :func:`register_intrinsics` ran.
"""
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import s_tir, tirx
from tvm.ir.expr import TensorLoad
from tvm.s_tir import meta_schedule as ms
from tvm.script import tirx as T

from deploy.schedule import compute_at_consumers, inline_all

MICROKERNEL = Path(__file__).resolve().parent / "microkernels" / "iseg_gemm.h"
OPERAND_TYPES = {"int8": "s8", "int16": "s16"}
# Tile shapes (rows x columns of the output) that iseg_gemm.h defines; keep in sync with ISEG_GEMM_TILES.
# Larger tiles run out of core registers (GCC then spills to S registers: not float-free on the MVE board);
# a tile with one row or column would lose its unit loop before tensorize could match it.
TILES = ((2, 2), (2, 3), (3, 2), (2, 4), (4, 2))
# Tiles of the widened int8 GEMMs (int16 operands): made of the int16 micro-kernel's 2x2 LDRD + SMLAD blocks.
WIDENED_TILES = ((2, 2), (2, 4), (4, 2))
DEFAULT_TILE = (2, 2)  # without a tuning log
UNROLL_STEPS = [0, 16, 64]


def microkernel_sources() -> dict[str, str]:
    """File name -> source of the micro-kernels a tensorized kernel calls (a header: emit it with the kernels)."""
    return {MICROKERNEL.name: MICROKERNEL.read_text()}


def extern_name(dtype: str, rows: int, cols: int) -> str:
    short = OPERAND_TYPES[dtype]
    return f"iseg_gemm_{short}_{short}_{rows}x{cols}"


def gemm_intrinsic(dtype: str, rows: int, cols: int, length: int, widened: bool = False) -> str:
    """Register (once) and return the name of the ``rows x cols`` tile, length-``length`` GEMM intrinsic.

    ``widened``: ``dtype`` (int8) operands that the kernel packed into int16 buffers (:func:`schedule_gemm`); the
    tile reads them back as ``int8(x)`` and its implementation is the int16 micro-kernel."""
    kernel_dtype = "int16" if widened else dtype
    name = f"{extern_name(kernel_dtype, rows, cols)}_k{length}" + (f"_from_{dtype}" if widened else "")
    if s_tir.TensorIntrin.get(name, allow_missing=True) is not None:
        return name

    def operand(x):  # how the tile's block reads an operand element
        return T.Cast("int32", T.Cast(dtype, x) if widened else x)

    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        lda, ldb, ldc = T.int64(), T.int64(), T.int64()
        A = T.match_buffer(a, (rows, length), kernel_dtype, offset_factor=1, strides=[lda, 1])
        B = T.match_buffer(b, (cols, length), kernel_dtype, offset_factor=1, strides=[ldb, 1])
        C = T.match_buffer(c, (rows, cols), "int32", offset_factor=1, strides=[ldc, 1])
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:length], B[0:cols, 0:length])
            T.writes(C[0:rows, 0:cols])
            for i, j, k in T.grid(rows, cols, length):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + operand(A[vi, vk]) * operand(B[vj, vk])

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        lda, ldb, ldc = T.int64(), T.int64(), T.int64()
        A = T.match_buffer(a, (rows, length), kernel_dtype, offset_factor=1, strides=[lda, 1])
        B = T.match_buffer(b, (cols, length), kernel_dtype, offset_factor=1, strides=[ldb, 1])
        C = T.match_buffer(c, (rows, cols), "int32", offset_factor=1, strides=[ldc, 1])
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:length], B[0:cols, 0:length])
            T.writes(C[0:rows, 0:cols])
            T.evaluate(T.call_extern(
                "void", extern_name(kernel_dtype, rows, cols), A.access_ptr("r"), T.Cast("int32", lda),
                B.access_ptr("r"), T.Cast("int32", ldb), C.access_ptr("rw"), T.Cast("int32", ldc), length))

    s_tir.TensorIntrin.register(name, description, implementation)
    return name


@dataclass(frozen=True)
class Gemm:
    """The shape of a kernel's matmul block: operand dtype, output rows ``m``, columns ``n``, reduction ``k``,
    the index of ``B`` in the block's reads and whether ``B`` has batch dimensions."""

    dtype: str
    m: int
    n: int
    k: int
    b_read: int
    b_batched: bool

    def tiles(self, widened: bool = False) -> list[tuple[int, int]]:
        return [(r, c) for r, c in (WIDENED_TILES if widened else TILES) if self.m % r == 0 and self.n % c == 0]


def _index_vars(indices) -> list:
    return [index if isinstance(index, tirx.Var) else None for index in indices]


def match_gemm(block) -> Gemm | None:
    """``block`` as ``C[.., i, j] += int32(A[.., i, k]) * int32(B[.., k, j])`` (int8/int16), else None."""
    iter_vars = block.iter_vars
    if (len(iter_vars) < 3 or iter_vars[-1].iter_type != tirx.IterVar.CommReduce
            or any(iv.iter_type != tirx.IterVar.DataPar for iv in iter_vars[:-1])):
        return None
    store = block.body
    if not isinstance(store, tirx.BufferStore) or not isinstance(store.value, tirx.Add):
        return None
    product = store.value.b
    if not isinstance(product, tirx.Mul) or not all(isinstance(x, tirx.Cast) for x in (product.a, product.b)):
        return None
    a, b = product.a.value, product.b.value
    if not all(isinstance(x, TensorLoad) for x in (a, b)) or a.source.dtype != b.source.dtype:
        return None
    if str(a.source.dtype) not in OPERAND_TYPES or str(store.buffer.dtype) != "int32":
        return None
    i, j, k = (iv.var for iv in iter_vars[-3:])
    a_vars, b_vars = _index_vars(a.indices), _index_vars(b.indices)
    if a_vars[-2:] != [i, k] or b_vars[-2:] != [k, j] or any(v is not None and v in (i, j, k) for v in b_vars[:-2]):
        return None
    b_read = next((n for n, region in enumerate(block.reads) if region.source.same_as(b.source)), None)
    if b_read is None or a.source.same_as(b.source):
        return None
    return Gemm(str(a.source.dtype), *(int(iv.dom.extent) for iv in iter_vars[-3:]), b_read, len(b.indices) > 2)


def find_gemm(sch: s_tir.Schedule, func_name: str):
    """The (block RV, :class:`Gemm`) of the kernel's single GEMM-shaped reduction, or (None, None)."""
    found = [(rv, gemm) for rv in sch.get_child_blocks(sch.get_sblock("root", func_name=func_name))
             if (gemm := match_gemm(sch.get(rv))) is not None]
    return found[0] if len(found) == 1 else (None, None)


def schedule_gemm(sch: s_tir.Schedule, func_name: str, rows: int, cols: int, widened: bool = False) -> None:
    """Tensorize the GEMM of ``func_name`` in ``sch`` with ``rows x cols`` tiles (see the module docstring).

    ``widened`` (int8 GEMMs): both operands are packed into int16 buffers, ``B`` whole, ``A`` one row tile at a
    time, and the tiles run the int16 micro-kernel, which needs no sign extension in its loop (``LDRD`` + ``SMLAD``
    with DSP) for twice the packed ``B``'s memory. Raises ``ValueError`` (or a ``ScheduleError``) when the kernel
    does not fit."""
    params = sch.mod[func_name].params
    inline_all(sch, func_name, params)
    compute_at_consumers(sch, func_name, params)
    block, gemm = find_gemm(sch, func_name)
    if gemm is None or (rows, cols) not in gemm.tiles(widened):
        raise ValueError(f"{func_name}: no GEMM that {rows}x{cols} tiles" + (" (widened)" if widened else ""))
    if widened and gemm.dtype != "int8":
        raise ValueError(f"{func_name}: only int8 operands are widened, not {gemm.dtype}")
    loops = sch.get_loops(block)
    if len(loops) != len(sch.get(block).iter_vars):
        raise ValueError(f"{func_name}: the GEMM's loops were already transformed")
    a_read = next(n for n, region in enumerate(sch.get(block).reads)
                  if n != gemm.b_read and str(region.source.dtype) == gemm.dtype)
    packed = sch.cache_read(block, gemm.b_read, "global")
    sch.transform_layout(packed, ("write", 0), lambda *index: (*index[:-2], index[-1], index[-2]))
    *batch, i, j, k = loops
    i_outer, i_inner = sch.split(i, [None, rows])
    j_outer, j_inner = sch.split(j, [None, cols])
    sch.reorder(i_outer, j_outer, i_inner, j_inner, k)
    if gemm.b_batched and batch:
        sch.compute_at(packed, batch[-1])  # one batch (attention head) of B at a time
    if widened:
        packed_a = sch.cache_read(block, a_read, "global")
        sch.compute_at(packed_a, i_outer)  # the tile's rows of A
        for producer in (packed, packed_a):
            sch.unsafe_set_dtype(producer, 0, "int16")
    for consumer in _blocks_after(sch, func_name, block):
        sch.reverse_compute_at(consumer, j_outer)  # the epilogue per tile: an R x C int32 accumulator
    sch.decompose_reduction(block, i_inner)
    sch.tensorize(i_inner, gemm_intrinsic(gemm.dtype, rows, cols, gemm.k, widened))


def _blocks_after(sch: s_tir.Schedule, func_name: str, block) -> list:
    blocks = sch.get_child_blocks(sch.get_sblock("root", func_name=func_name))
    names = [sch.get(rv).name_hint for rv in blocks]
    return blocks[names.index(sch.get(block).name_hint) + 1:]


def kernel_gemm(func: tirx.PrimFunc) -> Gemm | None:
    """The :class:`Gemm` of a kernel once its elementwise producers are inlined (None: not a GEMM kernel)."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    inline_all(sch, "main", func.params)
    return find_gemm(sch, "main")[1]


def is_gemm(func: tirx.PrimFunc) -> bool:
    return kernel_gemm(func) is not None


def register_intrinsics(func: tirx.PrimFunc) -> None:
    """Register every tile intrinsic ``func``'s GEMM could use (before replaying a tuning log's schedule)."""
    gemm = kernel_gemm(func)
    if gemm is None:
        return
    for rows, cols in gemm.tiles():
        gemm_intrinsic(gemm.dtype, rows, cols, gemm.k)
    for rows, cols in gemm.tiles(widened=True) if gemm.dtype == "int8" else []:
        gemm_intrinsic(gemm.dtype, rows, cols, gemm.k, widened=True)


def _sample_unroll(sch: s_tir.Schedule, func_name: str) -> None:
    """Unrolling of the loops around the micro-kernel calls (epilogue, packing), a decision the search mutates."""
    steps = sch.sample_categorical(UNROLL_STEPS, [1.0 / len(UNROLL_STEPS)] * len(UNROLL_STEPS))
    sch.annotate(sch.get_sblock("root", func_name=func_name), "meta_schedule.unroll_explicit", steps)


def _designs(gemm: Gemm | None, widen_within: int) -> list[tuple[int, int, bool]]:
    """(rows, cols, widened) of the tensorized designs tried for ``gemm``: the widened tiles of an int8 GEMM
    whose int16 packed operands (all of ``B``, a tile's rows of ``A``) take at most ``widen_within`` bytes (they
    beat the int8 tiles on every Segmenter kernel with DSP), else the int8/int16 tiles."""
    if gemm is None:
        return []
    packed_bytes = 2 * gemm.k * (gemm.n + max(rows for rows, _ in WIDENED_TILES))
    if gemm.dtype == "int8" and packed_bytes <= widen_within:
        return [(rows, cols, True) for rows, cols in gemm.tiles(widened=True)]
    return [(rows, cols, False) for rows, cols in gemm.tiles()]


def gemm_space(postprocs: list, widen_within: int = 0) -> ms.space_generator.ScheduleFn:
    """The tensorized part of the search: every tile shape, each with a sampled unroll depth; int8 GEMMs are
    widened (:func:`schedule_gemm`) when their packed int16 operands fit ``widen_within`` bytes."""

    def variants(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        found = []
        for rows, cols, widened in _designs(kernel_gemm(sch.mod["main"]), widen_within):
            variant = sch.copy()
            try:
                schedule_gemm(variant, "main", rows, cols, widened)
            except (ValueError, s_tir.ScheduleError):
                continue
            _sample_unroll(variant, "main")
            found.append(variant)
        return found

    return ms.space_generator.ScheduleFn(variants, sch_rules=[], postprocs=postprocs,
                                         mutator_probs={ms.mutator.MutateUnroll(): 1.0})


def tensorize_matmul(mod: tvm.IRModule, tile: tuple[int, int] = DEFAULT_TILE, widened: bool = False) -> tvm.IRModule:
    """Every kernel of ``mod`` tensorized with ``tile`` (``ValueError`` if one is not a GEMM it tiles)."""
    functions = dict(mod.functions.items())
    for gv, func in mod.functions.items():
        sch = s_tir.Schedule(tvm.IRModule({gv: func}))
        schedule_gemm(sch, gv.name_hint, *tile, widened)
        functions[gv] = sch.mod[gv]
    return tvm.IRModule(functions, attrs=mod.attrs)


def tensorize_matmuls(kernels: tvm.IRModule, skip: frozenset[str] = frozenset()) -> tuple[tvm.IRModule, list[str]]:
    """Tensorize each kernel of a network that is a GEMM (others, and those in ``skip``, stay as they are).

    Returns the module and the names of the tensorized kernels (already scheduled: pass them to
    ``apply_default_schedules`` in ``skip``)."""
    functions, tensorized = dict(kernels.functions.items()), []
    for gv, func in kernels.functions.items():
        if gv.name_hint in skip or not isinstance(func, tirx.PrimFunc):
            continue
        try:
            functions[gv] = tensorize_matmul(tvm.IRModule({gv: func}))[gv]
        except (ValueError, RuntimeError):  # ScheduleError: not a GEMM, or its epilogue does not follow the tiles
            continue
        tensorized.append(gv.name_hint)
    return tvm.IRModule(functions, attrs=kernels.attrs), tensorized

