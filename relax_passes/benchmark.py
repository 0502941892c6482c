"""Accuracy benchmark: ``python -m relax_passes.benchmark`` -> build/accuracy.json, .md (and _sqnr.png).

Measures, on the held-out test split, the integer model made with ONE calibration image (the first
training scene) against the float model it came from: mIoU, per-class IoU, pixel agreement of the
class maps; the ablations (GELU variant, Shiftmax output dtype, 1 vs 32 calibration images,
observer); per-layer SQNR (also drawn as a PNG when matplotlib is installed); the size of the integer
constants; and, as a peer in the same run, ONNX Runtime's static int8 QDQ quantization (per-channel
weights) of the same model's ONNX export and, with the ``peers`` extra, TFLite full-int8
(``relax_passes.tflite_peer``). The float and integer Relax modules run with the TVM llvm VM, the
peers with onnxruntime and ai-edge-litert.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TVM_NUM_THREADS", "1")  # a shared machine: one core for the benchmark

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from tqdm import tqdm  # noqa: E402
from tvm import relax  # noqa: E402

import frontend  # noqa: E402
import segdata  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.paths import BUILD_DIR, MODEL_DIR  # noqa: E402
from segmenter.evaluate import miou  # noqa: E402

from . import integer_program as ip  # noqa: E402
from . import mediapipe  # noqa: E402
from .calibrate import with_all_intermediates  # noqa: E402
from .quantize import model_inputs, quantize_model  # noqa: E402

BASELINE = {"observer": "minmax", "gelu": "lambda_shift", "softmax_dtype": "int16", "headroom": True,
            "calibration_images": 1}
ABLATIONS = [{"gelu": "shift"}, {"gelu": "poly"}, {"softmax_dtype": "uint8"}, {"headroom": False},
             {"calibration_images": 32}, {"observer": "percentile"}, {"observer": "mse"}]
OPTIONS = ("observer", "gelu", "softmax_dtype", "headroom")
SQNR_IMAGES = 8


def predict(mod: tvm.IRModule, inputs, desc: str) -> np.ndarray:
    """Run ``main`` of ``mod`` (TVM llvm VM) on each input; class maps uint8 [N,H,W] (argmax of float logits)."""
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    maps = []
    for x in tqdm(inputs, desc=desc, unit="img", leave=False):
        out = vm["main"](tvm.runtime.tensor(x)).numpy()
        maps.append(out[0] if out.dtype == np.uint8 else out[0].argmax(0).astype(np.uint8))
    return np.stack(maps)


def scores(pred, labels, reference=None) -> dict:
    result = miou(pred, labels, len(segdata.CLASSES))
    if reference is not None:
        result["pixel_agreement_with_float"] = float(np.mean(pred == reference))
    return result


def per_layer_sqnr(model, images) -> list[dict]:
    """SQNR (dB) of each dequantized integer value against its float variable, over ``images``."""
    func, names = with_all_intermediates(model.float_mod["main"])
    vm = relax.VirtualMachine(tvm.compile(tvm.IRModule({"main": func}), "llvm"), tvm.cpu())
    signal, noise = {}, {}
    for image in images:
        floats = dict(zip(names, (t.numpy() for t in vm["main"](tvm.runtime.tensor(
            image.transpose(2, 0, 1)[None].astype(np.float32))))))
        values = model.intermediates(image[None])
        for op in model.program.ops:
            if not isinstance(op, (ip.Conv2d, ip.Dense, ip.Matmul, ip.Add, ip.NonLinear)):
                continue
            real = floats.get(op.source)
            if real is None or real.shape != values[op.out].shape:
                continue
            approx = values[op.out].astype(np.float64) * op.qtype.scale
            signal[op.out] = signal.get(op.out, 0.0) + float(np.sum(real.astype(np.float64) ** 2))
            noise[op.out] = noise.get(op.out, 0.0) + float(np.sum((real - approx) ** 2))
    rows = []
    for op in model.program.ops:
        if op.out in signal:
            db = 10 * np.log10(signal[op.out] / noise[op.out]) if noise[op.out] > 0 else float("inf")
            rows.append({"op": op.out, "kind": getattr(op, "kind", "") or type(op).__name__, "float_var": op.source,
                         "dtype": op.qtype.dtype, "sqnr_db": round(float(db), 2)})
    return rows


def size_report(model) -> dict:
    """Bytes of the integer constants as deployed — the constant tensors of ``deploy.lower`` that
    ``deploy.build`` writes as C arrays (0-d constants are immediates in the code) — vs the float32
    constants of the float module."""
    from deploy.lower import lower_to_static_program

    program = lower_to_static_program(model.mod)
    deployed = [program.tensors[i] for i in program.tensors_of_kind("const")]
    by_dtype = {}
    for tensor in deployed:
        by_dtype[tensor.dtype] = by_dtype.get(tensor.dtype, 0) + tensor.nbytes
    total = sum(by_dtype.values())
    weights = sum(op.weight.nbytes for op in model.program.ops if isinstance(op, (ip.Conv2d, ip.Dense)))
    float_weights = 4 * sum(op.weight.size for op in model.program.ops if isinstance(op, (ip.Conv2d, ip.Dense)))
    return {"deployed_constant_bytes": total, "deployed_constant_bytes_by_dtype": by_dtype,
            "float32_constant_bytes": model.float_weight_bytes,
            "ratio_all_constants": round(model.float_weight_bytes / total, 3),
            "int8_weight_tensor_bytes": weights, "float32_weight_tensor_bytes": float_weights,
            "ratio_weight_tensors": round(float_weights / weights, 3)}


def onnxruntime_peer(onnx_path, calibration, test_images, labels, float_maps) -> dict:
    """onnxruntime static int8 QDQ (per-channel weights, int8 activations) calibrated on ``calibration``."""
    import tempfile

    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: img.transpose(2, 0, 1)[None].astype(np.float32)} for img in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "int8.onnx")
        quantize_static(str(onnx_path), out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(out, options, providers=["CPUExecutionProvider"])
        maps = np.stack([session.run(None, {name: img.transpose(2, 0, 1)[None].astype(np.float32)})[0][0].argmax(0)
                         for img in tqdm(test_images, desc="onnxruntime int8", unit="img", leave=False)])
    return scores(maps.astype(np.uint8), labels, float_maps)


def tflite_int8_peer(calibration, test_images, labels, float_maps) -> dict:
    """TFLite full-int8 of the reference weights (relax_passes.tflite_peer), or {"skipped": why} without TensorFlow."""
    from segmenter.model import load_reference

    from . import tflite_peer

    missing = tflite_peer.tensorflow_missing()
    if missing:
        return {"skipped": missing}
    report = {f"{n}_calibration_images": {**scores(maps, labels, float_maps), **facts}
              for n, maps, facts in tflite_peer.full_int8_class_maps(load_reference(), calibration, test_images)}
    return {**report, "note": tflite_peer.NOTE}


def tflite_int8_markdown(peer, float_miou) -> tuple[list[str], list[str]]:
    """(accuracy table rows, notes under the table) for the TFLite full-int8 peer."""
    if "skipped" in peer:
        return [], [f"TFLite full-int8 peer skipped: {peer['skipped']}"]
    rows, notes = [], [peer["note"] + "."]
    for key, p in peer.items():
        if isinstance(p, dict):
            rows.append(f"| TFLite full-int8, {key.replace('_', ' ')} (not integer-only) | {p['miou']:.4f} | "
                        f"{p['miou'] / float_miou:.4f} | {p['pixel_agreement_with_float']:.4f} | "
                        f"{p['pixel_accuracy']:.4f} |")
            notes.append(f"TFLite full-int8, {key.replace('_', ' ')}: per-class IoU "
                         f"{', '.join(f'{c} {v:.4f}' for c, v in zip(segdata.CLASSES, p['per_class_iou']))}; "
                         f"ops reading/writing float tensors: {', '.join(p['ops_with_float_tensors']) or 'none'}.")
    return rows, notes


def run(model_path, n_test=None) -> dict:
    imported = frontend.load(model_path)
    test_images, labels = segdata.load_split("test", n_test)
    calibration, _ = segdata.load_split("train", 32)
    started = time.time()
    report = {"model": str(model_path), "test_split_images": len(test_images),
              "calibration": "first 1 (baseline) or 32 scenes of the train split", "configs": []}

    baseline = quantize_model(imported, calibration[:1], **{k: BASELINE[k] for k in OPTIONS})
    float_maps = predict(baseline.float_mod, model_inputs(imported, test_images), "float (TVM)")
    report["float"] = scores(float_maps, labels)
    for change in [{}] + ABLATIONS:
        config = {**BASELINE, **change}
        model = baseline if not change else quantize_model(
            imported, calibration[:config["calibration_images"]], **{k: config[k] for k in OPTIONS})
        maps = predict(model.mod, [img[None] for img in test_images], f"integer {change or 'baseline'}")
        result = scores(maps, labels, float_maps)
        result["miou_ratio_to_float"] = result["miou"] / report["float"]["miou"]
        report["configs"].append({**config, **result})
    report["per_layer_sqnr"] = per_layer_sqnr(baseline, test_images[:SQNR_IMAGES])
    report["size"] = size_report(baseline)
    onnx_path = MODEL_DIR / "segmenter.onnx"
    if onnx_path.is_file():
        report["onnxruntime_int8_qdq"] = {
            f"{n}_calibration_images": onnxruntime_peer(onnx_path, calibration[:n], test_images, labels, float_maps)
            for n in (1, 32)}
        report["onnxruntime_int8_qdq"]["note"] = ("ONNX Runtime QDQ: int8 conv/matmul, but LayerNorm, GELU and "
                                                  "softmax run in float (dequantize -> float op -> quantize): "
                                                  "not integer-only")
    report["tflite_int8"] = tflite_int8_peer(calibration, test_images, labels, float_maps)
    report["mediapipe_selfie"] = mediapipe.agreement_report()
    report["wall_s"] = round(time.time() - started, 1)
    return report


def markdown(report) -> str:
    f = report["float"]
    base = report["configs"][0]
    lines = [f"# Integer-only Segmenter: accuracy on the test split ({report['test_split_images']} scenes)", "",
             f"Model `{report['model']}`; calibration: {report['calibration']}.", "",
             "| model | mIoU | int/float mIoU | pixel agreement with float | pixel accuracy |", "|---|---|---|---|---|",
             f"| float (TVM llvm) | {f['miou']:.4f} | 1 | 1 | {f['pixel_accuracy']:.4f} |"]
    for c in report["configs"]:
        name = (f"integer, GELU {c['gelu']}, softmax {c['softmax_dtype']}, {c['observer']}"
                f"{'' if c['headroom'] else ' (no headroom)'}, {c['calibration_images']} calib. image(s)")
        lines.append(f"| {name} | {c['miou']:.4f} | {c['miou_ratio_to_float']:.4f} | "
                     f"{c['pixel_agreement_with_float']:.4f} | {c['pixel_accuracy']:.4f} |")
    for key, peer in report.get("onnxruntime_int8_qdq", {}).items():
        if isinstance(peer, dict):
            lines.append(f"| ONNX Runtime int8 QDQ per-channel, {key.replace('_', ' ')} (not integer-only) | "
                         f"{peer['miou']:.4f} | {peer['miou'] / f['miou']:.4f} | "
                         f"{peer['pixel_agreement_with_float']:.4f} | {peer['pixel_accuracy']:.4f} |")
    tflite_rows, tflite_notes = tflite_int8_markdown(report["tflite_int8"], f["miou"])
    lines += tflite_rows + [""] + tflite_notes
    lines += ["", "## Per-class IoU (baseline integer vs float)", "", "| class | float | integer |", "|---|---|---|"]
    lines += [f"| {name} | {a:.4f} | {b:.4f} |"
              for name, a, b in zip(segdata.CLASSES, f["per_class_iou"], base["per_class_iou"])]
    s = report["size"]
    lines += ["", "## Size", "",
              f"- all integer constants as deployed (the C arrays of `deploy.build`: weights, biases, multipliers, "
              f"shifts, tables, indices): {s['deployed_constant_bytes']} B "
              f"({', '.join(f'{d} {b} B' for d, b in sorted(s['deployed_constant_bytes_by_dtype'].items()))}) "
              f"vs float32 {s['float32_constant_bytes']} B: **{s['ratio_all_constants']}x** smaller",
              f"- weight tensors alone: int8 {s['int8_weight_tensor_bytes']} B vs float32 "
              f"{s['float32_weight_tensor_bytes']} B: {s['ratio_weight_tensors']}x",
              "", f"## Per-layer SQNR (baseline, first {SQNR_IMAGES} test scenes)", "",
              "| op | kind | float var | dtype | SQNR dB |", "|---|---|---|---|---|"]
    lines += [f"| {r['op']} | {r['kind']} | {r['float_var']} | {r['dtype']} | {r['sqnr_db']} |"
              for r in report["per_layer_sqnr"]]
    selfie = report["mediapipe_selfie"]
    agreement = ", ".join(f"{k} {v:.4f}" for k, v in selfie.get("photos", {}).items())
    lines += ["", "## Second model: MediaPipe selfie segmenter (int16 activations, 1 calibration photo)", "",
              f"skipped: {selfie['skipped']}" if "skipped" in selfie else
              f"Person-mask agreement integer vs float: {agreement} (calibration: {selfie['calibration']}; "
              "`python -m relax_passes.mediapipe` for ablations)."]
    lines += ["", f"Wall time: {report['wall_s']} s."]
    return "\n".join(lines) + "\n"


def plot_sqnr(rows, path) -> bool:
    """Per-layer SQNR bar chart (PNG); False when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["kind"] for r in rows})
    colours = {kind: plt.cm.tab10(i) for i, kind in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.bar(range(len(rows)), [r["sqnr_db"] for r in rows], color=[colours[r["kind"]] for r in rows])
    ax.set_xticks(range(len(rows)), [r["float_var"] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("Integer vs float, per layer (baseline, first test scenes)")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in kinds], labels=kinds, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL_DIR / "segmenter.pt2"), help="float model (.pt2/.onnx/.tflite)")
    parser.add_argument("-n", type=int, default=None, help="first n test scenes only (default: all)")
    parser.add_argument("--out-dir", default=str(BUILD_DIR))
    args = parser.parse_args()
    try:
        report = run(args.model, args.n)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "accuracy.json"), "w") as file:
        json.dump(report, file, indent=1)
    if not plot_sqnr(report["per_layer_sqnr"], os.path.join(args.out_dir, "accuracy_sqnr.png")):
        print("matplotlib is not installed: no accuracy_sqnr.png")
    text = markdown(report)
    with open(os.path.join(args.out_dir, "accuracy.md"), "w") as file:
        file.write(text)
    print(text)


if __name__ == "__main__":
    main()
