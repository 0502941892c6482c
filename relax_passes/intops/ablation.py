"""Ablation of the integer non-linear ops against their float counterparts.

    python -m relax_passes.intops.ablation [--out build/intops_ablation]

For each op and input it reports the SQNR (dB), RMS and max abs error of the integer op versus the
float op applied to the same (dequantized) input, so only the op's own error is measured:

* GELU variants (``shift`` = I-ViT ShiftGELU, ``lambda_shift`` = λ-ShiftGELU, ``poly`` = I-BERT
  i-GELU, plus ``ideal`` = float GELU rounded to the same int8 output grid) on synthetic
  long-tailed inputs and on the reference Segmenter's fc1 outputs, with int8 and int32 inputs;
* Shiftmax on the model's attention scores (int8 q, k -> int32 q.k^T);
* I-LayerNorm on the model's LayerNorm inputs (int16).

Calibration follows I-Segmenter: one image (``test_000``); errors are measured on the other
committed images. Writes ``ablation.json``, ``ablation.md`` and (when matplotlib is installed, as
with the ``dev`` extra) ``gelu_error.png``, the GELU variants' error curves, into ``--out``.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from common.paths import BUILD_DIR, IMAGES_DIR
from relax_passes.intops.gelu import VARIANTS, calibrate_lambda, gelu_float, gelu_params, gelu_reference
from relax_passes.intops.layernorm import layernorm_params, layernorm_reference
from relax_passes.intops.shiftmax import OUTPUT_FRAC_BITS, shiftmax_params, shiftmax_reference

INPUT_LEVELS = {"int8": 127, "int32": 2**20}
SYNTHETIC_SIZE = 100_000


def error_stats(got: np.ndarray, expected: np.ndarray) -> dict:
    error = got.astype(np.float64) - expected
    noise = float(np.sum(error**2))
    return {"sqnr_db": round(10 * math.log10(float(np.sum(expected**2)) / noise), 2) if noise else math.inf,
            "rms": float(np.sqrt(np.mean(error**2))), "max_abs": float(np.max(np.abs(error)))}


def symmetric_scale(x: np.ndarray, levels: int) -> float:
    return float(np.max(np.abs(x))) / levels


def quantize(x: np.ndarray, scale: float, dtype: str) -> np.ndarray:
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return np.clip(np.round(x / scale), lo, hi).astype(dtype)


def gelu_rows(source: str, calibration: np.ndarray, test: np.ndarray) -> list[dict]:
    """One row per (input dtype, variant): error vs float GELU of the dequantized test input."""
    rows = []
    output_scale = float(gelu_float(calibration).max()) / 127
    for dtype, levels in INPUT_LEVELS.items():
        input_scale = symmetric_scale(calibration, levels)
        q_cal, q_test = quantize(calibration, input_scale, dtype), quantize(test, input_scale, dtype)
        expected = gelu_float(q_test.astype(np.float64) * input_scale)
        ideal = np.clip(np.floor(expected / output_scale + 0.5), -128, 127) * output_scale
        rows.append({"op": "gelu", "source": source, "input": dtype, "variant": "ideal",
                     **error_stats(ideal, expected)})
        for variant in VARIANTS:
            params = gelu_params(input_scale, output_scale, variant, calibration=q_cal)
            row = {"op": "gelu", "source": source, "input": dtype, "variant": variant,
                   **error_stats(gelu_reference(q_test, params) * output_scale, expected)}
            if variant == "lambda_shift":
                slope, split = calibrate_lambda(q_cal, input_scale, output_scale)
                row["lambda"] = {"slope": slope, "split": split}
            rows.append(row)
    return rows


def synthetic_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GELU-input-like distributions, from light to long-tailed."""
    n = 2 * SYNTHETIC_SIZE
    return {"normal(-0.5, 1)": rng.normal(-0.5, 1.0, n), "laplace(-0.4, 0.8)": rng.laplace(-0.4, 0.8, n),
            "student-t4 (0.9x - 0.4)": rng.standard_t(4, n) * 0.9 - 0.4,
            "student-t3 (0.9x - 0.4)": rng.standard_t(3, n) * 0.9 - 0.4}


def model_activations() -> list[dict]:
    """Per image: GELU inputs, attention (q, k, scale), LayerNorm (input, gamma, beta) of the reference model."""
    import torch
    from PIL import Image

    from segmenter.model import load_reference

    model = load_reference()
    index = json.loads((IMAGES_DIR / "index.json").read_text())
    images = [np.asarray(Image.open(IMAGES_DIR / entry["image"]).convert("RGB"), dtype=np.float32)
              for entry in index["images"]]
    if len(images) < 2:
        raise UserError(f"{IMAGES_DIR} needs at least 2 images; run `python -m segdata.export_images`")
    captured = {}
    hooks = []
    blocks = [(f"encoder.{i}", b) for i, b in enumerate(model.encoder)] + [
        (f"decoder.{i}", b) for i, b in enumerate(model.decoder)]
    for name, block in blocks:
        hooks.append(block.fc1.register_forward_hook(
            lambda m, i, o, name=name: captured.__setitem__(f"gelu {name}.mlp", o.numpy())))
        hooks.append(block.attn.qkv.register_forward_hook(
            lambda m, i, o, name=name, attn=block.attn:
            captured.__setitem__(f"softmax {name}.attn", (o.numpy(), attn))))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            hooks.append(module.register_forward_pre_hook(
                lambda m, i, name=name: captured.__setitem__(f"layernorm {name}", (i[0].numpy(), m))))
    per_image = []
    with torch.no_grad():
        for image in tqdm(images, desc="reference model", leave=False):
            captured.clear()
            model(torch.from_numpy(image).permute(2, 0, 1)[None])
            per_image.append(dict(captured))
    for hook in hooks:
        hook.remove()
    return per_image


def attention_scores(qkv: np.ndarray, attention) -> tuple[np.ndarray, np.ndarray, float]:
    batch, tokens, three_dim = qkv.shape
    heads = attention.heads
    split = qkv.reshape(batch, tokens, 3, heads, three_dim // 3 // heads).transpose(2, 0, 3, 1, 4)
    return split[0], split[1], attention.scale


def shiftmax_rows(name: str, calibration, tests) -> list[dict]:
    q_cal, k_cal, scale = attention_scores(*calibration)
    sq, sk = symmetric_scale(q_cal, 127), symmetric_scale(k_cal, 127)
    input_scale = sq * sk * scale

    def scores(qkv):
        q, k, _ = attention_scores(*qkv)
        qi, ki = quantize(q, sq, "int8").astype(np.int64), quantize(k, sk, "int8").astype(np.int64)
        return np.clip(qi @ ki.swapaxes(-1, -2), -(2**31), 2**31 - 1).astype(np.int32)

    calibration_scores = scores(calibration)
    acc = np.concatenate([scores(t) for t in tests])
    x = acc.astype(np.float64) * input_scale
    expected = np.exp(x - x.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    top2 = np.sort(expected, axis=-1)[..., -2:]
    rows = []
    for dtype, exp_order in (("uint8", 1), ("int16", 1), ("int16", 2)):
        frac_bits = OUTPUT_FRAC_BITS[dtype]
        params = shiftmax_params(input_scale, calibration=calibration_scores, output_dtype=dtype, exp_order=exp_order)
        got = shiftmax_reference(acc, params).astype(np.float64) * params.output_scale
        clear = top2[..., 1] - top2[..., 0] > 2 * params.output_scale
        ideal = np.clip(np.floor(expected * 2**frac_bits + 0.5), 0, np.iinfo(dtype).max) * params.output_scale
        stats = error_stats(got, expected)
        stats["row_sum_max_dev"] = float(np.max(np.abs(got.sum(axis=-1) - 1)))
        stats["argmax_agreement"] = float(np.mean(got.argmax(axis=-1)[clear] == expected.argmax(axis=-1)[clear]))
        if exp_order == 1:
            rows.append({"op": "shiftmax", "source": name, "input": "int32", "variant": f"ideal {dtype}",
                         **error_stats(ideal, expected)})
        rows.append({"op": "shiftmax", "source": name, "input": "int32",
                     "variant": f"shiftmax {dtype} exp order {exp_order} (n={params.octaves})", **stats})
    return rows


def float_layernorm(x, gamma, beta):
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-5) * gamma + beta


def layernorm_rows(name: str, calibration, tests) -> list[dict]:
    x_cal, module = calibration
    gamma, beta = module.weight.detach().numpy().astype(np.float64), module.bias.detach().numpy().astype(np.float64)
    input_scale = symmetric_scale(x_cal, 2**15 - 1)
    output_scale = float(np.max(np.abs(float_layernorm(x_cal.astype(np.float64), gamma, beta)))) / 127
    params = layernorm_params(input_scale, gamma, beta, output_scale)
    q = np.concatenate([quantize(x, input_scale, "int16") for x, _ in tests])
    expected = float_layernorm(q.astype(np.float64) * input_scale, gamma, beta)
    ideal = np.clip(np.floor(expected / output_scale + 0.5), -128, 127) * output_scale
    return [{"op": "layernorm", "source": name, "input": "int16", "variant": "ideal", **error_stats(ideal, expected)},
            {"op": "layernorm", "source": name, "input": "int16", "variant": "i-layernorm",
             **error_stats(layernorm_reference(q, params) * output_scale, expected)}]


def run_ablation() -> list[dict]:
    rows = []
    for name, x in tqdm(synthetic_inputs(np.random.default_rng(0)).items(), desc="synthetic GELU inputs"):
        rows += gelu_rows(f"synthetic {name}", x[:SYNTHETIC_SIZE], x[SYNTHETIC_SIZE:])
    per_image = model_activations()
    calibration, tests = per_image[0], per_image[1:]
    for key in tqdm(sorted(calibration), desc="model activations"):
        kind, name = key.split(" ", 1)
        if kind == "gelu":
            rows += gelu_rows(f"model {name}", calibration[key].reshape(-1),
                              np.concatenate([t[key].reshape(-1) for t in tests]))
        elif kind == "softmax":
            rows += shiftmax_rows(f"model {name}", calibration[key], [t[key] for t in tests])
        else:
            rows += layernorm_rows(f"model {name}", calibration[key], [t[key] for t in tests])
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["# Integer non-linear ops: error vs the float op", "",
             "Calibrated on one image (test_000), measured on the other committed images; synthetic inputs:",
             "calibrated on one half, measured on the other. `ideal` = the float op rounded to the same",
             "output grid.", "", "| op | source | input | variant | SQNR dB | RMS | max abs | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        notes = []
        if "lambda" in row:
            notes.append(f"slope {row['lambda']['slope']}, split {row['lambda']['split']}")
        if "row_sum_max_dev" in row:
            notes.append(f"row sum dev {row['row_sum_max_dev']:.3f}, "
                         f"argmax agree (clear rows) {row['argmax_agreement']:.3f}")
        lines.append(f"| {row['op']} | {row['source']} | {row['input']} | {row['variant']} | {row['sqnr_db']} | "
                     f"{row['rms']:.4g} | {row['max_abs']:.4g} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def plot_gelu_error(path: Path) -> bool:
    """Error vs x of each GELU variant before its output rounding; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return False
    x = np.linspace(-6.0, 6.0, 4001)
    input_scale, output_scale = 8.0 / 2**20, 8.0 / 127
    q = quantize(x, input_scale, "int32")
    calibration = quantize(np.random.default_rng(0).normal(-0.5, 1.0, SYNTHETIC_SIZE), input_scale, "int32")
    figure, axis = pyplot.subplots(figsize=(8, 4))
    for variant in VARIANTS:
        params = gelu_params(input_scale, output_scale, variant, calibration=calibration)
        trace = {}
        gelu_reference(q, params, trace)
        unrounded = trace["product"] * float(params.to_output.ratio) * output_scale  # xi * gate, in real units
        axis.plot(x, unrounded - gelu_float(x), label=variant, linewidth=1)
    axis.axhspan(-output_scale / 2, output_scale / 2, color="0.92", label="± 1/2 LSB of an 8/127 output grid")
    axis.set(xlabel="x", ylabel="x * gate(x) - GELU(x)",
             title="GELU variants before output rounding (λ calibrated on normal(-0.5, 1))")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD_DIR / "intops_ablation")
    args = parser.parse_args()
    rows = run_ablation()
    text = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "ablation.md").write_text(text)
    print(text)
    written = [args.out / "ablation.json", args.out / "ablation.md"]
    if plot_gelu_error(args.out / "gelu_error.png"):
        written.append(args.out / "gelu_error.png")
    print("wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
