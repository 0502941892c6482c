"""Offline segmentation data: Fashion-MNIST items on real photos, 64x64 RGB, per-pixel classes.

``load_split("train" | "val" | "test", n=None)`` returns (images uint8 [N,64,64,3], labels uint8
[N,64,64]); splits are generated once per seed and cached as npz under ``common.paths.CACHE_DIR``.
``load_committed()`` reads the few test scenes shipped in ``assets/images`` (no generation).
See docs/data.md for the data card.
"""
import json

import numpy as np
from PIL import Image

from common.errors import UserError
from common.paths import CACHE_DIR, IMAGES_DIR
from segdata.compose import CLASSES, IMAGE_SIZE, SPLITS, compose_scene

__all__ = ["CLASSES", "IMAGE_SIZE", "SPLITS", "SPLIT_SIZES", "DEFAULT_SEED", "load_split", "load_sources",
           "load_committed"]

SPLIT_SIZES = {"train": 20000, "val": 1000, "test": 1000}
DEFAULT_SEED = 0
FORMAT_VERSION = 1  # bump when the composition changes, so stale caches are not reused


def _cache_path(split, seed):
    return CACHE_DIR / "segdata" / f"{split}_seed{seed}_n{SPLIT_SIZES[split]}_v{FORMAT_VERSION}.npz"


def _generate(split, seed):
    from tqdm import tqdm

    n = SPLIT_SIZES[split]
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    backgrounds = np.empty(n, dtype=np.int64)
    items = np.empty((n, 3), dtype=np.int64)
    for i in tqdm(range(n), desc=f"composing {split} split", unit="img", leave=False):
        images[i], labels[i], backgrounds[i], items[i] = compose_scene(split, i, seed)
    return {"images": images, "labels": labels, "background_ids": backgrounds, "item_ids": items}


def _load(split, seed):
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = _cache_path(split, seed)
    if path.is_file():
        with np.load(path) as data:
            return dict(data)
    data = _generate(split, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def _take(n, split):
    if n is None:
        return SPLIT_SIZES[split]
    if not 0 < n <= SPLIT_SIZES[split]:
        raise UserError(f"n={n} is out of range for split {split!r}; use 1..{SPLIT_SIZES[split]}")
    return n


def load_split(name, n=None, seed=DEFAULT_SEED):
    """First ``n`` scenes (all if None) of split ``name``: (images uint8 [N,64,64,3], labels uint8 [N,64,64])."""
    data = _load(name, seed)
    n = _take(n, name)
    return data["images"][:n], data["labels"][:n]


def load_sources(name, n=None, seed=DEFAULT_SEED):
    """Which real images built each scene: (background photo names [N], Fashion-MNIST global item ids [N,3], -1 = none)."""
    from segdata.sources import BACKGROUNDS

    data = _load(name, seed)
    n = _take(n, name)
    names = [BACKGROUNDS[name][b] for b in data["background_ids"][:n]]
    return names, data["item_ids"][:n]


def load_committed():
    """The test scenes shipped in assets/images: (images uint8 [K,64,64,3], labels uint8 [K,64,64], names [K])."""
    index_path = IMAGES_DIR / "index.json"
    if not index_path.is_file():
        raise UserError(f"{index_path} is missing; regenerate it with `python -m segdata.export_images`")
    index = json.loads(index_path.read_text())
    images = np.stack([np.asarray(Image.open(IMAGES_DIR / e["image"]).convert("RGB")) for e in index["images"]])
    labels = np.stack([np.asarray(Image.open(IMAGES_DIR / e["label"])) for e in index["images"]])
    return images, labels, [e["image"] for e in index["images"]]
