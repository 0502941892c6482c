"""overlay.png: the four panels, and the main job writing it."""
import json

import numpy as np
from PIL import Image

from common.paths import IMAGES_DIR
from deploy.build import main
from deploy.overlay import GAP, PALETTE, SCALE, label_for, write_overlay


def test_panels_show_image_float_device_and_truth(tmp_path):
    image = np.full((2, 3, 3), 7, np.uint8)
    float_map = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    device_map = np.zeros((2, 3), np.uint8)
    label = np.full((2, 3), 2, np.uint8)
    write_overlay(tmp_path / "o.png", image, float_map, device_map, label)
    canvas = np.asarray(Image.open(tmp_path / "o.png"))
    assert canvas.shape == (2 * SCALE, 4 * 3 * SCALE + 3 * GAP, 3)
    panel = lambda i: canvas[::SCALE, i * (3 * SCALE + GAP):i * (3 * SCALE + GAP) + 3 * SCALE:SCALE]
    assert (panel(0) == 7).all()
    assert (panel(1) == PALETTE[float_map]).all()
    assert (panel(2) == PALETTE[0]).all()
    assert (panel(3) == PALETTE[2]).all()


def test_label_is_found_beside_a_shipped_image_only(tmp_path):
    assert label_for(IMAGES_DIR / "test_001.png").shape == (64, 64)
    assert label_for(tmp_path / "mine.png") is None


def test_main_job_is_bit_exact_and_writes_the_overlay(tmp_path):
    out = tmp_path / "m55"
    assert main(["--target", "cortex-m55", "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["bit_exact"] and report["float_free"]["ok"]
    overlay = np.asarray(Image.open(out / "overlay.png"))
    assert overlay.shape == (64 * SCALE, 4 * 64 * SCALE + 3 * GAP, 3)
