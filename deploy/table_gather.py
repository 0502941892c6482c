"""Relax pass of the lowering: table gathers -> element-wise kernels, so they fuse into their producer.

A compile-time lookup table (``relax_passes.lookup_table.emit_lookup``: ``take(table, index)``) legalizes
into a PrimFunc ``out[i...] = table[index[i...]]``. ``AnnotateTIROpPattern`` calls that opaque (a load at a
data-dependent index), so ``FuseOps`` leaves it a kernel of its own: the producer (for the λ-ShiftGELU table,
the MLP-up matmul) then stores an int32 index tensor that the gather reads back. Element-wise is what it is
(``out[i...]`` depends on ``index[i...]`` alone; the table is a whole constant operand, like a weight), so
this pass marks such PrimFuncs element-wise, and the gather becomes one load in the producer's epilogue.
"""
import tvm
from tvm import relax, s_tir, tirx
from tvm.ir.expr import TensorLoad

ELEMENT_WISE = 0  # OpPatternKind kElemWise
OPAQUE = 8        # OpPatternKind kOpaque


def _strip_cast(expr):
    return expr.value if isinstance(expr, tirx.Cast) else expr


def _same_indices(indices, block_vars) -> bool:
    return len(indices) == len(block_vars) and all(
        isinstance(i, tirx.Var) and i.same_as(v.var) for i, v in zip(indices, block_vars))


def gathered_table(func: tirx.PrimFunc) -> int | None:
    """The parameter position of ``table`` when ``func`` is one block ``out[v...] = table[index[v...]]`` with a
    1-D ``table`` and ``index``, ``out`` indexed alike; else None."""
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return None
    block = sch.get(blocks[0])
    store = block.body
    if not isinstance(store, tirx.BufferStore) or not isinstance(store.value, TensorLoad):
        return None
    load = store.value
    index = _strip_cast(load.indices[0]) if len(load.indices) == 1 else None
    if not (isinstance(index, TensorLoad) and _same_indices(store.indices, block.iter_vars)
            and _same_indices(index.indices, block.iter_vars)):
        return None
    return next((n for n, param in enumerate(func.params) if param.same_as(load.source)), None)


def _call_tir_bindings(main: relax.Function):
    call_tir = tvm.ir.Op.get("relax.call_tir")
    for block in main.body.blocks:
        for binding in block.bindings:
            if isinstance(binding.value, relax.Call) and binding.value.op == call_tir:
                yield binding.value.args[0], list(binding.value.args[1].fields)


@tvm.transform.module_pass(opt_level=0, name="MarkTableGathersElementWise")
class MarkTableGathersElementWise:
    """Run after ``AnnotateTIROpPattern``: opaque PrimFuncs that only gather from a constant 1-D table
    (every call passes a Relax constant as the table) become element-wise."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        table_of: dict = {}  # opaque PrimFunc -> its table's parameter position (None: not a table gather)
        constant_table: dict = {}
        for gv, args in _call_tir_bindings(mod["main"]):
            if int(mod[gv].attrs.get("op_pattern", -1)) != OPAQUE:
                continue
            if gv not in table_of:
                table_of[gv] = gathered_table(mod[gv])
            table = table_of[gv]
            constant = table is not None and isinstance(args[table], tvm.ir.Constant)
            constant_table[gv] = constant_table.get(gv, True) and constant
        for gv in [gv for gv, constant in constant_table.items() if constant]:
            mod[gv] = mod[gv].with_attr("op_pattern", ELEMENT_WISE)
        return mod
