"""segmenter.evaluate.miou on hand-computed cases."""
import math

import numpy as np
import pytest

from segmenter.evaluate import confusion_matrix, miou


def test_perfect_prediction():
    label = np.array([[0, 1], [2, 2]])
    result = miou(label, label, 3)
    assert result["miou"] == 1.0 and result["pixel_accuracy"] == 1.0
    assert result["per_class_iou"] == [1.0, 1.0, 1.0]


def test_hand_computed_ious():
    label = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    # class 0: hits 2, union 3; class 1: hits 1, union 3; class 2: hits 1, union 2.
    result = miou(pred, label, 3)
    np.testing.assert_allclose(result["per_class_iou"], [2 / 3, 1 / 3, 1 / 2])
    assert result["miou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)


def test_iou_is_over_the_whole_set_not_averaged_per_image():
    label = np.array([[1, 1, 1, 1], [1, 0, 0, 0]])
    pred = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
    # class 1 over both images: hits 4, union 5 (per-image averaging would give (1 + 0) / 2).
    assert miou(pred, label, 2)["per_class_iou"][1] == pytest.approx(4 / 5)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    result = miou(pred, label, 3)
    assert math.isnan(result["per_class_iou"][2])
    assert result["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_false_positive_of_an_absent_class_counts_as_zero():
    label = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 2])
    result = miou(pred, label, 3)
    assert result["per_class_iou"][2] == 0.0 and result["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_confusion_matrix_rows_are_true_classes():
    counts = confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), 2)
    np.testing.assert_array_equal(counts, [[1, 1], [0, 1]])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="outside"):
        miou(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="pixels"):
        miou(np.zeros(3, int), np.zeros(4, int), 2)
