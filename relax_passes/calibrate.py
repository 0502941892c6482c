"""Calibration: run the float Relax module on a few images and record every intermediate's range.

``calibrate(mod, images)`` builds ``main`` for the host (TVM llvm) in a variant that returns every
bound tensor, runs it on each calibration image and keeps, per variable, the running ``|x|`` maximum
and a bounded sample of ``|x|``. ``Calibration.clip(name, qmax)`` turns those into the clipping range
of one observer:

* ``minmax``     — the largest ``|x|`` seen;
* ``percentile`` — the 99.99th percentile of ``|x|``;
* ``mse``        — the clip (searched on a grid of the ``|x|`` maximum) that minimises the mean squared
  error of symmetric quantization to ``qmax`` levels on the sample.

Scales derive from the clip at compile time, in Python: ``scale = clip / qmax``.
"""
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

OBSERVERS = ("minmax", "percentile", "mse")
PERCENTILE = 99.99
SAMPLE_PER_IMAGE = 1 << 16
MSE_GRID = np.linspace(0.2, 1.0, 81)


def with_all_intermediates(func: relax.Function) -> tuple[relax.Function, list[str]]:
    """``func`` rewritten to return a tuple of every tensor it binds, and their names (in order)."""
    func = relax.transform.ToNonDataflow()(tvm.IRModule({"main": func}))["main"]
    names, values = [], []
    for block in func.body.blocks:
        for binding in block.bindings:
            if isinstance(binding.var.ty, relax.TensorType):
                names.append(binding.var.name)
                values.append(binding.var)
    body = relax.SeqExpr(func.body.blocks, relax.Tuple(values))
    ret = relax.TupleType([v.ty for v in values])
    return relax.Function(func.params, body, ret, attrs=func.attrs), names


@dataclass
class Calibration:
    """Per-variable ``|x|`` statistics of the float model over the calibration images."""

    absmax: dict[str, float]
    samples: dict[str, np.ndarray]
    num_images: int
    values: dict[str, np.ndarray] = field(default_factory=dict)  # float intermediates of the first image

    def clip(self, name: str, qmax: int, observer: str = "minmax") -> float:
        """The clipping range ``c > 0`` of variable ``name`` for a symmetric ``[-qmax, qmax]`` grid."""
        if observer not in OBSERVERS:
            raise ValueError(f"unknown observer {observer!r}; use one of {', '.join(OBSERVERS)}")
        top = self.absmax[name]
        if top == 0.0:
            return 1.0 / qmax  # an all-zero tensor: any positive scale is exact
        if observer == "minmax":
            return top
        sample = self.samples[name]
        if observer == "percentile":
            return float(max(np.percentile(sample, PERCENTILE), top / qmax))
        candidates = MSE_GRID * top
        errors = [_quantization_mse(sample, c / qmax, qmax) for c in candidates]
        return float(candidates[int(np.argmin(errors))])


def _quantization_mse(sample: np.ndarray, scale: float, qmax: int) -> float:
    dequantized = np.clip(np.round(sample / scale), 0, qmax) * scale
    return float(np.mean((dequantized - sample) ** 2))


def _subsample(values: np.ndarray, limit: int) -> np.ndarray:
    flat = np.abs(values.reshape(-1)).astype(np.float32)
    if flat.size <= limit:
        return flat
    return flat[:: -(-flat.size // limit)]


def calibrate(mod: tvm.IRModule, images, *, progress: bool = True) -> Calibration:
    """Run ``mod["main"]`` (one input, float, constants bound) on each image; collect statistics.

    ``images`` is a sequence of arrays shaped like ``main``'s input.
    """
    from tqdm import tqdm

    func, names = with_all_intermediates(mod["main"])
    executable = tvm.compile(tvm.IRModule({"main": func}), "llvm")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    absmax = {name: 0.0 for name in names}
    samples = {name: [] for name in names}
    first = {}
    for index, image in enumerate(tqdm(images, desc="calibrating", unit="img", disable=not progress, leave=False)):
        outputs = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(image)))
        for name, output in zip(names, outputs):
            value = output.numpy()
            if index == 0:
                first[name] = value
            absmax[name] = max(absmax[name], float(np.max(np.abs(value))) if value.size else 0.0)
            samples[name].append(_subsample(value, SAMPLE_PER_IMAGE))
    if not first:
        raise ValueError("calibration needs at least one image")
    return Calibration(absmax, {n: np.concatenate(s) for n, s in samples.items()}, len(images), first)
