"""The reference Segmenter as TFLite: LiteRT and TVM's import of the exported file reproduce torch."""
import json

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from common.errors import UserError
from frontend.tflite_import import import_tflite
from segmenter.export import committed_inputs
from segmenter.model import RECIPE_PATH, WEIGHTS_PATH, Segmenter, SegmenterConfig, load_reference
from segmenter.tflite_export import TFLITE_PATH, export_tflite, litert_logits

MAX_ABS_DIFF = 1e-4


def _torch_logits(model):
    with torch.no_grad():
        return [model(x).numpy() for x in committed_inputs()]


def _tvm_logits(path):
    imported = import_tflite(path)
    assert imported.input_shape == (1, 3, 64, 64)  # the file keeps torch's NCHW raw-pixel interface
    vm = relax.VirtualMachine(tvm.compile(imported.mod, "llvm"), tvm.cpu())
    params = [tvm.runtime.tensor(p) for p in imported.params]
    return [vm["main"](tvm.runtime.tensor(x.numpy()), *params).numpy() for x in committed_inputs()]


def _assert_matches(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert float(np.abs(g - e).max()) <= MAX_ABS_DIFF
        np.testing.assert_array_equal(g.argmax(1), e.argmax(1))


@pytest.fixture(scope="module")
def seeded_export(tmp_path_factory):
    """A freshly initialised (seeded) Segmenter and its TFLite export: independent of training."""
    torch.manual_seed(0)
    model = Segmenter(SegmenterConfig()).eval()
    path = tmp_path_factory.mktemp("tflite") / "seeded.tflite"
    export_tflite(model, path)
    return model, path


def test_litert_runs_export_like_torch(seeded_export):
    model, path = seeded_export
    _assert_matches([litert_logits(path, x.numpy()) for x in committed_inputs()], _torch_logits(model))


def test_tvm_import_of_export_matches_torch(seeded_export):
    model, path = seeded_export
    _assert_matches(_tvm_logits(path), _torch_logits(model))


def test_committed_tflite_is_the_committed_reference():
    if not (WEIGHTS_PATH.is_file() and RECIPE_PATH.is_file()):
        pytest.fail(f"{WEIGHTS_PATH} is not committed: the reference model is missing")
    assert TFLITE_PATH.is_file(), "run `python -m segmenter.tflite_export`"
    expected = _torch_logits(load_reference())
    got = [litert_logits(TFLITE_PATH, x.numpy()) for x in committed_inputs()]
    for g, e in zip(got, expected, strict=True):
        assert float(np.abs(g - e).max()) <= MAX_ABS_DIFF, \
            "assets/model/segmenter.tflite is stale: run `python -m segmenter.tflite_export`"


def test_tflite_path_canonicalises_like_the_other_formats():
    """GELU and LayerNorm arrive as single ops, so relax_passes sees one vocabulary for every format."""
    import frontend

    census = frontend.load(TFLITE_PATH).notes
    assert census["non_canonical_ops"] == []
    config = SegmenterConfig(**json.loads(RECIPE_PATH.read_text())["config"])
    blocks = config.depth + config.decoder_depth
    assert census["relax_ops"]["relax.nn.gelu"] == blocks
    assert census["relax_ops"]["relax.nn.layer_norm"] == 2 * blocks + 3  # + encoder, decoder, mask norms


def test_unsupported_aten_op_is_named(tmp_path):
    class Clamped(Segmenter):
        def forward(self, image):
            return torch.clamp(super().forward(image), -1.0, 1.0)

    with pytest.raises(UserError, match=r"cannot export ATen op aten\.clamp\.default to TFLite"):
        export_tflite(Clamped(SegmenterConfig()), tmp_path / "clamped.tflite")
    assert not list(tmp_path.iterdir()), "a failed export left a file behind"
