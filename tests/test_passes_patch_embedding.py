"""A Conv2d whose stride equals its kernel (a ViT patch embedding) is emitted as one GEMM of the patches (the
tensorized matmul path), bit-exact with the conv reference; any other conv stays a conv."""
import numpy as np
import pytest
import tvm
from tvm import relax

from relax_passes import integer_program as ip
from relax_passes.requantize import Dyadic

RNG = np.random.default_rng(5)
RATIOS = 0.0011 * 2.0 ** -np.array([0, 2, 1, 3, 0, 1, 2, 0])  # per channel, powers of two apart


def conv_op(strides, out_hw) -> ip.Conv2d:
    return ip.Conv2d(out="y", inputs=("x",), qtype=ip.QType("int8", (1, 8, *out_hw), np.asarray(1.0)),
                     weight=RNG.integers(-127, 128, (8, 3, 4, 4)).astype(np.int8),
                     bias=RNG.integers(-3000, 3000, 8).astype(np.int16), bias_shift=2,
                     dyadic=Dyadic.from_ratio(RATIOS.reshape(1, -1, 1, 1)), strides=strides)


def conv_module(conv: ip.Conv2d) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 16, 16), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(conv.emit(bb, x))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize(("strides", "out_hw", "as_gemm"), [((4, 4), (4, 4), True), ((2, 2), (7, 7), False)])
def test_patch_embedding_is_one_gemm_and_bit_exact(strides, out_hw, as_gemm):
    conv = conv_op(strides, out_hw)
    assert conv.is_patch_embedding((1, 3, 16, 16)) == as_gemm
    mod = conv_module(conv)
    ops = {b.value.op.name for b in mod["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)}
    assert ("relax.matmul" in ops) == as_gemm and ("relax.nn.conv2d" in ops) != as_gemm
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    for x in (np.full((1, 3, 16, 16), -128, np.int8), np.full((1, 3, 16, 16), 127, np.int8),
              RNG.integers(-128, 128, (1, 3, 16, 16)).astype(np.int8)):
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), conv.reference(x))
