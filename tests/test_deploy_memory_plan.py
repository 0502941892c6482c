"""Arena planning: hand-checked lower bound, no overlap between tensors live at the same time,
and the toy network's arena within 1.05x of the lower bound. Default schedules: no big stack arrays,
producers behind unit loops shrink to one element."""
import re

import tvm
from tvm import te
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.examples import toy_segmenter
from deploy.lower import KernelCall, StaticProgram, Tensor, lower_to_static_program
from deploy.memory_plan import live_intervals, plan_arena
from deploy.schedule import apply_default_schedules
from deploy.tir_pipeline import kernels_to_c


def chain_program(sizes: list[int], extra_reads: list[tuple[int, int]] = ()) -> StaticProgram:
    """input -> t0 -> t1 -> ... -> output; extra_reads: (call, tensor) pairs that also read an earlier tensor."""
    tensors = [Tensor("image", (4,), "uint8", "input")]
    tensors += [Tensor(f"t{i}", (n,), "uint8", "intermediate") for i, n in enumerate(sizes)]
    tensors.append(Tensor("class_map", (4,), "uint8", "output"))
    calls = [KernelCall(f"k{i}", [i, i + 1]) for i in range(len(sizes) + 1)]
    for call, tensor in extra_reads:
        calls[call].args.insert(0, tensor + 1)
    return StaticProgram(kernels=tvm.IRModule(), tensors=tensors, calls=calls, input_index=0,
                         output_index=len(tensors) - 1)


def test_lower_bound_and_plan_by_hand():
    # t0=100 (live calls 0..3 because call 3 reads it again), t1=200 (1..2), t2=48 (2..3)
    program = chain_program([100, 200, 48], extra_reads=[(3, 0)])
    assert live_intervals(program) == {1: (0, 3), 2: (1, 2), 3: (2, 3)}
    plan = plan_arena(program)
    assert plan.lower_bound == 100 + 200 + 48
    assert plan.size == 208 + 112 + 48  # 16-byte aligned slots, all three live at call 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(0, 12), st.integers(0, 11)), max_size=6))
def test_plan_never_overlaps_live_tensors(sizes, reads):
    reads = [(c, t) for c, t in reads if t < len(sizes) and t + 1 < c <= len(sizes)]
    program = chain_program(sizes, reads)
    plan = plan_arena(program)
    intervals = live_intervals(program)
    assert plan.size >= plan.lower_bound
    for a in intervals:
        for b in intervals:
            if a < b and intervals[a][0] <= intervals[b][1] and intervals[b][0] <= intervals[a][1]:
                a_end = plan.offsets[a] + program.tensors[a].nbytes
                b_end = plan.offsets[b] + program.tensors[b].nbytes
                assert a_end <= plan.offsets[b] or b_end <= plan.offsets[a]
            assert plan.offsets[a] + program.tensors[a].nbytes <= plan.size


def test_toy_network_arena_within_five_percent_of_lower_bound():
    plan = plan_arena(lower_to_static_program(toy_segmenter(height=32, width=24)))
    assert plan.lower_bound > 0 and plan.size <= 1.05 * plan.lower_bound


def test_default_schedules_leave_no_big_stack_arrays():
    program = lower_to_static_program(toy_segmenter())
    unscheduled = kernels_to_c(program.kernels)
    scheduled = kernels_to_c(apply_default_schedules(program.kernels))
    stack_arrays = re.compile(r"^\s+\w+ \w+\[(\d+)\];", re.MULTILINE)
    assert max(int(n) for n in stack_arrays.findall(unscheduled)) >= 16 * 16 * 8
    assert max(int(n) for n in stack_arrays.findall(scheduled)) == 1


def test_producer_behind_a_unit_loop_shrinks_to_one_element():
    """A multiply-read producer with two non-unit axes behind a unit one moves under the innermost loop of its
    consumer (one element), not under the row loop (a row of 8)."""
    a = te.placeholder((1, 4, 8), "int32", "A")
    square = te.compute((1, 4, 8), lambda n, i, j: a[n, i, j] * a[n, i, j], "square")
    out = te.compute((1, 4, 8), lambda n, i, j: square[n, i, j] * square[n, i, j], "square_again")
    scheduled = kernels_to_c(apply_default_schedules(tvm.IRModule({"main": te.create_prim_func([a, out])})))
    assert re.findall(r"^\s+int32_t \w+\[(\d+)\];", scheduled, re.MULTILINE) == ["1"]
