"""Real images the dataset is composed from: Fashion-MNIST items and scikit-image photos.

Everything is read from files installed by packages (no downloads):
Fashion-MNIST from Debian's ``dataset-fashion-mnist`` and background photos/textures from the
``scikit-image`` wheel's ``data`` folder.
"""
import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Global item ids: Fashion-MNIST train items keep their index, t10k items are offset by this.
T10K_ID_OFFSET = 60000

# Background photos per split; no photo is shared between splits (motorcycle_right is left out:
# it shows the same scene as motorcycle_left).
BACKGROUNDS = {
    "train": ("astronaut.png", "brick.png", "camera.png", "coffee.png", "grass.png",
              "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
              "retina.jpg", "page.png", "clock_motion.png"),
    "val": ("cell.png", "text.png", "coins.png"),
    "test": ("rocket.jpg", "gravel.png", "chelsea.png"),
}


def _read_idx(path, header_ints):
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"{path} not found; install it with `apt-get install dataset-fashion-mnist`") from None
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * header_ints)


@functools.lru_cache(maxsize=None)
def fashion_mnist(part):
    """Fashion-MNIST ``part`` ("train" or "t10k") as (images uint8 [N,28,28], labels uint8 [N])."""
    image_file, label_file = FASHION_MNIST_FILES[part]
    images = _read_idx(FASHION_MNIST_DIR / image_file, 4).reshape(-1, 28, 28)
    labels = _read_idx(FASHION_MNIST_DIR / label_file, 2)
    return images, labels


def skimage_data_dir():
    """The ``data`` folder inside the installed scikit-image package (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise UserError("scikit-image is not installed; run `pip install scikit-image`")
    return Path(spec.submodule_search_locations[0]) / "data"


@functools.lru_cache(maxsize=None)
def background(name):
    """Background photo ``name`` as an RGB PIL image."""
    path = skimage_data_dir() / name
    if not path.is_file():
        raise UserError(f"background photo {path} is missing; reinstall scikit-image (`pip install --force-reinstall scikit-image`)")
    with Image.open(path) as im:
        return im.convert("RGB")
