"""Train the reference Segmenter: ``python -m segmenter.train`` (seeded, 2 torch threads, CPU).

AdamW (weight decay on weight matrices only, not on norms, biases or embeddings) with linear
warm-up then cosine decay and gradient clipping, pixel-wise cross-entropy, random horizontal flips.
After every epoch it logs the mean loss and the val mIoU and saves the weights
(assets/model/segmenter.pt) and the recipe/metrics JSON (assets/model/segmenter.json), so an
interrupted run still leaves a usable model; the last epoch adds the test-split metrics.
``--init-from segmenter.pt`` continues from saved weights with a fresh warm-up + cosine cycle (a warm
restart); the JSON then keeps the earlier run's record under "init".
"""
import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import segdata
from common.paths import MODEL_DIR
from segmenter.evaluate import miou, predict
from segmenter.model import Segmenter, SegmenterConfig, count_macs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--train-n", type=int, default=None, help="first n training scenes (default: all)")
    parser.add_argument("--val-n", type=int, default=500, help="val scenes scored after each epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(MODEL_DIR))
    parser.add_argument("--init-from", default=None, help="start from these weights (their .json is kept in the record)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="run only the first N epochs of the --epochs schedule (reproduces a stopped run)")
    for field in dataclasses.fields(SegmenterConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=field.default)
    return parser.parse_args()


def learning_rate(step, total, args):
    """Linear warm-up to ``args.lr``, then cosine decay to 0."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    return 0.5 * args.lr * (1 + math.cos(math.pi * (step - args.warmup_steps) / max(total - args.warmup_steps, 1)))


def parameter_groups(model, weight_decay):
    """Weight decay for matrices and conv kernels only; LayerNorm gains, biases and embeddings are not decayed."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith("_embed")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith("_embed"))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def to_batch(images, labels, rng):
    """uint8 NHWC images / NHW labels -> float NCHW raw pixels and int64 labels, each mirrored with p=0.5."""
    flip = rng.random(len(images)) < 0.5
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    labels = np.where(flip[:, None, None], labels[:, :, ::-1], labels)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float(), torch.from_numpy(labels).long()


def save(model, record, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "segmenter.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(out_dir / "segmenter.pt")
    (out_dir / "segmenter.json").write_text(json.dumps(record, indent=1) + "\n")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = SegmenterConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SegmenterConfig)})
    model = Segmenter(config)
    init = None
    if args.init_from:
        init_path = Path(args.init_from)
        model.load_state_dict(torch.load(init_path, map_location="cpu", weights_only=True))
        init = {"weights": init_path.name, **json.loads(init_path.with_suffix(".json").read_text())}
    train_images, train_labels = segdata.load_split("train", args.train_n)
    val_images, val_labels = segdata.load_split("val", args.val_n)
    optimizer = torch.optim.AdamW(parameter_groups(model, args.weight_decay), lr=args.lr)
    steps_per_epoch = len(train_images) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    record = {
        "config": dataclasses.asdict(config),
        "recipe": {k: v for k, v in vars(args).items() if k not in ("out_dir", "init_from") and not hasattr(config, k)},
        "command": " ".join(["python -m segmenter.train", *sys.argv[1:]]),
        "train_scenes": len(train_images), "torch_version": torch.__version__,
        "params": sum(p.numel() for p in model.parameters()), "macs_per_image": count_macs(model),
        "classes": list(segdata.CLASSES), "history": [],
    }
    if init:
        record["init"] = init
    start, step = time.time(), 0
    epochs_run = min(args.stop_after or args.epochs, args.epochs)
    for epoch in range(epochs_run):
        model.train()
        order = rng.permutation(len(train_images))
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", mininterval=10)
        for b in bar:
            idx = np.sort(order[b * args.batch_size:(b + 1) * args.batch_size])
            images, labels = to_batch(train_images[idx], train_labels[idx], rng)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, args)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        model.eval()
        val = miou(predict(model, val_images), val_labels, len(segdata.CLASSES))
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_miou": val["miou"],
                 "val_pixel_accuracy": val["pixel_accuracy"], "wall_s": round(time.time() - start, 1)}
        record["history"].append(entry)
        tqdm.write(json.dumps(entry))
        record["wall_time_s"] = round(entry["wall_s"] + (init["wall_time_s"] if init else 0), 1)
        record["val"] = {"n": len(val_images), **val}
        if epoch + 1 == epochs_run:
            test_images, test_labels = segdata.load_split("test")
            record["test"] = {"n": len(test_images),
                              **miou(predict(model, test_images), test_labels, len(segdata.CLASSES))}
            tqdm.write(json.dumps({"test": record["test"]}))
        save(model, record, Path(args.out_dir))


if __name__ == "__main__":
    main()
