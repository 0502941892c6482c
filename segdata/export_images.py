"""Write the first test-split scenes to assets/images as PNGs plus index.json.

Run ``python -m segdata.export_images``. Images are RGB PNGs, labels are 8-bit greyscale PNGs whose
pixel values are class indices (see ``segdata.CLASSES``).
"""
import argparse
import json

from PIL import Image

import segdata
from common.paths import IMAGES_DIR

COMMITTED_COUNT = 8


def export(count=COMMITTED_COUNT, seed=segdata.DEFAULT_SEED):
    """Save ``count`` test scenes and their labels; return the index written."""
    images, labels = segdata.load_split("test", count, seed=seed)
    backgrounds, items = segdata.load_sources("test", count, seed=seed)
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(count):
        entry = {"image": f"test_{i:03d}.png", "label": f"test_{i:03d}_label.png", "split": "test", "index": i,
                 "background": backgrounds[i], "fashion_mnist_ids": [int(v) for v in items[i] if v >= 0]}
        Image.fromarray(images[i]).save(IMAGES_DIR / entry["image"])
        Image.fromarray(labels[i]).save(IMAGES_DIR / entry["label"])
        entries.append(entry)
    index = {"classes": list(segdata.CLASSES), "seed": seed, "format_version": segdata.FORMAT_VERSION,
             "image_shape": [segdata.IMAGE_SIZE, segdata.IMAGE_SIZE, 3], "images": entries}
    (IMAGES_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COMMITTED_COUNT)
    args = parser.parse_args()
    index = export(args.count)
    print(f"wrote {len(index['images'])} scenes to {IMAGES_DIR}")


if __name__ == "__main__":
    main()
