"""``python -m deploy.build``: float model -> integer-only C firmware for a board, run in QEMU.

Examples::

    python -m deploy.build --list-targets
    python -m deploy.build --target cortex-m4 --model assets/model/segmenter.onnx --image assets/images/test_000.png
    python -m deploy.build --target riscv32 --example toy        # the deploy self-check network
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.paths import BUILD_DIR, IMAGES_DIR, MODEL_DIR
from targets import BOARDS, DEFAULT_TARGET, describe_boards, get_board

MODEL_SUFFIXES = (".onnx", ".pt2", ".tflite")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.build", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"board ({', '.join(BOARDS)})")
    parser.add_argument("--list-targets", action="store_true", help="print the board table and exit")
    parser.add_argument("--model", type=Path, help=f"float model (.onnx/.pt2/.tflite); default: the one in {MODEL_DIR}")
    parser.add_argument("--example", choices=["toy"], help="deploy a built-in integer network instead of --model")
    parser.add_argument("--image", type=Path, nargs="+", help="input image(s) to run on the board (PNG)")
    parser.add_argument("--calibration-image", type=Path, help="the single image used to calibrate scales")
    parser.add_argument("--output", type=Path, help="project directory (default: build/<target>)")
    parser.add_argument("--no-run", action="store_true", help="write and compile the project, do not run QEMU")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    tuning = parser.add_mutually_exclusive_group()
    tuning.add_argument("--tuning-log", type=Path,
                        help="schedules tuning log directory (default: the committed one in assets/tuning/, if any)")
    tuning.add_argument("--no-tuning", action="store_true", help="default schedules only, no tuning log")
    parser.add_argument("--timeout", type=float, default=120.0, help="QEMU wall-clock limit in seconds")
    return parser.parse_args(argv)


def default_model() -> Path:
    models = sorted(p for p in MODEL_DIR.glob("*") if p.suffix in MODEL_SUFFIXES) if MODEL_DIR.is_dir() else []
    if not models:
        raise UserError(f"no --model given and no model in {MODEL_DIR}; pass --model PATH or run `make setup`")
    return models[0]


def default_images() -> list[Path]:
    """The shipped test images (the first calibrates, the second is run) when none are given."""
    images = sorted(IMAGES_DIR.glob("test_*[0-9].png")) if IMAGES_DIR.is_dir() else []
    if not images:
        raise UserError(f"no --image given and no test images in {IMAGES_DIR}; pass --image PATH")
    return images


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        if args.list_targets:
            print(describe_boards())
            return 0
        return _build(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace) -> int:
    from deploy import flow
    from deploy.flow import load_image
    from deploy.tuning import choose_log

    board = get_board(args.target)
    floating = args.precision == "fp32"
    if board.fpu and not floating:
        raise UserError(flow.FLOAT_BOARD_ERROR.format(board=board.name))
    if floating and args.example:
        raise UserError("--precision fp32 deploys the float model; pass --model (or none: the shipped one), "
                        "not --example")
    output = args.output or BUILD_DIR / board.name
    if args.tuning_log is not None and not args.tuning_log.is_dir():
        raise UserError(f"--tuning-log {args.tuning_log}: no such directory; give a `python -m schedules.tune` log")
    model_path = None
    if args.example == "toy":
        from deploy.examples import toy_segmenter, toy_segmenter_reference

        mod, reference, name = toy_segmenter(), toy_segmenter_reference, "toy-integer-segmenter"
        input_shape = (1, 16, 16, 3)
    elif floating:
        model_path = args.model or default_model()
        float_model = flow.float_model(model_path)
        mod, reference, name = float_model.mod, None, f"{model_path.stem}-fp32"
        input_shape = float_model.image_shape
    else:
        model_path = args.model or default_model()
        calibration = args.calibration_image or default_images()[0]
        quantized = flow.integer_module(model_path, calibration)
        mod, reference, name = quantized.mod, quantized.reference, model_path.stem
        input_shape = tuple(quantized.input_shape)
    image_paths = args.image or ([] if args.example else default_images()[1:2] or default_images())
    if image_paths:
        images = [load_image(p, input_shape) for p in image_paths]
    else:
        images = [np.random.default_rng(seed).integers(0, 256, input_shape, dtype=np.uint8) for seed in (0, 1)]
    if floating:
        images = float_model.inputs(images)
    tuning = choose_log(model_path, board.name, args.tuning_log, args.no_tuning or floating)
    result = flow.deploy_module(mod, board.name, images, output, run=not args.no_run, numpy_reference=reference,
                                model_name=name, tuning_log=tuning.log_dir, tuning_model_hash=tuning.model_hash,
                                timeout_s=args.timeout, precision=args.precision)
    if result.outputs and model_path is not None and not floating:
        _write_overlay(result, model_path, image_paths[0], images[0])
    print(f"wrote {result.directory} ({board.name})")
    print((result.directory / "report.md").read_text())
    if not floating and not result.report["float_free"]["ok"]:
        print("error: the firmware is not float-free; see report.json", file=sys.stderr)
        return 1
    matches = result.report.get("run", {}).get("argmax_identical") if floating else result.bit_exact
    if not args.no_run and not matches:
        print("error: board output differs from the TVM host build; see report.json", file=sys.stderr)
        return 1
    return 0


def _write_overlay(result, model_path: Path, image_path: Path, image: np.ndarray) -> None:
    """``overlay.png`` for the first image: input | float prediction (TVM host) | device | ground truth."""
    from deploy import flow, host
    from deploy.overlay import label_for, write_overlay

    float_model = flow.float_model(model_path)
    logits = host.tvm_host_outputs(float_model.mod, float_model.inputs([image]))[0]
    write_overlay(result.directory / "overlay.png", image.reshape(image.shape[-3:]),
                  logits.argmax(axis=1)[0].astype(np.uint8), result.outputs[0].reshape(logits.shape[2:]),
                  label_for(image_path))


if __name__ == "__main__":
    sys.exit(main())
