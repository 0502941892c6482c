"""Segmentation metrics (numpy only) and ``python -m segmenter.evaluate``: the reference model on the test split.

IoU is computed over the whole set (one confusion matrix over all pixels), as in Segmenter/mmseg.
A class absent from both prediction and label gets IoU NaN and is left out of the mean.
"""
import argparse
import json

import numpy as np


def confusion_matrix(pred, label, num_classes):
    """Counts int64 [num_classes, num_classes]: rows = true class, columns = predicted class."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if pred.shape != label.shape:
        raise ValueError(f"pred has {pred.size} pixels but label has {label.size}")
    for name, values in (("pred", pred), ("label", label)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds values outside 0..{num_classes - 1}")
    return np.bincount(label * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(pred, label, num_classes):
    """Class maps (any equal shapes) -> {"miou", "per_class_iou" [num_classes], "pixel_accuracy"}."""
    counts = confusion_matrix(pred, label, num_classes)
    hits = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
    return {"miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
            "per_class_iou": [float(v) for v in iou],
            "pixel_accuracy": float(hits.sum() / max(counts.sum(), 1))}


def predict(model, images, batch_size=100):
    """Class map uint8 [N,H,W] of a torch model on images uint8 [N,H,W,3] (raw pixels)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2).float()
            out.append(model(batch).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def format_table(metrics, class_names):
    """Markdown table of per-class IoU, mIoU and pixel accuracy."""
    rows = ["| class | IoU |", "|---|---|"]
    rows += [f"| {name} | {iou:.3f} |" for name, iou in zip(class_names, metrics["per_class_iou"])]
    rows += [f"| **mIoU** | **{metrics['miou']:.3f}** |", f"| pixel accuracy | {metrics['pixel_accuracy']:.3f} |"]
    return "\n".join(rows)


def main():
    import torch

    import segdata
    from segmenter.model import load_reference

    parser = argparse.ArgumentParser(description="Float mIoU of the reference Segmenter on a data split.")
    parser.add_argument("--split", default="test", choices=segdata.SPLITS)
    parser.add_argument("-n", type=int, default=None, help="first n scenes only (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args()
    torch.set_num_threads(2)
    images, labels = segdata.load_split(args.split, args.n)
    metrics = miou(predict(load_reference(), images), labels, len(segdata.CLASSES))
    if args.json:
        print(json.dumps({"split": args.split, "n": len(images), **metrics}, indent=1))
    else:
        print(f"{args.split} split, {len(images)} scenes\n\n" + format_table(metrics, segdata.CLASSES))


if __name__ == "__main__":
    main()
