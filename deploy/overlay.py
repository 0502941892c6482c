"""``overlay.png``: input | float prediction | device prediction | ground truth, side by side."""
from pathlib import Path

import numpy as np

# One colour per class id (background first); ids past the table wrap around.
PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60)],
                   dtype=np.uint8)
SCALE = 4
GAP = 4


def colorize(class_map: np.ndarray) -> np.ndarray:
    """uint8 [H,W] class ids -> RGB [H,W,3]."""
    return PALETTE[class_map.astype(np.int64) % len(PALETTE)]


def label_for(image_path: Path) -> np.ndarray | None:
    """The ground-truth label shipped beside an image (``<stem>_label.png``), if there is one."""
    from PIL import Image

    label_path = image_path.with_name(f"{image_path.stem}_label.png")
    if not label_path.is_file():
        return None
    with Image.open(label_path) as label:
        return np.asarray(label.convert("L"), dtype=np.uint8)


def write_overlay(path: Path, image: np.ndarray, float_map: np.ndarray, device_map: np.ndarray,
                  label: np.ndarray | None) -> None:
    """Write the panels (RGB uint8 [H,W,3] image, [H,W] class maps; a grey panel for a missing label)."""
    from PIL import Image

    height, width = device_map.shape
    truth = colorize(label) if label is not None else np.full((height, width, 3), 128, np.uint8)
    panels = [image, colorize(float_map), colorize(device_map), truth]
    canvas = np.full((height * SCALE, len(panels) * (width * SCALE + GAP) - GAP, 3), 255, np.uint8)
    for index, panel in enumerate(panels):
        big = panel.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
        left = index * (width * SCALE + GAP)
        canvas[:, left:left + width * SCALE] = big
    Image.fromarray(canvas).save(path)
