"""Export the reference Segmenter: ``python -m segmenter.export``.

Writes assets/model/segmenter.pt2 (``torch.export.save``) and assets/model/segmenter.onnx (opset 17,
TorchScript-based exporter with constant folding, so no onnxscript is needed), both with one
static input ``image`` float32 [1,3,64,64] of raw pixels and one output ``logits`` [1,C,64,64].
Both files are checked against the torch model on the committed test images before they replace
the previous ones.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import segdata
from common.errors import UserError
from common.paths import MODEL_DIR
from segmenter.model import load_reference

ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
MAX_ABS_DIFF = 1e-4


def committed_inputs():
    """The committed test images as float32 NCHW raw-pixel tensors [1,3,64,64], one per image."""
    images, _, _ = segdata.load_committed()
    return [torch.from_numpy(img).permute(2, 0, 1)[None].float().contiguous() for img in images]


def onnx_logits(path, image):
    """Run an ONNX file with onnxruntime on one [1,3,H,W] tensor."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]


def _check(name, produced, expected):
    diff = float(np.max(np.abs(produced - expected)))
    if diff > MAX_ABS_DIFF:
        raise UserError(f"{name} differs from the torch model by {diff:.2e} (> {MAX_ABS_DIFF}); not saving it")
    return diff


def export(model, out_dir=MODEL_DIR):
    """Write segmenter.pt2 and segmenter.onnx for ``model`` into ``out_dir``; return the max abs differences."""
    model = model.eval()
    inputs = committed_inputs()
    with torch.no_grad():
        expected = [model(x).numpy() for x in inputs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        pt2, onnx_path = Path(tmp) / "segmenter.pt2", Path(tmp) / "segmenter.onnx"
        torch.export.save(torch.export.export(model, (inputs[0],)), pt2)
        program = torch.export.load(pt2).module()
        with torch.no_grad():
            pt2_diff = max(_check("torch.export program", program(x).numpy(), e) for x, e in zip(inputs, expected))
        torch.onnx.export(model, (inputs[0],), onnx_path, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
        onnx_diff = max(_check("ONNX (onnxruntime)", onnx_logits(onnx_path, x), e) for x, e in zip(inputs, expected))
        pt2.replace(out_dir / pt2.name)
        onnx_path.replace(out_dir / onnx_path.name)
    return {"pt2_max_abs_diff": pt2_diff, "onnx_max_abs_diff": onnx_diff}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(MODEL_DIR))
    args = parser.parse_args()
    torch.set_num_threads(2)
    try:
        diffs = export(load_reference(), args.out_dir)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote segmenter.pt2 and segmenter.onnx (opset {ONNX_OPSET}) to {args.out_dir}; "
          f"max |diff| vs torch: pt2 {diffs['pt2_max_abs_diff']:.1e}, onnx {diffs['onnx_max_abs_diff']:.1e}")


if __name__ == "__main__":
    main()
