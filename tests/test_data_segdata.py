"""The composed segmentation data: deterministic, disjoint splits, well-formed, committed scenes reproducible."""
import json

import numpy as np
import pytest

import segdata
from common.errors import UserError
from common.paths import IMAGES_DIR
from segdata import compose, sources

SCENES_PER_SPLIT = 300


def _sources(split, n=SCENES_PER_SPLIT):
    scenes = [compose.compose_scene(split, i, segdata.DEFAULT_SEED) for i in range(n)]
    backgrounds = {sources.BACKGROUNDS[split][s[2]] for s in scenes}
    items = {int(v) for s in scenes for v in s[3] if v >= 0}
    return backgrounds, items


def test_scene_is_a_pure_function_of_seed_split_index():
    a = compose.compose_scene("train", 7, 0)
    b = compose.compose_scene("train", 7, 0)
    c = compose.compose_scene("train", 7, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_split_is_generated_once_then_read_from_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(segdata, "CACHE_DIR", tmp_path)
    images, labels = segdata.load_split("test", 5)
    assert list(tmp_path.rglob("*.npz")), "the split was not cached"
    again_images, again_labels = segdata.load_split("test", 5)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    for i in range(5):
        image, label, _, _ = compose.compose_scene("test", i, segdata.DEFAULT_SEED)
        np.testing.assert_array_equal(images[i], image)
        np.testing.assert_array_equal(labels[i], label)


def test_splits_use_disjoint_items_and_photos():
    seen = {split: _sources(split) for split in segdata.SPLITS}
    for i, first in enumerate(segdata.SPLITS):
        for second in segdata.SPLITS[i + 1:]:
            assert not seen[first][0] & seen[second][0], f"{first} and {second} share a background photo"
            assert not seen[first][1] & seen[second][1], f"{first} and {second} share a Fashion-MNIST item"
    # Every split draws from its own Fashion-MNIST range.
    assert max(seen["train"][1]) < 50000 <= min(seen["val"][1]) <= max(seen["val"][1]) < 60000
    assert min(seen["test"][1]) >= sources.T10K_ID_OFFSET


def test_shapes_dtypes_and_label_range():
    images, labels = segdata.load_split("test")
    assert images.shape == (segdata.SPLIT_SIZES["test"], 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (segdata.SPLIT_SIZES["test"], 64, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(len(segdata.CLASSES)))
    assert (labels > 0).reshape(len(labels), -1).any(1).all(), "a scene without any object"
    assert 0.05 < (labels > 0).mean() < 0.5


def test_label_pixels_show_the_pasted_item_not_the_photo():
    # An object pixel is its tint times a shade of at least 0.35, so never near-black in all channels.
    images, labels = segdata.load_split("test", 50)
    assert images[labels > 0].max(axis=1).min() >= 0.35 * 0.75 * 255 - 1


def test_committed_scenes_match_the_generator():
    images, labels, names = segdata.load_committed()
    index = json.loads((IMAGES_DIR / "index.json").read_text())
    assert index["classes"] == list(segdata.CLASSES) and len(names) == len(index["images"]) >= 8
    for k, entry in enumerate(index["images"]):
        image, label, background, items = compose.compose_scene(entry["split"], entry["index"], index["seed"])
        np.testing.assert_array_equal(images[k], image)
        np.testing.assert_array_equal(labels[k], label)
        assert entry["background"] == sources.BACKGROUNDS["test"][background]
        assert entry["fashion_mnist_ids"] == [int(v) for v in items if v >= 0]


def test_bad_split_and_size_are_user_errors():
    with pytest.raises(UserError, match="unknown split"):
        segdata.load_split("training")
    with pytest.raises(UserError, match="out of range"):
        segdata.load_split("test", 10**6)
