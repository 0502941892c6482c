"""One static arena for all intermediates: liveness intervals + greedy offset planning.

Each intermediate tensor is live from the first kernel call that touches it to the last one.
``plan_arena`` places tensors largest-first at the lowest offset that does not overlap any already
placed tensor whose interval intersects (first fit), and reports the arena size next to the lower
bound: the largest total size of tensors live at the same call.
"""
from dataclasses import dataclass

from deploy.lower import StaticProgram

ALIGNMENT = 16


@dataclass
class ArenaPlan:
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    size: int  # arena bytes
    lower_bound: int  # max over calls of the bytes live at that call (unaligned)

    @property
    def ratio(self) -> float:
        return self.size / self.lower_bound if self.lower_bound else 1.0


def _aligned(nbytes: int) -> int:
    return (nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def live_intervals(program: StaticProgram) -> dict[int, tuple[int, int]]:
    """tensor index -> (first call, last call) for every intermediate tensor."""
    intervals: dict[int, tuple[int, int]] = {}
    for step, call in enumerate(program.calls):
        for index in call.args:
            if program.tensors[index].kind == "intermediate":
                first, _ = intervals.get(index, (step, step))
                intervals[index] = (first, step)
    return intervals


def plan_arena(program: StaticProgram) -> ArenaPlan:
    intervals = live_intervals(program)
    sizes = {i: program.tensors[i].nbytes for i in intervals}
    lower_bound = max(
        (sum(sizes[i] for i, (a, b) in intervals.items() if a <= step <= b) for step in range(len(program.calls))),
        default=0,
    )
    offsets: dict[int, int] = {}
    for index in sorted(intervals, key=lambda i: (-sizes[i], intervals[i])):
        first, last = intervals[index]
        busy = sorted(
            (offsets[j], offsets[j] + _aligned(sizes[j]))
            for j in offsets
            if intervals[j][0] <= last and first <= intervals[j][1]
        )
        offset = 0
        for start, end in busy:
            if offset + sizes[index] <= start:
                break
            offset = max(offset, end)
        offsets[index] = offset
    size = max((offsets[i] + _aligned(sizes[i]) for i in offsets), default=0)
    return ArenaPlan(offsets=offsets, size=size, lower_bound=lower_bound)
