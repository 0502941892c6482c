"""``python -m deploy.benchmark``: the shipped Segmenter on the Cortex-M55 in five builds, one run.

- ``int8 untuned``: integer, deploy's default schedules (no tuning log, no micro-kernels);
- ``int8 tuned (shipped)``: what ``python -m deploy.build --target cortex-m55`` ships (the committed tuning log:
  tensorized DSP micro-kernels where the search chose them);
- ``int8 MVE tuned``: the ``cortex-m55-mve`` board with its committed tuning log (MVE micro-kernels);
- ``fp32 soft-float`` (``+nofp``) and ``fp32 FPU``: the float model through the same flow.

Exact retired instructions per image (QEMU TCG plugin, the network and every helper it calls), split into the
matmul/conv kernels (with the micro-kernels they call) and everything else, flash, RAM, MACs per instruction,
and the ratios. Writes ``build/benchmark.json`` and ``build/benchmark.md``; every project stays in
``build/benchmark/<build>/``. These are instruction counts, not cycles.
"""
import argparse
import json
import sys
from pathlib import Path

from common.errors import UserError
from common.paths import BUILD_DIR, IMAGES_DIR

UNTUNED, SHIPPED, MVE = "int8 untuned", "int8 tuned (shipped)", "int8 MVE tuned"
SOFT, FPU = "fp32 soft-float", "fp32 FPU"
BUILDS = {  # name -> (board, precision, tuned)
    UNTUNED: ("cortex-m55", "int8", False),
    SHIPPED: ("cortex-m55", "int8", True),
    MVE: ("cortex-m55-mve", "int8", True),
    SOFT: ("cortex-m55", "fp32", False),
    FPU: ("cortex-m55-fp", "fp32", False),
}
RATIOS = [  # (numerator build, denominator build, goal): "numerator needs goal-times the instructions"
    (SOFT, SHIPPED, 20.0), (FPU, SHIPPED, 2.0), (UNTUNED, SHIPPED, 2.0), (FPU, MVE, 4.0),
]


def mac_split(report: dict) -> tuple[int, int]:
    """Instructions per image in the kernels that multiply-accumulate (their GEMM micro-kernels are inlined into
    them), and in all the rest (requantize-only kernels, LayerNorm, Shiftmax, GELU, data movement, executor)."""
    per_kernel = report["instructions"]["per_kernel_per_image"]
    mac_kernels = {k["name"] for k in report["kernels"] if k["macs"] > 0}
    mac = sum(n for name, n in per_kernel.items() if name in mac_kernels)
    return mac, report["instructions"]["network_per_image"] - mac


def run_builds(model_path: Path, image: Path, output: Path) -> dict:
    from deploy import flow
    from deploy.tuning import choose_log

    quantized = flow.integer_module(model_path, IMAGES_DIR / "test_000.png")
    floating = flow.float_model(model_path)
    uint8_image = flow.load_image(image, tuple(quantized.input_shape))
    rows = {}
    for name, (board, precision, tuned) in BUILDS.items():
        if precision == "fp32":
            mod, images, reference = floating.mod, floating.inputs([uint8_image]), None
        else:
            mod, images, reference = quantized.mod, [uint8_image], quantized.reference
        tuning = choose_log(model_path, board, None, no_tuning=not tuned)
        report = flow.deploy_module(mod, board, images, output / name.replace(" ", "-"), numpy_reference=reference,
                                    model_name=model_path.stem, tuning_log=tuning.log_dir,
                                    tuning_model_hash=tuning.model_hash, precision=precision).report
        run = report["run"]
        mac_instructions, other_instructions = mac_split(report)
        rows[name] = {
            "board": board, "precision": precision,
            "instructions": report["instructions"]["network_per_image"],
            "macs": report["total_macs"],
            "macs_per_instruction": round(report["total_macs"] / report["instructions"]["network_per_image"], 4),
            "mac_kernel_instructions": mac_instructions, "other_instructions": other_instructions,
            "mac_kernel_macs_per_instruction": round(report["total_macs"] / mac_instructions, 4),
            "flash_bytes": report["size"]["flash_bytes"], "ram_bytes": report["size"]["ram_bytes"],
            "matches_host": run["argmax_identical"] if precision == "fp32" else run["bit_exact"],
            "float_free": report["float_free"]["ok"],
            "tuned_kernels": len(report["tuned_kernels"]), "tensorized_kernels": len(report["tensorized_kernels"]),
            "tuning_warnings": report["tuning_warnings"],
        }
    ratios = [{"ratio": f"{a} / {b}", "measured": round(rows[a]["instructions"] / rows[b]["instructions"], 2),
               "goal": goal} for a, b, goal in RATIOS]
    for ratio in ratios:
        ratio["met"] = ratio["measured"] >= ratio["goal"]
    return {"model": str(model_path), "image": str(image), "target": "cortex-m55", "builds": rows, "ratios": ratios,
            "unit": "retired instructions per image (QEMU TCG plugin, -icount shift=0), not cycles"}


def markdown(result: dict) -> str:
    lines = [f"# {Path(result['model']).name} on the Cortex-M55 ({Path(result['image']).name})", "",
             "| build | board | instructions / image | matmul/conv kernels (MACs/instr) | rest | MACs / instruction "
             "| flash B | RAM B | matches host | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, row in result["builds"].items():
        notes = []
        if row["tuned_kernels"]:
            notes.append(f"{row['tuned_kernels']} tuned kernels")
        if row["tensorized_kernels"]:
            notes.append(f"{row['tensorized_kernels']} kernels on the default micro-kernel tile")
        notes.append({True: "float-free proofs pass", False: "float-free proofs FAIL", None: "float on purpose"}
                     [row["float_free"]])
        lines.append(f"| {name} | {row['board']} | {row['instructions']:,} | {row['mac_kernel_instructions']:,} "
                     f"({row['mac_kernel_macs_per_instruction']}) | {row['other_instructions']:,} | "
                     f"{row['macs_per_instruction']} | "
                     f"{row['flash_bytes']:,} | {row['ram_bytes']:,} | {row['matches_host']} | {', '.join(notes)} |")
    lines += ["", "| ratio of instructions | measured | goal | met |", "|---|---:|---:|---|"]
    lines += [f"| {r['ratio']} | {r['measured']}x | {r['goal']}x | {'yes' if r['met'] else 'no'} |"
              for r in result["ratios"]]
    return "\n".join(lines + ["", result["unit"]]) + "\n"


def main(argv: list[str] | None = None) -> int:
    from deploy.build import default_images, default_model

    parser = argparse.ArgumentParser(prog="python -m deploy.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="float model file (default: the shipped one)")
    parser.add_argument("--image", type=Path, help="image to run (default: the second shipped test image)")
    parser.add_argument("--output", type=Path, default=BUILD_DIR, help="writes benchmark.{json,md} and benchmark/")
    args = parser.parse_args(argv)
    try:
        result = run_builds(args.model or default_model(), args.image or default_images()[1],
                            args.output / "benchmark")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = markdown(result)
    (args.output / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output / "benchmark.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
