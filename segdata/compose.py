"""Compose 64x64 segmentation scenes: Fashion-MNIST items pasted onto crops of real photos.

Each scene is a random crop of one background photo (resized to 64x64, maybe mirrored and
darkened) with 1-3 Fashion-MNIST items pasted at random scale and position, each tinted with a
random colour. An item's pixels whose Fashion-MNIST intensity exceeds ``MASK_THRESHOLD`` form
its mask; they are drawn opaque (shaded by the intensity) and labelled with the item's class.
Later items cover earlier ones, in the image and in the label. Scene ``i`` of a split depends
only on (seed, split, i), so any prefix of a split is reproducible on its own.
"""
import functools

import numpy as np
from PIL import Image

from segdata import sources

IMAGE_SIZE = 64
CLASSES = ("background", "top", "trouser", "dress", "footwear", "bag")
# Fashion-MNIST label -> class index: T-shirt/top, pullover, coat, shirt -> top; sandal,
# sneaker, ankle boot -> footwear.
FASHION_TO_CLASS = np.array([1, 2, 1, 3, 1, 4, 1, 4, 5, 4], dtype=np.uint8)
MASK_THRESHOLD = 40
OBJECTS_PER_IMAGE = (1, 3)
OBJECT_SIZE = (22, 40)  # side of the pasted 28x28 item, pixels, inclusive
SPLITS = ("train", "val", "test")
# Fashion-MNIST part and item index range each split draws from (disjoint).
ITEM_POOLS = {"train": ("train", 0, 50000), "val": ("train", 50000, 60000), "test": ("t10k", 0, 10000)}


@functools.lru_cache(maxsize=None)
def item_pool(split):
    """(items uint8 [M,28,28], global ids int64 [M], class int [M]) of the split's item range."""
    part, start, stop = ITEM_POOLS[split]
    images, labels = sources.fashion_mnist(part)
    offset = sources.T10K_ID_OFFSET if part == "t10k" else 0
    ids = np.arange(start, stop) + offset
    return images[start:stop], ids, FASHION_TO_CLASS[labels[start:stop]]


@functools.lru_cache(maxsize=None)
def _pool_by_class(split):
    classes = item_pool(split)[2]
    return {c: np.flatnonzero(classes == c) for c in range(1, len(CLASSES))}


def _background(rng, name):
    photo = sources.background(name)
    width, height = photo.size
    side = int(rng.integers(IMAGE_SIZE, min(width, height) + 1))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    crop = photo.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=(left, top, left + side, top + side))
    image = np.asarray(crop, dtype=np.float32) * rng.uniform(0.5, 1.0)
    return image[:, ::-1] if rng.random() < 0.5 else image


def _tint(rng):
    colour = rng.uniform(0.2, 1.0, size=3)
    return colour / colour.max() * rng.uniform(0.75, 1.0) * 255.0


def compose_scene(split, index, seed):
    """Scene ``index`` of ``split``: (image uint8 [64,64,3], label uint8 [64,64], background id, item ids [3])."""
    rng = np.random.default_rng((seed, SPLITS.index(split), index))
    background_id = int(rng.integers(len(sources.BACKGROUNDS[split])))
    image = _background(rng, sources.BACKGROUNDS[split][background_id])
    label = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    item_ids = np.full(OBJECTS_PER_IMAGE[1], -1, dtype=np.int64)
    items, ids, _ = item_pool(split)
    for k in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))):
        cls = int(rng.integers(1, len(CLASSES)))
        pick = int(rng.choice(_pool_by_class(split)[cls]))
        size = int(rng.integers(OBJECT_SIZE[0], OBJECT_SIZE[1] + 1))
        y, x = (int(v) for v in rng.integers(0, IMAGE_SIZE - size + 1, size=2))
        item = np.asarray(Image.fromarray(items[pick]).resize((size, size), Image.BILINEAR), dtype=np.float32)
        if rng.random() < 0.5:
            item = item[:, ::-1]
        mask = item > MASK_THRESHOLD
        shade = (0.35 + 0.65 * item / 255.0)[..., None] * _tint(rng)
        region = image[y:y + size, x:x + size]
        region[mask] = shade[mask]
        label[y:y + size, x:x + size][mask] = cls
        item_ids[k] = ids[pick]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label, background_id, item_ids
