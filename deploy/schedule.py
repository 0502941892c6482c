"""Default schedules for unscheduled kernels, so their intermediates do not become big stack arrays.

For each fused PrimFunc:

1. every block writing a kernel-local buffer is inlined into its consumers (``compute_inline``: pads,
   casts, elementwise chains), unless that would copy an expression with several loads to several
   use sites (Newton iterations ``k = (k + v / k) >> 1`` would grow exponentially);
2. such a block is computed inside its single consumer's loop nest instead (``compute_at``);
3. every remaining block moves into its last producer's loop nest, as deep as its data allows
   (``reverse_compute_at``): matmul/conv epilogues land under the reduction's spatial loops and
   row-wise ops under the row loop, so intermediates shrink to one element or one row;
4. reduction initialisation is hoisted out of the reduction loops (``decompose_reduction``).

Kernels that a tuning log already scheduled are passed in ``skip`` and left alone.
"""
import re

import tvm
from tvm import s_tir, tirx


def _writes_param(sch: s_tir.Schedule, block_rv, params) -> bool:
    block = sch.get(block_rv)
    return any(any(region.source.same_as(p) for p in params) for region in block.writes)


def _blocks(sch: s_tir.Schedule, func_name: str):
    return sch.get_child_blocks(sch.get_sblock("root", func_name=func_name))


def _loads(body: str, names) -> int:
    return sum(len(re.findall(rf"\b{re.escape(name)}\[", body)) for name in names)


def _inlining_duplicates_work(sch: s_tir.Schedule, block_rv) -> bool:
    """Whether inlining ``block_rv`` would copy a multi-load expression to several use sites."""
    block = sch.get(block_rv)
    if _loads(str(block.body), {region.source.name for region in block.reads}) <= 1:
        return False
    written = {region.source.name for region in block.writes}
    return sum(_loads(str(sch.get(c).body), written) for c in sch.get_consumers(block_rv)) > 1


def _is_spatial(sch: s_tir.Schedule, block_rv) -> bool:
    return all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block_rv).iter_vars)


def inline_all(sch: s_tir.Schedule, func_name: str, params) -> None:
    changed = True
    while changed:
        changed = False
        for block_rv in _blocks(sch, func_name):
            if _writes_param(sch, block_rv, params) or _inlining_duplicates_work(sch, block_rv):
                continue
            try:
                sch.compute_inline(block_rv)
                changed = True
            except s_tir.ScheduleError:
                continue


def compute_at_consumers(sch: s_tir.Schedule, func_name: str, params) -> None:
    """Move multiply-read elementwise producers into their single elementwise consumer's innermost loop."""
    for block_rv in reversed(_blocks(sch, func_name)):
        consumers = sch.get_consumers(block_rv)
        if (_writes_param(sch, block_rv, params) or len(consumers) != 1 or not _is_spatial(sch, block_rv)
                or not _is_spatial(sch, consumers[0])):
            continue
        # Deep enough to shrink the producer to one element, no deeper (a per-row value stays per row): under
        # the consumer loop that closes as many non-unit loops as the producer has non-unit iteration variables.
        varying = sum(int(iv.dom.extent) > 1 for iv in sch.get(block_rv).iter_vars)
        loops = sch.get_loops(consumers[0])
        try:
            sch.compute_at(block_rv, loops[_loop_index_after(sch, loops, varying)])
        except s_tir.ScheduleError:
            continue


def _loop_index_after(sch: s_tir.Schedule, loops, non_unit: int) -> int:
    """Index of the loop of ``loops`` that closes the first ``non_unit`` non-unit loops (the last loop if there
    are fewer; the first loop for ``non_unit == 0``)."""
    if non_unit == 0:
        return 0
    seen = 0
    for index, loop in enumerate(loops):
        seen += int(sch.get(loop).extent) > 1
        if seen == non_unit:
            return index
    return len(loops) - 1


def _spatial_depth(sch: s_tir.Schedule, block_rv) -> int:
    """Number of leading spatial (data-parallel) iteration variables of ``block_rv``."""
    depth = 0
    for iter_var in sch.get(block_rv).iter_vars:
        if iter_var.iter_type != tirx.IterVar.DataPar:
            break
        depth += 1
    return depth


def _same_nest(sch: s_tir.Schedule, a, b) -> bool:
    loops_a, loops_b = sch.get_loops(a), sch.get_loops(b)
    return bool(loops_a and loops_b) and sch.get(loops_a[0]).same_as(sch.get(loops_b[0]))


def _fuse_into_producers(sch: s_tir.Schedule, func_name: str) -> None:
    """Move each block into the loop nest of its last producer, as deep as its data allows.

    One pass in program order suffices: a block's producers have been placed before it is visited."""
    for block_rv in _blocks(sch, func_name):
        producers = sch.get_producers(block_rv)
        if not producers or _same_nest(sch, producers[-1], block_rv):
            continue
        producer = producers[-1]
        depth = min(_spatial_depth(sch, producer), len(sch.get_loops(producer)))
        for loop in reversed(sch.get_loops(producer)[:depth]):
            try:
                sch.reverse_compute_at(block_rv, loop)
                break
            except s_tir.ScheduleError:
                continue


def _decompose_reductions(sch: s_tir.Schedule, func_name: str) -> None:
    for block_rv in _blocks(sch, func_name):
        depth, loops = _spatial_depth(sch, block_rv), sch.get_loops(block_rv)
        if depth < len(sch.get(block_rv).iter_vars) and depth < len(loops):
            try:
                sch.decompose_reduction(block_rv, loops[depth])
            except s_tir.ScheduleError:
                continue


def apply_default_schedules(kernels: tvm.IRModule, skip: frozenset[str] = frozenset()) -> tvm.IRModule:
    """Inline producers and compute epilogues at their reduction in every kernel not in ``skip``.

    Each kernel gets its own one-function schedule: primitives on a schedule of the whole network cost
    about 4x more (every step re-checks the full module)."""
    functions = dict(kernels.functions.items())
    for gv, func in kernels.functions.items():
        if gv.name_hint in skip or not isinstance(func, tirx.PrimFunc):
            continue
        sch = s_tir.Schedule(tvm.IRModule({gv: func}))
        inline_all(sch, gv.name_hint, func.params)
        compute_at_consumers(sch, gv.name_hint, func.params)
        _fuse_into_producers(sch, gv.name_hint)
        _decompose_reductions(sch, gv.name_hint)
        functions[gv] = sch.mod[gv]
    return tvm.IRModule(functions, attrs=kernels.attrs)
