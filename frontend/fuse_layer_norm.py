"""FuseLayerNorm: rewrite layer normalisation written out element-wise into ``R.nn.layer_norm``.

ONNX exports before opset 17 (and some TFLite converters) spell LayerNorm as

    mean = ReduceMean(x, axes, keepdims=1);  d = x - mean
    var = ReduceMean(d ^ 2 | d * d, axes, keepdims=1)
    y = d / Sqrt(var + eps)          (or d * 1/Sqrt(...) via Reciprocal / rsqrt)
    [y = y * gamma] [y = y + beta]

which this pass turns into ``R.nn.layer_norm(x, gamma, beta, axes, epsilon)``.  The normalised
axes must be the trailing ones and ``gamma``/``beta`` constants that broadcast only over them;
a missing scale or shift becomes a ones/zeros constant.  Anything else is left unchanged.
"""
import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from .pattern_util import const, constant_array, is_scalar, rewrite_calls, rewrite_functions, scalar_value, static_shape


def _normalisation_pattern():
    """Patterns for ``(x - mean) / sqrt(var + eps)``; returns (pattern, named sub-patterns)."""
    x, eps, two, one = wildcard(), is_const(), is_const(), is_const()
    mean = is_op("relax.mean")(x)
    centred = is_op("relax.subtract")(x, mean)
    square = is_op("relax.power")(centred, two) | is_op("relax.multiply")(centred, centred)
    variance = is_op("relax.mean")(square)
    std = is_op("relax.sqrt")(is_op("relax.add")(variance, eps))
    normalised = (
        is_op("relax.divide")(centred, std)
        | is_op("relax.multiply")(centred, is_op("relax.rsqrt")(is_op("relax.add")(variance, eps)))
        | is_op("relax.multiply")(centred, is_op("relax.divide")(one, std))
    )
    return normalised, dict(x=x, eps=eps, two=two, one=one, mean=mean, variance=variance, normalised=normalised)


def _reduced_axes(call: relax.Call, rank: int) -> tuple[int, ...] | None:
    """Normalised, sorted axes of a keepdims ``mean`` call, or None if it is not one."""
    if not call.attrs.keepdims or call.attrs.axis is None:
        return None
    return tuple(sorted(int(a) % rank for a in call.attrs.axis))


def _affine_param(expr: relax.Expr | None, feature_shape: tuple[int, ...], fill: float, dtype: str):
    """A gamma/beta constant reshaped to the normalised feature shape, or None if it is not one."""
    if expr is None:
        return const(np.full(feature_shape, fill, dtype=dtype))
    array = constant_array(expr)
    if array is None or array.dtype != np.dtype(dtype):
        return None
    trailing = array.shape[-len(feature_shape):] if array.ndim >= len(feature_shape) else array.shape
    leading = array.shape[: array.ndim - len(trailing)]
    if any(d != 1 for d in leading):
        return None
    try:
        return const(np.broadcast_to(array.reshape(trailing), feature_shape))
    except ValueError:
        return None


def _fuse(func: relax.Function, with_scale: bool, with_shift: bool) -> relax.Function:
    normalised, parts = _normalisation_pattern()
    gamma, beta = is_const(), is_const()
    pattern = normalised
    if with_scale:
        pattern = is_op("relax.multiply")(pattern, gamma)
    if with_shift:
        pattern = is_op("relax.add")(pattern, beta)

    def rewriter(expr, matches):
        x = matches[parts["x"]]
        shape = static_shape(x)
        if shape is None:
            return expr
        rank, dtype = len(shape), str(x.ty.dtype)
        axes = _reduced_axes(matches[parts["mean"]], rank)
        trailing = tuple(range(rank - len(axes), rank)) if axes else None
        two, one = matches.get(parts["two"]), matches.get(parts["one"])
        if (
            axes is None
            or axes != trailing
            or axes != _reduced_axes(matches[parts["variance"]], rank)
            or (two is not None and not is_scalar(two, 2.0))
            or (one is not None and not is_scalar(one, 1.0))
            or scalar_value(matches[parts["eps"]]) is None
        ):
            return expr
        feature_shape = tuple(shape[a] for a in axes)
        scale = _affine_param(matches.get(gamma) if with_scale else None, feature_shape, 1.0, dtype)
        shift = _affine_param(matches.get(beta) if with_shift else None, feature_shape, 0.0, dtype)
        if scale is None or shift is None:
            return expr
        epsilon = scalar_value(matches[parts["eps"]])
        return relax.op.nn.layer_norm(x, scale, shift, axes=[a - rank for a in axes], epsilon=epsilon)

    return rewrite_calls(pattern, rewriter, func)


@tvm.transform.module_pass(opt_level=0, name="FuseLayerNorm")
class FuseLayerNorm:
    """Rewrite mean/subtract/power/mean/add/sqrt/divide[/multiply][/add] into ``R.nn.layer_norm``."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def fuse_all(func):
            for with_scale, with_shift in [(True, True), (True, False), (False, True), (False, False)]:
                func = _fuse(func, with_scale, with_shift)
            return func

        return rewrite_functions(mod, fuse_all)
