"""Build a Relax module for the host CPU (llvm) and run its ``main``: the float reference run."""
import numpy as np
import tvm
from tvm import relax


def run_on_host(mod: tvm.IRModule, *args: np.ndarray) -> list[np.ndarray]:
    """Compile ``mod`` with ``tvm.compile(mod, "llvm")``, call ``main(*args)``, return every output."""
    executable = tvm.compile(mod, "llvm")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    result = vm["main"](*(tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args))
    return _flatten(result)


def _flatten(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    if isinstance(value, (int, float, bool, np.generic)):
        return [np.asarray(value)]
    return [array for item in value for array in _flatten(item)]
