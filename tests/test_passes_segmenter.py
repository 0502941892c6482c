"""The reference Segmenter through quantize_model with ONE calibration image: integer-only, bit-exact
(numpy reference == TVM llvm build, every intermediate, every committed image), overflow-free, close to float."""
import numpy as np
import pytest
import tvm
from tvm import relax

import frontend
import segdata
from common.errors import UserError
from common.paths import MODEL_DIR
from relax_passes import integer_program as ip
from relax_passes import float_offenders, program_bounds, quantize_model
from relax_passes.overflow import op_bounds
from relax_passes.requantize import Dyadic


@pytest.fixture(scope="module")
def imported():
    return frontend.load(MODEL_DIR / "segmenter.pt2")


@pytest.fixture(scope="module")
def images():
    return segdata.load_committed()[0]


@pytest.fixture(scope="module")
def model(imported, images):
    return quantize_model(imported, images[:1], progress=False)


def test_integer_module_signature_and_no_float(model):
    main = model.mod["main"]
    assert float_offenders(main) == []
    (image,) = main.params
    assert (image.ty.dtype, tuple(int(d) for d in image.ty.shape)) == ("uint8", (1, 64, 64, 3))
    result = main.body.body.ty
    assert (result.dtype, tuple(int(d) for d in result.shape)) == ("uint8", (1, 64, 64))
    kinds = {op.kind for op in model.program.ops if isinstance(op, ip.NonLinear)}
    assert kinds == {"layer_norm", "softmax", "gelu"}


def test_every_intermediate_is_bit_exact_on_the_committed_images(model, images):
    debug = relax.VirtualMachine(tvm.compile(model.debug_mod(), "llvm"), tvm.cpu())
    shipped = relax.VirtualMachine(tvm.compile(model.mod, "llvm"), tvm.cpu())
    for image in images:
        batch = image[None]
        values = model.intermediates(batch)
        outputs = debug["main"](tvm.runtime.tensor(batch))
        assert len(outputs) == len(model.program.ops)
        for op, got in zip(model.program.ops, outputs):
            got = got.numpy()
            want = values[op.out]
            assert got.dtype == want.dtype and np.array_equal(got, want), f"{op.out} ({type(op).__name__})"
        assert np.array_equal(shipped["main"](tvm.runtime.tensor(batch)).numpy(), values[model.program.output])


def test_no_accumulator_can_overflow_for_any_input(model):
    rows = program_bounds(model.program)
    kinds = {row["kind"] for row in rows}
    assert {"Conv2d", "Dense", "Matmul", "Add", "NonLinear", "Requantize"} <= kinds
    bad = [row for row in rows if not row["ok"]]
    assert bad == []


def test_overflow_bound_catches_a_too_deep_dense():
    depth = 2**18  # 127 * 128 * 2**18 > 2**31
    dense = ip.Dense(out="d", inputs=("x",), qtype=ip.QType("int8", (1, 1), np.asarray(1.0)),
                     weight=np.full((depth, 1), 127, np.int8), bias=np.zeros(1, np.int32),
                     dyadic=Dyadic.from_ratio(np.asarray([0.5])))
    (what, bound, limit), _ = op_bounds(dense, [ip.QType("int8", (1, depth), np.asarray(1.0))])
    assert what == "accumulator" and bound == 127 * 128 * depth > limit


def test_class_map_agrees_with_the_float_model(model, images):
    float_vm = relax.VirtualMachine(tvm.compile(model.float_mod, "llvm"), tvm.cpu())
    agree = []
    for image in images:
        logits = float_vm["main"](tvm.runtime.tensor(image.transpose(2, 0, 1)[None].astype(np.float32))).numpy()
        agree.append(np.mean(logits.argmax(1) == model.reference(image[None])))
    assert np.mean(agree) > 0.9, agree


def test_size_deployed_constants_are_3_9_times_smaller_than_float32(model):
    from relax_passes.benchmark import size_report

    dense = [op for op in model.program.ops if isinstance(op, (ip.Dense, ip.Conv2d))]
    assert all(op.weight.dtype == np.int8 for op in dense)
    size = size_report(model)  # the constant arrays deploy.build writes
    assert set(size["deployed_constant_bytes_by_dtype"]) <= {"int8", "int16", "int32"}, size
    assert size["ratio_all_constants"] >= 3.9, size


def test_bad_calibration_input_is_a_user_error(imported, images):
    with pytest.raises(UserError, match=r"uint8 \[N,64,64,3\]"):
        quantize_model(imported, images[:1].astype(np.float32), progress=False)
    with pytest.raises(UserError, match=r"uint8 \[N,64,64,3\]"):
        quantize_model(imported, images[:1, :32], progress=False)
    with pytest.raises(UserError, match="unknown observer"):
        quantize_model(imported, images[:1], observer="max", progress=False)
    with pytest.raises(UserError, match="unknown GELU"):
        quantize_model(imported, images[:1], gelu="tanh", progress=False)


def test_onnx_export_gives_the_same_integer_class_maps(model, images):
    """segmenter.onnx and segmenter.pt2 are exported together from the same weights: same integer model."""
    from_onnx = quantize_model(frontend.load(MODEL_DIR / "segmenter.onnx"), images[:1], progress=False)
    for image in images:
        assert np.array_equal(from_onnx.reference(image[None]), model.reference(image[None]))
