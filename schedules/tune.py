"""Tune a model's int8 kernels for a board, measuring every candidate in QEMU (retired instructions).

    python -m schedules.tune --target cortex-m55 [--model segmenter-kernels|MODEL_FILE] [--trials N]
                             [--log-dir DIR]

Writes the MetaSchedule database (``database_workload.json``, ``database_tuning_record.json``) and
``metadata.json`` into ``--log-dir`` (default ``build/tuning/<model>/<target>/``; the committed logs live in
``assets/tuning/<model>/<target>/``). Running again resumes: a kernel that already has N measured trials in
the log is not measured again. Prints, per kernel, instructions per call with ``deploy``'s default
schedule and with the best tuned schedule.

``--model segmenter-kernels`` (default) tunes the Segmenter's int8 kernels built by ``schedules.kernels``;
a model file goes through ``deploy.flow.integer_module`` (the integer-only passes) and tunes every kernel
of the lowered network that multiplies-accumulates.
"""
import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from common.errors import UserError
from common.paths import ASSETS, BUILD_DIR
from deploy.schedule import apply_default_schedules
from schedules.kernels import KERNELS, KernelCase, kernel_case, random_case
from schedules.measure import FirmwareKit, QemuBuilder, QemuRunner, mcpu_of, measure_module
from schedules.space import microcontroller_space, postprocs, skip_foreign_tensor_intrinsics
from schedules.tensorize import gemm_space, is_gemm, microkernel_sources, register_intrinsics
from schedules.tuning_log import (best_instructions, measured_trials, open_database, tuning_target, workload,
                                  workload_hash, write_metadata)
from targets import BOARDS, DEFAULT_TARGET, Board, get_board

BUILTIN_MODEL = "segmenter-kernels"
COMMITTED_LOGS = ASSETS / "tuning"
TRIALS_PER_ITER = 16


def default_log_dir(model: str, target: str) -> Path:
    return BUILD_DIR / "tuning" / Path(model).stem / target


@dataclass
class KernelTuning:
    """Before/after of one kernel: instructions per call with deploy's default and the best tuned schedule."""

    name: str
    macs: int
    default_instructions: int
    tuned_instructions: int | None
    trials: int

    @property
    def speedup(self) -> float | None:
        return self.default_instructions / self.tuned_instructions if self.tuned_instructions else None


def model_cases(model: str, seed: int = 0) -> tuple[list[KernelCase], str]:
    """The kernels to tune for ``model`` and the model's hash (stored in the log's metadata)."""
    if model == BUILTIN_MODEL:
        cases = [kernel_case(spec, seed) for spec in KERNELS.values()]
        digest = hashlib.sha256(",".join(workload_hash(c.mod[c.name]) for c in cases).encode()).hexdigest()
        return cases, digest
    path = Path(model)
    if not path.is_file():
        raise UserError(f"model file {model} not found; pass a model file or --model {BUILTIN_MODEL}")
    from deploy import flow, lower, measure
    from deploy.build import default_images

    image = default_images()[0]
    quantized = flow.integer_module(path, image)  # calibrated like `python -m deploy.build`
    program = lower.lower_to_static_program(quantized.mod)
    macs = measure.macs_per_kernel(program.kernels)
    arguments = first_call_arguments(program, flow.load_image(image, tuple(quantized.input_shape)), set(macs))
    cases = []
    for gv, func in program.kernels.functions.items():
        if macs.get(gv.name_hint, 0) > 0:
            given = dict(enumerate(arguments[gv.name_hint]))
            cases.append(random_case(gv.name_hint, func, macs[gv.name_hint], seed, given))
    return cases, hashlib.sha256(path.read_bytes()).hexdigest()


def first_call_arguments(program, image: np.ndarray, kernels: set[str]) -> dict[str, list[np.ndarray]]:
    """The input arguments of the first call of each kernel in ``kernels`` when ``program`` runs on ``image``
    (every kernel built with TVM's llvm target, run in execution order): real activations, and the inputs
    that other kernels compute from constants (e.g. requantize shifts, which random values would make
    undefined in C)."""
    import tvm

    values = {program.input_index: image}
    for index in program.tensors_of_kind("const"):
        values[index] = program.tensors[index].value
    found = {}
    for call in tqdm(program.calls, desc="network activations", unit="kernel", leave=False):
        func = program.kernels[call.kernel]
        buffers = [tvm.runtime.tensor(np.ascontiguousarray(values[arg]).reshape([int(d) for d in param.shape])
                                      if arg in values else np.zeros([int(d) for d in param.shape], str(param.dtype)))
                   for arg, param in zip(call.args, func.params)]
        if call.kernel in kernels and call.kernel not in found:
            found[call.kernel] = [b.numpy() for b in buffers[:-1]]
        tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), "llvm")["main"](*buffers)
        values[call.args[-1]] = buffers[-1].numpy()
    return found


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Advances a tqdm bar by the number of candidates measured; shows the best instruction count."""

    def __init__(self, bar: tqdm):
        super().__init__()
        self.bar, self.best = bar, None

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        del task_scheduler, task_id, measure_candidates, builder_results
        costs = [float(r.run_secs[0].value) for r in runner_results if r.error_msg is None and r.run_secs]
        if costs:
            self.best = min(costs if self.best is None else [*costs, self.best])
        self.bar.update(len(runner_results))
        if self.best is not None:
            self.bar.set_postfix_str(f"best {int(self.best)} instr")


def _strategy() -> ms.search_strategy.EvolutionarySearch:
    """Evolutionary search sized for slow measurements: small population, few genetic iterations."""
    return ms.search_strategy.EvolutionarySearch(population_size=128, init_min_unmeasured=16, genetic_num_iters=2)


def tune_case(case: KernelCase, board: Board, database, scratch: Path, trials: int, bar: tqdm, workers: int,
              seed: int, rpc: tuple[str, int, str] | None = None) -> KernelTuning:
    """Tune one kernel up to ``trials`` measured candidates in ``database`` (resuming what it holds).

    ``rpc`` = (tracker host, tracker port, key): measure on the tracker's servers instead of locally.
    """
    func = case.mod[case.name]
    kit = FirmwareKit(board, case, scratch / f"{case.name[:48]}_{workload_hash(func)}",  # fused names get long
                      microkernel_sources())
    default = measure_module(kit, apply_default_schedules(case.mod))
    if rpc is None:
        runner = QemuRunner(kit, workers)
    else:
        from schedules.rpc import RpcQemuRunner

        runner = RpcQemuRunner(kit, *rpc, max_workers=workers)
    remaining = trials - measured_trials(database, func)
    # A GEMM's tensorized designs get their own half of the trials first (few designs, each far from the
    # generic space's, which the cost model would otherwise rarely pick), then the generic space the rest.
    tensorized = (max(0, min(remaining, trials // 2 - measured_trials(database, func, tensorized_only=True)))
                  if is_gemm(func) else 0)
    # Widened int8 GEMMs (DSP boards): their packed int16 operands stay within the stack arrays the builder
    # accepts, less 1 KiB for the accumulator and epilogue tiles.
    widen_within = board.stack_array_limit - 1024 if board.widens_int8_gemms else 0
    spaces = ((gemm_space(postprocs(), widen_within), tensorized),
              (microcontroller_space(), remaining - tensorized))
    for space, budget in spaces:
        if budget <= 0:
            continue
        skip_foreign_tensor_intrinsics()
        ms.tune_tir(
            workload(func), tuning_target(mcpu_of(board)), work_dir=str(scratch / "ms"),
            max_trials_global=budget, num_trials_per_iter=min(budget, TRIALS_PER_ITER),
            builder=QemuBuilder(kit, workers), runner=runner, database=database,
            cost_model="xgb", measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                                 ProgressCallback(bar)],
            space=space, strategy=_strategy(), num_tuning_cores=1, seed=seed,
        )
    return KernelTuning(case.name, case.macs, default, best_instructions(database, func),
                        measured_trials(database, func))


def tune(model: str, target: str, trials: int, log_dir: Path | None = None, seed: int = 0, workers: int = 2,
         kernels: list[str] | None = None, scratch: Path | None = None, rpc: tuple[str, int, str] | None = None
         ) -> tuple[list[KernelTuning], Path]:
    """Tune ``model``'s kernels (or only those named in ``kernels``) for ``target``; returns results + log dir."""
    board = get_board(target)
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    all_cases, model_hash = model_cases(model, seed)
    unknown = set(kernels or ()) - {c.name for c in all_cases}
    if unknown:
        known = ", ".join(c.name for c in all_cases)
        raise UserError(f"unknown kernel(s) {', '.join(sorted(unknown))}; known: {known}")
    cases = [c for c in all_cases if not kernels or c.name in kernels]
    log_dir = Path(log_dir or default_log_dir(model, target))
    # The log holds every kernel of the model (also when only some are tuned now): its tensorized records load
    # only with their intrinsics registered, and the metadata keeps listing all of them.
    for case in all_cases:
        register_intrinsics(case.mod[case.name])
    database = open_database(log_dir)
    write_metadata(log_dir, board.name, Path(model).stem, model_hash,
                   {c.name: workload_hash(c.mod[c.name]) for c in all_cases})
    scratch = Path(scratch or BUILD_DIR / "tuning" / ".scratch" / board.name)
    todo = sum(max(0, trials - measured_trials(database, c.mod[c.name])) for c in cases)
    results = []
    with tqdm(total=todo, desc=f"tune {board.name}", unit="trial") as bar:
        for case in cases:
            bar.set_description(f"tune {case.name[:40]}")
            try:
                results.append(tune_case(case, board, database, scratch, trials, bar, workers, seed, rpc))
            except RuntimeError as error:  # its default schedule fails on the random inputs: nothing to compare to
                tqdm.write(f"warning: {case.name[:60]} not tuned: default schedule: {error}")
    return results, log_dir


def markdown_table(results: list[KernelTuning]) -> str:
    lines = ["| kernel | MACs | default instr | tuned instr | speedup | MACs/instr | trials |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        tuned = r.tuned_instructions
        lines.append(f"| {r.name} | {r.macs} | {r.default_instructions} | {tuned if tuned else 'none valid'} | "
                     f"{f'{r.speedup:.2f}x' if tuned else '-'} | "
                     f"{f'{r.macs / tuned:.3f}' if tuned else '-'} | {r.trials} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedules.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default=DEFAULT_TARGET, choices=list(BOARDS))
    parser.add_argument("--model", default=BUILTIN_MODEL, help=f"{BUILTIN_MODEL} (default) or a model file")
    parser.add_argument("--trials", type=int, default=64, help="measured candidates per kernel (default 64)")
    parser.add_argument("--kernel", action="append", help="tune only this kernel (repeatable)")
    parser.add_argument("--log-dir", type=Path, help="database directory (default build/tuning/<model>/<target>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="parallel cross-compiles / QEMU runs")
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on the servers of this TVM RPC tracker")
    parser.add_argument("--rpc-key", default="iseg-qemu", help="device key the servers registered (with --rpc-tracker)")
    args = parser.parse_args(argv)
    try:
        start = time.monotonic()
        rpc = None
        if args.rpc_tracker:
            host, _, port = args.rpc_tracker.rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"--rpc-tracker must be HOST:PORT, got {args.rpc_tracker!r}")
            rpc = (host, int(port), args.rpc_key)
        results, log_dir = tune(args.model, args.target, args.trials, args.log_dir, args.seed, args.workers,
                                args.kernel, rpc=rpc)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    minutes = (time.monotonic() - start) / 60
    print(markdown_table(results))
    print(f"\ninstructions per kernel call, exact (QEMU TCG plugin, -icount shift=0), not cycles; "
          f"log: {log_dir}; {minutes:.1f} min")
    (log_dir / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
