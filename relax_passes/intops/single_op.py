"""Wrap one integer op emitter in a module ``main(x) -> op(x)``, and run it on the host (llvm).

Used to prove an emitter bit-exact against its numpy reference (tests, ablation).
"""
from typing import Callable

import numpy as np
import tvm
from tvm import relax


def single_op_module(emit: Callable, params, shape: tuple[int, ...], dtype: str) -> tvm.IRModule:
    """``main(x: Tensor(shape, dtype))`` whose body is ``emit(bb, x, params)`` in one dataflow block."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(emit(bb, x, params))
        bb.emit_func_output(out)
    return bb.get()


def compile_single_op(emit: Callable, params, shape: tuple[int, ...], dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """Build ``single_op_module`` with ``tvm.compile(mod, "llvm")``; returns ``run(x) -> np.ndarray``."""
    vm = relax.VirtualMachine(tvm.compile(single_op_module(emit, params, shape, dtype), "llvm"), tvm.cpu())

    def run(x: np.ndarray) -> np.ndarray:
        return vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=dtype))).numpy()

    return run
