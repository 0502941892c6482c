"""The committed reference Segmenter through both import paths: float logits match the source runtime.

assets/model/segmenter.onnx (vs onnxruntime) and segmenter.pt2 (vs the torch.export program),
imported with frontend.load, built with tvm.compile(..., "llvm"), run on the committed test images.
"""
import functools

import numpy as np
import pytest
import tvm
from tvm import relax

import frontend
import segdata
from common.paths import MODEL_DIR

MAX_ABS_LOGIT_ERROR = 1e-4


@functools.lru_cache(maxsize=None)
def _load(name):
    return frontend.load(MODEL_DIR / name)


@pytest.fixture(scope="module")
def images():
    rgb, _labels, _names = segdata.load_committed()
    return [np.ascontiguousarray(im.transpose(2, 0, 1)[None].astype("float32")) for im in rgb]


def _onnx_reference(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _torch_reference(path):
    import torch

    module = torch.export.load(str(path)).module()
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


@pytest.fixture(scope="module", params=["segmenter.onnx", "segmenter.pt2"])
def imported(request):
    path = MODEL_DIR / request.param
    reference = _onnx_reference(path) if path.suffix == ".onnx" else _torch_reference(path)
    model = _load(request.param)
    vm = relax.VirtualMachine(tvm.compile(model.mod, "llvm"), tvm.cpu())
    params = [tvm.runtime.tensor(p) for p in model.params]
    run = lambda x: vm["main"](tvm.runtime.tensor(x), *params).numpy()  # noqa: E731
    return model, run, reference


def test_logits_and_argmax_match_source_runtime(imported, images):
    _model, run, reference = imported
    for x in images:
        ours, expected = run(x), reference(x)
        assert ours.shape == expected.shape
        assert np.max(np.abs(ours - expected)) <= MAX_ABS_LOGIT_ERROR
        np.testing.assert_array_equal(ours.argmax(1), expected.argmax(1))


def test_graph_is_canonical(imported):
    model, _run, _reference = imported
    ops = model.notes["relax_ops"]
    assert model.notes["non_canonical_ops"] == []
    assert ops["relax.nn.gelu"] >= 1 and ops["relax.nn.layer_norm"] >= 1 and ops["relax.nn.softmax"] >= 1
    assert model.input_shape == (1, 3, 64, 64) and model.input_dtype == "float32"
    assert len(model.mod["main"].params) == 1 + len(model.params)


def test_both_sources_give_the_same_compute_ops():
    """ONNX and torch.export differ in reshapes, not in the ops that carry the arithmetic."""
    compute = ("relax.nn.conv2d", "relax.matmul", "relax.nn.gelu", "relax.nn.layer_norm", "relax.nn.softmax",
               "relax.image.resize2d", "relax.add", "relax.multiply", "relax.divide", "relax.subtract")
    censuses = [_load(name).notes["relax_ops"] for name in ("segmenter.onnx", "segmenter.pt2")]
    onnx_ops, torch_ops = ({op: census.get(op, 0) for op in compute} for census in censuses)
    assert onnx_ops == torch_ops


def test_canonicalize_is_idempotent(imported):
    from frontend.canonicalize import canonicalize

    model, _run, _reference = imported
    again = canonicalize(model)
    tvm.ir.assert_structural_equal(again.mod, model.mod, map_free_vars=True)
    assert len(again.params) == len(model.params)
    for ours, theirs in zip(again.params, model.params):
        np.testing.assert_array_equal(ours, theirs)
