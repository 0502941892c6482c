"""The deploy flow for an integer-only Relax module: C project -> firmware -> QEMU -> proofs + report.

``deploy_module`` is the one call the full toolchain makes once the passes produced the integer
module (``main(image) -> class_map``, weights bound as constants). Everything is written into a
staging directory that replaces ``output_dir`` only when the flow succeeds.
"""
import json
import platform
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tqdm import tqdm
from tvm import relax

from common.errors import UserError
from deploy import host, measure, proofs, qemu
from deploy.emit_c import emit_sources
from deploy.lower import StaticProgram, lower_to_static_program
from deploy.memory_plan import ArenaPlan, plan_arena
from deploy.project import atomic_directory, write_project
from deploy.schedule import apply_default_schedules
from deploy.tir_pipeline import kernels_to_c
from targets import KIB, Board, get_board


@dataclass
class DeployResult:
    directory: Path
    report: dict
    outputs: list[np.ndarray] | None = None  # what the board computed, one array per image (None: not run)

    @property
    def bit_exact(self) -> bool:
        return bool(self.report.get("run", {}).get("bit_exact", False))


def integer_module(model_path: Path, calibration_image: Path):
    """Float model file + one calibration image file -> ``relax_passes.QuantizedModel``.

    ``.mod`` is the integer-only module (``main(image uint8 NHWC) -> uint8 class map``), ``.reference``
    its numpy reference and ``.input_shape`` the image shape it takes."""
    from frontend import loader
    from relax_passes import quantize_model

    imported = loader.load(model_path)
    _, _, height, width = imported.input_shape  # float models take NCHW
    calibration = load_image(calibration_image, (1, height, width, 3))
    return quantize_model(imported, calibration, progress=True)


@dataclass
class FloatModel:
    """The float model for the fp32 comparison build: ``main(float32 NCHW pixels 0..255) -> logits``."""

    mod: tvm.IRModule
    image_shape: tuple[int, ...]  # the uint8 NHWC image it is fed from
    imported: object

    def inputs(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 NHWC images -> the float model's inputs (the passes' own conversion)."""
        from relax_passes.quantize import model_inputs

        return model_inputs(self.imported, np.concatenate(images))


def float_model(model_path: Path) -> FloatModel:
    """Float model file -> its float Relax module (weights bound, input normalisation folded, as the passes see it)."""
    from frontend import loader
    from relax_passes.quantize import float_module

    imported = loader.load(model_path)
    _, _, height, width = imported.input_shape
    return FloatModel(float_module(imported), (1, height, width, 3), imported)


def load_image(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """A PNG/JPEG as uint8 in the model's layout (NHWC or NCHW, batch 1); wrong size is a UserError."""
    from PIL import Image, UnidentifiedImageError

    channels_first = len(input_shape) == 4 and input_shape[1] == 3
    height, width = input_shape[2:4] if channels_first else input_shape[1:3]
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image PIL can read; give a PNG or JPEG") from None
    if pixels.shape[:2] != (height, width):
        raise UserError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, the model takes {width}x{height}; "
                        "resize it first")
    pixels = pixels.transpose(2, 0, 1) if channels_first else pixels
    return pixels[None].copy()


def check_memory(program: StaticProgram, plan: ArenaPlan, board: Board) -> dict:
    """Weights must fit in flash, arena + stack in RAM: one-line error with how much is over."""
    weights = sum(program.tensors[i].nbytes for i in program.tensors_of_kind("const"))
    ram = plan.size + board.stack_size
    room = board.weights_region.size
    if weights > room:
        raise UserError(f"model too big for {board.name}: weights need {weights / KIB:.1f} KiB of flash, the board "
                        f"has {room / KIB:.0f} KiB ({(weights - room) / KIB:.1f} KiB over); "
                        "use a smaller model or a board with more flash")
    if ram > board.ram.size:
        raise UserError(f"model too big for {board.name}: arena {plan.size / KIB:.1f} KiB + stack "
                        f"{board.stack_size / KIB:.0f} KiB need {ram / KIB:.1f} KiB of RAM, the board has "
                        f"{board.ram.size / KIB:.0f} KiB ({(ram - board.ram.size) / KIB:.1f} KiB over)")
    return {"weights_bytes": weights, "arena_bytes": plan.size, "arena_lower_bound_bytes": plan.lower_bound,
            "arena_ratio": round(plan.ratio, 4), "stack_reserved_bytes": board.stack_size}


STACK_MARGIN = 1024  # bytes for isegmenter_run's and main's frames and the fault handler


def check_stack(frames: dict[str, int], board: Board) -> None:
    """The largest function frame (kernels are leaves below isegmenter_run) must fit the reserved stack."""
    if not frames:
        return
    name, frame = max(frames.items(), key=lambda kv: kv[1])
    if frame + STACK_MARGIN > board.stack_size:
        raise UserError(f"function {name[:60]} needs {frame} B of stack but {board.name} reserves "
                        f"{board.stack_size} B; schedule that kernel (or raise the board's stack_size)")


def check_images(images: list[np.ndarray], program: StaticProgram) -> None:
    expected = program.tensors[program.input_index]
    for i, image in enumerate(images):
        if tuple(image.shape) != expected.shape or str(image.dtype) != expected.dtype:
            raise UserError(f"image {i} is {image.dtype}{list(image.shape)}; the model takes "
                            f"{expected.dtype}{list(expected.shape)}")


def _compare(name: str, outputs: list[np.ndarray], references: list[np.ndarray]) -> dict:
    equal = [o is not None and o.shape == r.shape and bool(np.array_equal(o, r)) for o, r in zip(outputs, references)]
    differing = [int(np.count_nonzero(o != r)) if o is not None and o.shape == r.shape else -1
                 for o, r in zip(outputs, references)]
    return {"against": name, "bit_exact": all(equal), "differing_elements": differing}


FLOAT_TOLERANCE = 1e-3  # max |board - host| on the fp32 logits, relative to the largest |host| logit


def _compare_float(name: str, outputs: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """fp32 build vs the TVM llvm float build: per-pixel argmax over the class axis, and the largest difference."""
    result = _compare(name, outputs, references)
    valid = [(o, r) for o, r in zip(outputs, references) if o is not None and o.shape == r.shape]
    result["argmax_identical"] = len(valid) == len(references) and all(
        np.array_equal(o.argmax(axis=1), r.argmax(axis=1)) for o, r in valid)
    result["max_abs_diff"] = max((float(np.abs(o - r).max()) for o, r in valid), default=None)
    scale = max((float(np.abs(r).max()) for _, r in valid), default=1.0) or 1.0
    difference = result["max_abs_diff"]
    result["within_tolerance"] = difference is not None and difference <= FLOAT_TOLERANCE * scale
    return result


def bind_weights(mod: tvm.IRModule, params: list[np.ndarray]) -> tvm.IRModule:
    """``main(image, *weights)`` -> ``main(image)`` with the weights as constants (ImportedModel order)."""
    main = mod["main"]
    if len(main.params) != 1 + len(params):
        raise UserError(f"main takes {len(main.params) - 1} weights but {len(params)} were given")
    bindings = {var: tvm.runtime.tensor(value) for var, value in zip(main.params[1:], params)}
    return relax.transform.BindParams("main", bindings)(mod)


def stack_array_bytes(kernels: tvm.IRModule, name: str, board: Board) -> int:
    """Bytes of the local arrays kernel ``name`` declares in its C (a tuned schedule may cache whole tiles)."""
    return measure.stack_array_bytes_in_c(kernels_to_c(tvm.IRModule({kernels.get_global_var(name): kernels[name]}),
                                                       board.mcpu))


def _replace_kernel(kernels: tvm.IRModule, name: str, originals: tvm.IRModule) -> tvm.IRModule:
    functions = dict(kernels.functions.items())
    functions[kernels.get_global_var(name)] = originals[name]
    return tvm.IRModule(functions, attrs=kernels.attrs)


FLOAT_BOARD_ERROR = ("{board} is a float board (FPU on) for --precision fp32; deploy integer models to an "
                     "integer board such as cortex-m55")


@dataclass
class GeneratedC:
    """The C of one integer module: the static program, its arena plan, the sources and what scheduled them."""

    program: StaticProgram
    plan: ArenaPlan
    sources: dict[str, str]
    report: dict  # model, tensors, kernels, MACs, tuning: the board-independent part of report.json


def generate_c(mod: tvm.IRModule, board: Board | None, *, model_name: str = "model", tuning_log: Path | None = None,
               tuning_model_hash: str | None = None, extern_sources: dict[str, str] | None = None,
               precision: str = "int8", step=lambda name: None) -> GeneratedC:
    """Lower, schedule, plan and emit ``mod``. ``board`` picks the tuning log's target, MVE tensorization and
    the C target's ``-mcpu``; ``None`` gives portable C (default schedules) that every board builds.
    ``precision="fp32"``: the float comparison build of a float module (no tuning log, no tensorization)."""
    floating = precision == "fp32"
    if board is not None and board.fpu and not floating:
        raise UserError(FLOAT_BOARD_ERROR.format(board=board.name))
    program = lower_to_static_program(mod, allow_float=floating)
    tuning_log = None if floating else tuning_log
    step("lower")
    macs = measure.macs_per_kernel(program.kernels)
    tuned, tuning_warnings = [], []
    if tuning_log is not None and board is not None:
        from schedules import TuningLogWarning, apply_tuning_log

        untuned = program.kernels
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TuningLogWarning)
            program.kernels, tuned = apply_tuning_log(program.kernels, board.name, tuning_log, tuning_model_hash)
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        tuning_warnings = [str(w.message) for w in caught if issubclass(w.category, TuningLogWarning)]
        for name in [n for n in tuned if stack_array_bytes(program.kernels, n, board) > board.stack_array_limit]:
            tuned.remove(name)  # back to the unscheduled kernel: the default schedule below takes it
            program.kernels = _replace_kernel(program.kernels, name, untuned)
            tuning_warnings.append(f"the tuned schedule of {name[:60]} keeps big arrays on the stack "
                                   f"(> {board.stack_array_limit} B); default schedule kept")
    tensorized: list[str] = []
    if board is not None and (board.mve or tuned) and not floating:  # tuned kernels may call micro-kernels too
        from schedules.tensorize import microkernel_sources, tensorize_matmuls

        if board.mve:
            program.kernels, tensorized = tensorize_matmuls(program.kernels, skip=frozenset(tuned))
        extern_sources = {**microkernel_sources(), **(extern_sources or {})}
    program.kernels = apply_default_schedules(program.kernels, skip=frozenset(tuned + tensorized))
    step("schedule")
    plan = plan_arena(program)
    step("plan")
    sources = emit_sources(program, plan, mcpu=board.mcpu if board else "", extern_sources=extern_sources)
    step("emit")
    image_t, output_t = program.tensors[program.input_index], program.tensors[program.output_index]
    report = {
        "model": model_name, "precision": precision,
        "input": {"shape": list(image_t.shape), "dtype": image_t.dtype},
        "output": {"shape": list(output_t.shape), "dtype": output_t.dtype},
        "kernels": [{"name": c.kernel, "macs": macs.get(c.kernel, 0),
                     "weight_bytes": sum(program.tensors[a].nbytes for a in c.args
                                         if program.tensors[a].kind == "const"),
                     "activation_bytes": sum(program.tensors[a].nbytes for a in c.args
                                             if program.tensors[a].kind != "const")}
                    for c in program.calls],
        "total_macs": sum(macs.get(c.kernel, 0) for c in program.calls),
        "tuning_log": str(tuning_log) if tuning_log and board else None, "tuned_kernels": tuned,
        "tensorized_kernels": tensorized, "tuning_warnings": tuning_warnings,
        "tvm_version": tvm.__version__, "host": platform.platform(),
    }
    return GeneratedC(program, plan, sources, report)


def deploy_module(mod: tvm.IRModule, target: str, images: list[np.ndarray], output_dir: Path, *,
                  run: bool = True, numpy_reference=None, model_name: str = "model", tuning_log: Path | None = None,
                  tuning_model_hash: str | None = None, extern_sources: dict[str, str] | None = None,
                  timeout_s: float = qemu.DEFAULT_TIMEOUT_S, sanitize: bool = False, precision: str = "int8"
                  ) -> DeployResult:
    """Deploy ``mod`` to ``target``: write ``output_dir``, build, prove float-free, run, compare, measure.

    ``tuning_log``: a ``schedules`` tuning log directory; its kernels replace the default schedules
    (``tuning_model_hash``, when given, must equal the log's model hash; a log that does not fit is skipped
    with a ``TuningLogWarning``, also listed in the report).
    ``extern_sources``: C micro-kernels that tensorized kernels call (``schedules.tensorize``)."""
    board = get_board(target)
    steps = ["lower", "schedule", "plan", "emit", "write", "build", "prove"] + (["run", "measure"] if run else [])
    with tqdm(steps, desc=f"deploy {target}", unit="step", leave=False) as progress:
        def step(name: str) -> None:
            progress.set_postfix_str(name)
            progress.update(1)

        if run:
            qemu.require_tools(board)
        generated = generate_c(mod, board, model_name=model_name, tuning_log=tuning_log,
                               tuning_model_hash=tuning_model_hash, extern_sources=extern_sources,
                               precision=precision, step=step)
        check_images(images, generated.program)
        references = host.tvm_host_outputs(mod, images) if run else None
        numpy_outputs = [numpy_reference(i) for i in images] if run and numpy_reference is not None else None
        return build_and_run(generated, board, images, Path(output_dir), references, numpy_outputs, run=run,
                             timeout_s=timeout_s, sanitize=sanitize, step=step)


def deploy_to_boards(mod: tvm.IRModule, targets: list[str], images: list[np.ndarray], output_root: Path, *,
                     numpy_reference=None, model_name: str = "model",
                     timeout_s: float = qemu.DEFAULT_TIMEOUT_S) -> dict[str, DeployResult]:
    """Generate portable C for ``mod`` once, then build, prove and run it on every board of ``targets``
    (``output_root/<target>``), each compared with one TVM host build and the numpy reference."""
    boards = [get_board(t) for t in targets]
    for board in boards:
        qemu.require_tools(board)
    generated = generate_c(mod, None, model_name=model_name)
    check_images(images, generated.program)
    references = host.tvm_host_outputs(mod, images)
    numpy_outputs = [numpy_reference(i) for i in images] if numpy_reference is not None else None
    return {board.name: build_and_run(generated, board, images, Path(output_root) / board.name, references,
                                      numpy_outputs, timeout_s=timeout_s)
            for board in tqdm(boards, desc="boards", unit="board", leave=False)}


def build_and_run(generated: GeneratedC, board: Board, images: list[np.ndarray], output_dir: Path,
                  references: list[np.ndarray] | None, numpy_outputs: list[np.ndarray] | None = None, *,
                  run: bool = True, timeout_s: float = qemu.DEFAULT_TIMEOUT_S, sanitize: bool = False,
                  step=lambda name: None) -> DeployResult:
    """Write ``generated`` as ``board``'s project in ``output_dir``, build, prove float-free and (``run``) run
    it in QEMU on ``images``, compared with ``references`` (TVM host) and ``numpy_outputs``; measure."""
    program = generated.program
    check_images(images, program)
    image_t, output_t = program.tensors[program.input_index], program.tensors[program.output_index]
    report = {**generated.report, "target": board.name, "board": board.description,
              "memory_plan": check_memory(program, generated.plan, board)}
    with atomic_directory(output_dir) as staging:
        write_project(staging, board, generated.sources, np.stack(images), image_t.dtype, output_t.dtype, report)
        step("write")
        elf = qemu.build_firmware(staging, board)
        report["size"] = measure.section_sizes(board, elf)
        stack = measure.stack_usage(staging / "obj")
        report["stack_bytes_max_function"] = max(stack.values(), default=0)
        report["stack_bytes_per_function"] = stack
        check_stack(stack, board)
        step("build")
        floating = generated.report["precision"] == "fp32"
        report["float_free"] = ({"ok": None, "not_applied": "fp32 comparison build: floating point on purpose"}
                                if floating else proofs.prove_float_free(board, elf))
        step("prove")
        if run:
            counts = staging / "insn_counts.txt"
            text = qemu.run_firmware(board, elf, timeout_s, measure.plugin_path(), counts)
            outputs = qemu.parse_outputs(text, output_t.dtype, output_t.shape)
            padded = outputs + [None] * (len(images) - len(outputs))
            report["run"] = (_compare_float if floating else _compare)("tvm-llvm-host", padded, references)
            report["run"]["images"] = len(images)
            if numpy_outputs is not None:
                report["run_vs_numpy"] = _compare("numpy", outputs, numpy_outputs)
            if sanitize:
                sanitized, reports = host.sanitized_outputs(staging / "src", images, output_t.dtype, output_t.shape)
                report["host_sanitizers"] = {"reports": reports, **_compare("tvm-llvm-host", sanitized, references)}
            step("run")
            per_symbol = measure.instructions_per_symbol(board, elf, counts)
            # The network: everything but the test runner and the startup code, i.e. kernels, isegmenter_run,
            # micro-kernels and the library helpers they call (soft-float, libm, 64-bit division).
            library = {Path(name).stem for name in generated.sources}
            runner = [o for o in (staging / "obj").glob("*.o") if o.stem not in library]
            runner_functions = measure.defined_functions(board, runner)
            network = {k: v for k, v in per_symbol.items() if k not in runner_functions}
            report["instructions"] = {
                "total_program": sum(per_symbol.values()),
                "network_per_image": sum(network.values()) // len(images),
                "per_kernel_per_image": {k: v // len(images) for k, v in network.items()},
                "note": "exact retired instructions (QEMU TCG plugin, -icount shift=0), not cycles",
            }
            step("measure")
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.md").write_text(markdown_report(report))
    return DeployResult(output_dir, report, outputs if run else None)


def markdown_report(report: dict) -> str:
    """The human-readable summary of ``report.json``."""
    memory, size = report["memory_plan"], report.get("size", {})
    lines = [
        f"# {report['model']} on {report['target']}", "",
        f"- board: {report['board']}",
        f"- input {report['input']['dtype']}{report['input']['shape']} -> output "
        f"{report['output']['dtype']}{report['output']['shape']}",
        f"- arena {memory['arena_bytes']} B (lower bound {memory['arena_lower_bound_bytes']} B, "
        f"ratio {memory['arena_ratio']}), weights {memory['weights_bytes']} B",
        f"- flash {size.get('flash_bytes')} B, RAM {size.get('ram_bytes')} B (incl. reserved stack), "
        f"largest stack frame {report.get('stack_bytes_max_function')} B",
        f"- float-free proofs: " + ({True: "pass", False: "FAIL"}.get(report["float_free"]["ok"])
                                    or f"not applied ({report['float_free'].get('not_applied')})"),
        f"- MACs per image: {report['total_macs']}",
        f"- tuning log: {report['tuning_log'] or 'none'}; tuned kernels: {len(report['tuned_kernels'])} of "
        f"{len({k['name'] for k in report['kernels']})}; MVE-tensorized kernels: {len(report['tensorized_kernels'])}"
        + "".join(f"\n  - warning: {w}" for w in report['tuning_warnings']),
    ]
    if "run" in report:
        lines.append(f"- bit-exact vs TVM host build on {report['run']['images']} image(s): {report['run']['bit_exact']}")
        if "argmax_identical" in report["run"]:
            lines.append(f"- fp32 vs TVM host float build: argmax identical {report['run']['argmax_identical']}, "
                         f"max |difference| {report['run']['max_abs_diff']}")
        instructions = report["instructions"]
        lines += ["", f"## Instructions per image: {instructions['network_per_image']}", "",
                  "| kernel | tuned | calls | instructions (all calls) | MACs (all calls) | MACs / instruction "
                  "| weight bytes | activation bytes in+out (all calls) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        calls, macs, weights, activations = Counter(), Counter(), Counter(), Counter()
        for kernel in report["kernels"]:
            calls[kernel["name"]] += 1
            macs[kernel["name"]] += kernel["macs"]
            weights[kernel["name"]] += kernel["weight_bytes"]
            activations[kernel["name"]] += kernel["activation_bytes"]
        tuned = set(report["tuned_kernels"])
        lines += [f"| {k if len(k) <= 80 else k[:77] + '...'} | {'yes' if k in tuned else ''} | {calls[k]} | {v} | "
                  f"{macs[k]} | {macs[k] / v if v else 0:.3f} | {weights[k]} | {activations[k]} |"
                  for k, v in instructions["per_kernel_per_image"].items()]
    return "\n".join(lines) + "\n"
