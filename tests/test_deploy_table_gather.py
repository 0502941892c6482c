"""Table lookups: stored without their flat start (``trim_flat_start``), and MarkTableGathersElementWise fuses
a gather from a constant table into its producer's kernel."""
import numpy as np
import tvm
from tvm import relax, tirx

from deploy.lower import lower_relax
from deploy.table_gather import ELEMENT_WISE, OPAQUE, MarkTableGathersElementWise
from relax_passes.intops.single_op import compile_single_op
from relax_passes.lookup_table import emit_lookup, trim_flat_start

RNG = np.random.default_rng(0)
WEIGHT = RNG.integers(-128, 128, (8, 6)).astype("int8")
TABLE = RNG.integers(-128, 128, 256).astype("int8")


def matmul_then_lookup(constant_table: bool) -> tvm.IRModule:
    """``table[clip(x @ W >> 6) + 128]``; the table a constant, or a second parameter of main."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "int8"))
    table = relax.Var("table", relax.TensorType((256,), "int8"))
    with bb.function("main", [x] if constant_table else [x, table]):
        with bb.dataflow():
            acc = bb.emit(relax.op.matmul(x, relax.const(WEIGHT), out_dtype="int32"))
            shifted = relax.op.right_shift(acc, relax.const(6, "int32"))
            q = bb.emit(relax.op.astype(relax.op.clip(shifted, -128, 127), "int8"))
            out = bb.emit_output(emit_lookup(bb, q, TABLE) if constant_table else
                                 bb.emit(relax.op.take(table, relax.op.add(relax.op.astype(q, "int32"),
                                                                           relax.const(128, "int32")), axis=0)))
        bb.emit_func_output(out)
    return bb.get()


def take_patterns(mod) -> dict[str, int]:
    annotated = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                          MarkTableGathersElementWise()])(mod)
    return {gv.name_hint: int(f.attrs["op_pattern"]) for gv, f in annotated.functions.items()
            if isinstance(f, tirx.PrimFunc) and gv.name_hint.startswith("take")}


def kernel_names(mod) -> list[str]:
    return sorted(gv.name_hint for gv, f in lower_relax(mod).functions.items() if isinstance(f, tirx.PrimFunc))


def test_constant_table_gather_becomes_element_wise_and_fuses_into_the_matmul():
    mod = matmul_then_lookup(constant_table=True)
    assert take_patterns(mod) == {"take": ELEMENT_WISE}
    kernels = kernel_names(mod)
    assert len(kernels) == 1 and kernels[0].startswith("fused_matmul") and kernels[0].endswith("_take")


def test_gather_from_a_runtime_table_stays_opaque_and_apart():
    mod = matmul_then_lookup(constant_table=False)
    assert take_patterns(mod) == {"take": OPAQUE}
    assert "take" in kernel_names(mod)


def test_fused_gather_computes_the_lookup():
    mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    MarkTableGathersElementWise(), relax.transform.FuseOps(),
                                    relax.transform.FuseTIR()])(matmul_then_lookup(constant_table=True))
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    x = RNG.integers(-128, 128, (4, 8)).astype("int8")
    expected = TABLE[np.clip((x.astype(np.int64) @ WEIGHT) >> 6, -128, 127) + 128]
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)


SATURATING = np.concatenate([np.zeros(70), np.arange(-5, 100), np.full(81, 127)]).astype("int8")


def test_trim_keeps_one_entry_of_the_flat_start():
    kept, lo = trim_flat_start(SATURATING)
    assert lo == 69 and len(kept) == 256 - 69
    assert kept[0] == 0 and kept[1] == -5 and kept[-1] == 127
    assert trim_flat_start(TABLE)[1] == 0  # nothing flat: all 256 kept
    assert trim_flat_start(np.full(256, 3, "int8"))[0].tolist() == [3]


def test_trimmed_lookup_equals_the_full_table_on_every_code():
    codes = np.arange(-128, 128, dtype=np.int8).reshape(4, 64)
    for table in (SATURATING, TABLE, np.full(256, 3, "int8"), SATURATING[::-1].copy()):
        on_host = compile_single_op(lambda bb, x, t: emit_lookup(bb, x, t), table, codes.shape, "int8")
        np.testing.assert_array_equal(on_host(codes), table[codes.astype(np.int16) + 128])
