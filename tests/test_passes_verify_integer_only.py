"""VerifyIntegerOnly lists every float value, constant and real-only operator left in main."""
import numpy as np
import pytest
from tvm import relax

from relax_passes.verify_integer_only import IntegerOnlyError, VerifyIntegerOnly, float_offenders, verify_integer_only


def module(build):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(build(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def integer_body(bb, x):
    wide = bb.emit(relax.op.astype(x, "int32"))
    return relax.op.right_shift(relax.op.add(wide, relax.const(np.int32(3))), relax.const(np.int32(1)))


def test_integer_module_passes_unchanged():
    mod = module(integer_body)
    assert float_offenders(mod["main"]) == []
    assert VerifyIntegerOnly()(mod).same_as(mod)


def test_float_cast_and_softmax_are_reported():
    def body(bb, x):
        real = bb.emit(relax.op.astype(x, "float32"))
        return relax.op.astype(relax.op.nn.softmax(real), "int8")

    offenders = float_offenders(module(body)["main"])
    assert any("relax.nn.softmax" in o for o in offenders)
    assert sum("float32" in o for o in offenders) == 2  # the cast and the softmax result


def test_float_constant_and_dequantize_are_reported():
    def body(bb, x):
        scaled = bb.emit(relax.op.dequantize(x, relax.const(0.5, "float32"), relax.const(0, "int8")))
        return relax.op.multiply(scaled, relax.const(np.float32(2.0)))

    offenders = float_offenders(module(body)["main"])
    assert any("relax.dequantize" in o for o in offenders)
    assert any(o.startswith("float constant") for o in offenders)
    assert any(o.startswith("result") for o in offenders)


def test_raises_with_the_offender_list():
    half = module(lambda bb, x: relax.op.astype(x, "float16"))
    with pytest.raises(IntegerOnlyError, match="not integer-only: .*float16") as info:
        verify_integer_only(half)
    assert len(info.value.offenders) == 2  # the binding and the result
    with pytest.raises(Exception, match="not integer-only: .*float16"):
        VerifyIntegerOnly()(half)
