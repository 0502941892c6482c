"""The TFLite full-int8 peer of the accuracy benchmark: the TensorFlow port reproduces torch, the converted
model is int8 in every op, and the benchmark reports the peer as skipped (not a crash) without TensorFlow.

The TensorFlow tests need the `peers` extra (tensorflow-cpu, 1.3 GB), which `make setup` (and so CI) installs."""
import numpy as np
import pytest

import segdata
from relax_passes import benchmark, tflite_peer

MAX_ABS_DIFF = 1e-4
MATMUL_OPS = {"CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"}


@pytest.fixture(scope="module")
def reference():
    from segmenter.model import load_reference

    return load_reference()


@pytest.fixture(scope="module")
def images():
    return segdata.load_committed()[0][:2]


@pytest.fixture(scope="module")
def runner(reference):
    calibration, _ = segdata.load_split("train", 1)
    return tflite_peer.LiteRTRunner(tflite_peer.convert_full_int8(tflite_peer.tf_port(reference), calibration))


def test_port_matches_torch(reference, images):
    import torch

    forward = tflite_peer.tf_port(reference)
    for image in images:
        got = forward(image[None].astype(np.float32)).numpy()[0].transpose(2, 0, 1)
        with torch.no_grad():
            expected = reference(torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))).numpy()[0]
        assert float(np.abs(got - expected).max()) <= MAX_ABS_DIFF
        np.testing.assert_array_equal(got.argmax(0), expected.argmax(0))


def test_full_int8_model_is_int8_in_every_op(runner):
    assert (runner.input["dtype"], runner.output["dtype"]) == (np.uint8, np.int8)
    ops = runner.op_dtypes()
    assert MATMUL_OPS <= {name for name, _ in ops}
    for name, dtypes in ops:
        assert dtypes <= {"int8", "uint8", "int32"}, (name, dtypes)
        if name in MATMUL_OPS:
            assert "int8" in dtypes, name
    assert runner.float_ops() == []


def test_full_int8_class_map_is_close_to_float(reference, runner, images):
    forward = tflite_peer.tf_port(reference)
    for image in images:
        float_map = forward(image[None].astype(np.float32)).numpy()[0].argmax(-1)
        got = runner.class_map(image)
        assert got.shape == float_map.shape and got.dtype == np.uint8
        assert float(np.mean(got == float_map)) >= 0.85


def test_benchmark_reports_missing_tensorflow_as_skipped(monkeypatch):
    monkeypatch.setattr(tflite_peer, "tensorflow_missing", lambda: "tensorflow is not installed (pip ...)")
    peer = benchmark.tflite_int8_peer(None, None, None, None)
    assert peer == {"skipped": "tensorflow is not installed (pip ...)"}
    rows, notes = benchmark.tflite_int8_markdown(peer, 0.6)
    assert rows == [] and notes == ["TFLite full-int8 peer skipped: tensorflow is not installed (pip ...)"]
