"""frontend.load on small models written here: format detection, canonical result, one-line errors."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import frontend
from common.errors import UserError
from frontend.host_run import run_on_host


def _save_onnx(path, nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def _tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _relu_model(path, shape=(1, 3, 8, 8)):
    return _save_onnx(path, [helper.make_node("Relu", ["x"], ["y"])], [_tensor("x", shape)], [_tensor("y", shape)])


class TinySegmenter:
    """A ViT-like torch module (patch conv, attention, erf-GELU MLP, LayerNorm, nearest upsampling)."""

    @staticmethod
    def build():
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Net(nn.Module):
            def __init__(self, dim=16, classes=3):
                super().__init__()
                self.patch = nn.Conv2d(3, dim, 4, 4)
                self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
                self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
                self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
                self.head = nn.Linear(dim, classes)

            def forward(self, image):
                x = self.patch(image).flatten(2).transpose(1, 2)
                # Indexing, as segmenter/model.py does (torch.chunk exports run-time Slice bounds
                # that TVM's ONNX importer cannot resolve).
                qkv = self.qkv(self.norm1(x)).reshape(1, -1, 3, 16).permute(2, 0, 1, 3)
                q, k, v = qkv[0], qkv[1], qkv[2]
                x = x + self.proj(torch.softmax(q @ k.transpose(1, 2) * 0.25, dim=-1) @ v)
                x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
                masks = self.head(x).transpose(1, 2).reshape(1, -1, 4, 4)
                return F.interpolate(masks, scale_factor=4, mode="nearest")

        torch.manual_seed(0)
        for module in Net().modules():  # non-trivial LayerNorm affine parameters
            if isinstance(module, nn.LayerNorm):
                nn.init.normal_(module.weight, 1.0, 0.2)
                nn.init.normal_(module.bias, 0.0, 0.2)
        return Net().eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model exported to ONNX opset 13 (decomposed LayerNorm), opset 17 and .pt2."""
    import torch

    out = tmp_path_factory.mktemp("tiny")
    net = TinySegmenter.build()
    x = torch.rand(1, 3, 16, 16) * 255
    paths = {}
    for opset in (13, 17):
        paths[f"onnx{opset}"] = out / f"tiny{opset}.onnx"
        torch.onnx.export(net, (x,), paths[f"onnx{opset}"], opset_version=opset, dynamo=False, input_names=["image"])
    paths["pt2"] = out / "tiny.pt2"
    torch.export.save(torch.export.export(net, (x,)), paths["pt2"])
    with torch.no_grad():
        expected = net(x).numpy()
    return paths, x.numpy(), expected


@pytest.mark.parametrize("kind", ["onnx13", "onnx17", "pt2"])
def test_tiny_model_imports_canonical_and_exact(tiny, kind):
    paths, x, expected = tiny
    model = frontend.load(paths[kind])
    ops = model.notes["relax_ops"]
    assert ops["relax.nn.gelu"] == 1 and ops["relax.nn.layer_norm"] == 2 and ops["relax.nn.softmax"] == 1
    assert model.notes["non_canonical_ops"] == []
    assert model.source_format == ("torch" if kind == "pt2" else "onnx")
    assert model.input_shape == (1, 3, 16, 16)
    (logits,) = run_on_host(model.mod, x, *model.params)
    assert np.max(np.abs(logits - expected)) <= 1e-4


def test_weights_are_parameters_and_scalars_stay_inline(tiny):
    model = frontend.load(tiny[0]["pt2"])
    weight_params = model.mod["main"].params[1:]
    assert [tuple(int(d) for d in p.ty.shape) for p in weight_params] == [p.shape for p in model.params]
    assert "p_patch_weight" in [p.name for p in weight_params]
    assert all(p.ndim >= 1 for p in model.params)


def test_unknown_format(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    with pytest.raises(UserError, match=r"unknown model format '\.txt'.*\.onnx, \.pt2.*\.tflite"):
        frontend.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such model file"):
        frontend.load(tmp_path / "absent.onnx")


def test_truncated_onnx(tiny, tmp_path):
    data = tiny[0]["onnx17"].read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="not a readable ONNX model|no graph nodes") as err:
        frontend.load(path)
    assert "\n" not in str(err.value)


def test_truncated_pt2(tiny, tmp_path):
    data = tiny[0]["pt2"].read_bytes()
    path = tmp_path / "cut.pt2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable torch.export program") as err:
        frontend.load(path)
    assert "\n" not in str(err.value)


def test_pt2_that_is_not_a_zip(tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a zip archive"):
        frontend.load(path)


def test_unsupported_onnx_op_names_it_and_lists_supported(tmp_path):
    path = _save_onnx(tmp_path / "sin.onnx", [helper.make_node("Sin", ["x"], ["y"], name="my_sin")],
                      [_tensor("x", (1, 4))], [_tensor("y", (1, 4))])
    with pytest.raises(UserError, match=r"unsupported ONNX op\(s\) Sin; supported: Add, ArgMax") as err:
        frontend.load(path)
    assert "\n" not in str(err.value)


def test_bilinear_resize_is_refused(tmp_path):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", name="up")
    path = _save_onnx(tmp_path / "resize.onnx", [node], [_tensor("x", (1, 3, 4, 4))], [_tensor("y", (1, 3, 8, 8))],
                      [scales])
    with pytest.raises(UserError, match="'up' uses Resize mode 'linear'; only mode 'nearest'"):
        frontend.load(path)


def test_dynamic_onnx_input_needs_input_shape(tmp_path):
    path = _relu_model(tmp_path / "dyn.onnx", shape=("batch", 3, 8, 8))
    with pytest.raises(UserError, match=r"input 'x' has dynamic dim 0 \('batch'\); pass input_shape="):
        frontend.load(path)
    with pytest.raises(UserError, match="does not fit input 'x'"):
        frontend.load(path, input_shape=(1, 3, 9, 9))
    model = frontend.load(path, input_shape=(1, 3, 8, 8))
    x = np.linspace(-1, 1, 192, dtype="float32").reshape(1, 3, 8, 8)
    (y,) = run_on_host(model.mod, x, *model.params)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_two_inputs_are_refused(tmp_path):
    path = _save_onnx(tmp_path / "two.onnx", [helper.make_node("Add", ["a", "b"], ["y"])],
                      [_tensor("a", (1, 4)), _tensor("b", (1, 4))], [_tensor("y", (1, 4))])
    with pytest.raises(UserError, match=r"exactly one input tensor, it takes 2 \(a, b\)"):
        frontend.load(path)


def test_dynamic_pt2_input_needs_input_shape(tmp_path):
    import torch

    class Scale(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x) * 2.0

    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(Scale(), (torch.rand(2, 3, 4, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path / "dyn.pt2"
    torch.export.save(program, path)
    with pytest.raises(UserError, match=r"input 'x' has dynamic dim 0 .*pass input_shape="):
        frontend.load(path)
    model = frontend.load(path, input_shape=(1, 3, 4, 4))
    x = np.linspace(-1, 1, 48, dtype="float32").reshape(1, 3, 4, 4)
    (y,) = run_on_host(model.mod, x, *model.params)
    assert model.input_shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(y, np.maximum(x, 0) * 2)


def test_unsupported_torch_op_is_one_line(tmp_path):
    import torch

    class Fft(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()

    path = tmp_path / "fft.pt2"
    torch.export.save(torch.export.export(Fft(), (torch.rand(1, 8),)), path)
    with pytest.raises(UserError, match="TVM's torch.export importer failed") as err:
        frontend.load(path)
    assert "\n" not in str(err.value)


def test_command_line_describes_and_reports_errors(tmp_path, capsys):
    from frontend.__main__ import main

    path = _relu_model(tmp_path / "dyn.onnx", shape=("batch", 3, 8, 8))
    assert main([str(path), "--input-shape", "1,3,8,8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input"] == {"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}
    assert info["relax_ops"] == {"relax.nn.relu": 1} and info["non_canonical_ops"] == ["relax.nn.relu"]
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dynamic dim 0" in err and err.count("\n") == 1


def test_tanh_gelu_from_the_onnx_exporter_fuses(tmp_path):
    import torch
    import torch.nn.functional as F

    class TanhGelu(torch.nn.Module):
        def forward(self, x):
            return F.gelu(x * 1.5, approximate="tanh")

    x = torch.linspace(-4, 4, 16).reshape(1, 16)
    path = tmp_path / "tanh.onnx"
    torch.onnx.export(TanhGelu(), (x,), path, opset_version=17, dynamo=False, input_names=["x"])
    model = frontend.load(path)
    assert model.notes["relax_ops"] == {"relax.multiply": 1, "relax.nn.gelu_tanh": 1}
    (y,) = run_on_host(model.mod, x.numpy(), *model.params)
    np.testing.assert_allclose(y, TanhGelu()(x).numpy(), atol=1e-6)


def test_importer_failure_names_the_node_and_prints_nothing(tmp_path, capsys):
    """torch.chunk exports Slice bounds computed at run time, which TVM's ONNX importer cannot resolve."""
    import torch

    class Chunked(torch.nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=-1)
            return (a * b).reshape(1, -1, 2)

    path = tmp_path / "chunk.onnx"
    torch.onnx.export(Chunked(), (torch.rand(1, 4, 8),), path, opset_version=17, dynamo=False, input_names=["x"])
    capsys.readouterr()
    with pytest.raises(UserError, match=r"TVM's ONNX importer failed on a \w+ node: ") as err:
        frontend.load(path)
    assert "\n" not in str(err.value)
    assert capsys.readouterr().out == ""
