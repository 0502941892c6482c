"""The MetaSchedule search space for target kind ``c`` on microcontrollers (TVM has no default for ``c``).

Single core, no vector unit the C compiler could use for int8 dot products, a dozen usable registers and
small (or no) caches. Hence:

* ``AutoInline``: casts, pads and the requantize epilogue go into their producer/consumer;
* ``MultiLevelTiling`` with structure ``SSRSRS`` and small innermost tiles (at most 8: a register-blocked
  accumulator tile must fit the register file), output written through a local tile at the outer levels;
* ``ParallelizeVectorizeUnroll`` without parallel and vector loops, only unrolling, at most 64 steps (deeper
  explicit unrolling copies a loop body hundreds of times into flash for a fraction of a percent fewer
  instructions: 512 steps made the patch-embedding conv 19 KB larger for 0.3 M of 152 M instructions);
* ``RandomComputeLocation`` for blocks left outside the tiling;
* for int8/int16 GEMM kernels, ``schedules.tune`` also searches the tensorized designs of
  ``schedules.tensorize.gemm_space`` (register-tiled micro-kernel calls, one design per tile shape; on DSP
  boards int8 GEMMs with both operands widened to int16).

Postprocessors make every sampled schedule buildable (unroll pragmas, reduction init hoisted out of the
reduction loops, no dynamic loops); mutators resample tile sizes, unroll depth and compute locations.
"""
import importlib.util
import sys

from tvm.s_tir import meta_schedule as ms

MAX_INNERMOST_FACTOR = 8
UNROLL_MAX_STEPS = [0, 16, 64]


def schedule_rules() -> list:
    return [
        ms.schedule_rule.AutoInline(
            into_producer=False, into_consumer=True, inline_const_tensor=True, disallow_if_then_else=True,
            require_injective=True, require_ordered=True,
        ),
        ms.schedule_rule.MultiLevelTiling(
            structure="SSRSRS",
            max_innermost_factor=MAX_INNERMOST_FACTOR,
            reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"),
        ),
        ms.schedule_rule.ParallelizeVectorizeUnroll(
            max_jobs_per_core=-1, max_vectorize_extent=-1, unroll_max_steps=UNROLL_MAX_STEPS, unroll_explicit=True,
        ),
        ms.schedule_rule.RandomComputeLocation(),
    ]


def postprocs() -> list:
    return [
        ms.postproc.DisallowDynamicLoop(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
    ]


def mutator_probs() -> dict:
    return {
        ms.mutator.MutateTileSize(): 0.9,
        ms.mutator.MutateComputeLocation(): 0.05,
        ms.mutator.MutateUnroll(): 0.03,
    }


def microcontroller_space() -> ms.space_generator.PostOrderApply:
    """The generic (scalar C) space for one kernel."""
    return ms.space_generator.PostOrderApply(
        sch_rules=schedule_rules(), postprocs=postprocs(), mutator_probs=mutator_probs(),
    )


def skip_foreign_tensor_intrinsics() -> None:
    """Make ``import tvm.s_tir.tensor_intrin`` (done by every ``TuneContext``) cheap.

    Its ``__init__`` registers the CUDA/ROCm/x86/Hexagon/... intrinsics by parsing TVMScript, about 30 s of
    CPU per process, none of which a microcontroller uses. This installs the package without running its
    ``__init__``; its submodules stay importable one by one (``import tvm.s_tir.tensor_intrin.arm_cpu``).
    Does nothing once the package was imported.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
