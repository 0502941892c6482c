"""The int8 kernels of the reference Segmenter, built the way ``deploy`` builds them, to tune before the
integer-only passes deliver the real network.

Each :class:`KernelSpec` is a small integer Relax function (int8 operands, int32 accumulation, the project's
dyadic requantize epilogue back to int8) lowered with :func:`deploy.lower.lower_relax` into one fused
PrimFunc, plus a numpy reference of the same arithmetic. Shapes are the Segmenter's (64x64 image, 4x4
patches -> 256 tokens of width 64, 2 heads of 32, MLP ratio 2).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tvm
from tvm import relax, tirx

from deploy.lower import lower_relax
from relax_passes.requantize import Dyadic, emit_requantize, requantize_reference

TOKENS, DIM, HEAD_DIM, MLP_DIM, PATCH = 256, 64, 32, 128, 4
# A fixed per-tensor ratio (about 1/700): keeps int8 x int8 sums of 32..128 products inside int8 mostly unclipped.
RATIO = Dyadic.from_ratio(1.0 / 700.0)
RANDOM_INPUT_RANGE = {"int8": (-128, 128), "uint8": (0, 256), "bool": (0, 2)}


@dataclass(frozen=True)
class KernelSpec:
    """One Segmenter kernel: its Relax builder (operand shapes), its numpy reference and its MAC count."""

    name: str
    input_shapes: tuple[tuple[int, ...], ...]
    weight_shape: tuple[int, ...]
    emit: Callable  # (bb, inputs, weight, bias) -> int32 accumulator expr
    reference: Callable  # (inputs, weight, bias) -> int32 accumulator
    bias_shape: tuple[int, ...]
    macs: int


def _matmul(bb, inputs, weight, bias):
    return bb.emit(relax.op.add(bb.emit(relax.op.matmul(inputs[0], weight, out_dtype="int32")), bias))


def _matmul_reference(inputs, weight, bias):
    return inputs[0].astype(np.int32) @ weight.astype(np.int32) + bias


def _scores(bb, inputs, _weight, _bias):
    return bb.emit(relax.op.matmul(inputs[0], inputs[1], out_dtype="int32"))


def _scores_reference(inputs, _weight, _bias):
    return inputs[0].astype(np.int32) @ inputs[1].astype(np.int32)


def _patch_embed(bb, inputs, weight, bias):
    conv = bb.emit(relax.op.nn.conv2d(inputs[0], weight, strides=PATCH, out_dtype="int32"))
    return bb.emit(relax.op.add(conv, bias))  # bias shaped (1, C, 1, 1)


def _patch_embed_reference(inputs, weight, bias):
    image = inputs[0].astype(np.int32)
    n, c, h, w = image.shape
    patches = image.reshape(n, c, h // PATCH, PATCH, w // PATCH, PATCH).transpose(0, 2, 4, 1, 3, 5)
    out = patches.reshape(n, h // PATCH, w // PATCH, -1) @ weight.astype(np.int32).reshape(weight.shape[0], -1).T
    return out.transpose(0, 3, 1, 2) + bias


def _linear(name: str, k: int, n: int) -> KernelSpec:
    return KernelSpec(name, ((TOKENS, k),), (k, n), _matmul, _matmul_reference, (n,), TOKENS * k * n)


KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in [
        _linear("qkv", DIM, 3 * DIM),
        _linear("proj", DIM, DIM),
        _linear("mlp_up", DIM, MLP_DIM),
        _linear("mlp_down", MLP_DIM, DIM),
        KernelSpec("attn_scores", ((TOKENS, HEAD_DIM), (HEAD_DIM, TOKENS)), (0,), _scores, _scores_reference,
                   (0,), TOKENS * TOKENS * HEAD_DIM),
        KernelSpec("patch_embed", ((1, 3, 64, 64),), (DIM, 3, PATCH, PATCH), _patch_embed, _patch_embed_reference,
                   (1, DIM, 1, 1), TOKENS * DIM * 3 * PATCH * PATCH),
    ]
}


def operands(spec: KernelSpec, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Deterministic int8 activations/weights and int32 bias for ``spec``."""
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-128, 128, shape, dtype=np.int8) for shape in spec.input_shapes]
    weight = rng.integers(-128, 128, spec.weight_shape, dtype=np.int8)
    bias = rng.integers(-2000, 2000, spec.bias_shape, dtype=np.int32)
    return inputs, weight, bias


def reference_output(spec: KernelSpec, seed: int = 0) -> np.ndarray:
    """numpy reference of the kernel: int32 accumulation, then the project's requantize to int8."""
    inputs, weight, bias = operands(spec, seed)
    return requantize_reference(spec.reference(inputs, weight, bias), RATIO, "int8")


@dataclass
class KernelCase:
    """A kernel to tune: its fused PrimFunc, its input arrays and the output the unscheduled kernel computes."""

    name: str
    mod: tvm.IRModule  # {name: PrimFunc}, global_symbol = name
    arguments: list[np.ndarray]  # inputs in parameter order; the output buffer is the last parameter
    expected: np.ndarray
    macs: int


def kernel_case(spec: KernelSpec, seed: int = 0) -> KernelCase:
    """Lower ``spec`` like ``deploy`` does: one fused PrimFunc whose constants (weights) became parameters."""
    inputs, weight, bias = operands(spec, seed)
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(list(a.shape), "int8")) for i, a in enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            acc = spec.emit(bb, params, relax.const(weight), relax.const(bias))
            out = bb.emit_output(emit_requantize(bb, acc, RATIO, "int8"))
        bb.emit_func_output(out)
    lowered = lower_relax(bb.get())
    calls = [b.value for block in lowered["main"].body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.GlobalVar)]
    if len(calls) != 1:
        raise AssertionError(f"{spec.name} lowered into {len(calls)} kernel calls, expected one fused kernel")
    by_name = {p.name: a for p, a in zip(params, inputs)}
    arguments = [by_name[a.name] if isinstance(a, relax.Var) else a.value.numpy() for a in calls[0].args[:-1]]
    func = lowered[calls[0].op].with_attr("global_symbol", spec.name)
    return KernelCase(spec.name, tvm.IRModule({spec.name: func}), arguments, reference_output(spec, seed), spec.macs)


def random_case(name: str, func: tirx.PrimFunc, macs: int, seed: int = 0,
                given: dict[int, np.ndarray] | None = None) -> KernelCase:
    """A case for any kernel of a lowered network: random inputs, except the arguments in ``given`` (parameter
    index -> value, e.g. the network's own weights and requantize shifts, which random values would turn into
    undefined shifts), expected output from the unscheduled kernel's TVM llvm build (the integer passes' own
    tests tie that build to their numpy references)."""
    rng = np.random.default_rng(seed)
    arguments = []
    for index, param in enumerate(func.params[:-1]):
        dtype = str(param.dtype)
        if given and index in given:
            arguments.append(np.asarray(given[index], dtype=dtype).reshape([int(d) for d in param.shape]))
            continue
        lo, hi = RANDOM_INPUT_RANGE.get(dtype, (-(2**15), 2**15))  # wider types: bias-like, no overflow
        arguments.append(rng.integers(lo, hi, [int(d) for d in param.shape]).astype(dtype))
    output = func.params[-1]
    mod = tvm.IRModule({name: func.with_attr("global_symbol", name)})
    out = tvm.runtime.tensor(np.zeros([int(d) for d in output.shape], str(output.dtype)))
    tvm.compile(mod, "llvm")[name](*[tvm.runtime.tensor(a) for a in arguments], out)
    return KernelCase(name, mod, arguments, out.numpy(), macs)
