"""FoldInputNormalization: fold per-channel input normalisation into the first convolution.

Rewrites (float to float, exact up to float rounding)::

    y = conv2d(((x / 255) - mean) / std, W)         # any chain of +, -, *, / by per-channel constants
                                                    # (and of permute_dims that ends in x's layout)
    ->
    y = conv2d(x, W * a) + conv2d(b, W)              # x * a + b is the chain as one affine map

so that ``main`` takes the raw image. ``a`` scales the input channels of ``W``; the constant term
becomes a per-output-channel bias (only valid without padding unless ``b == 0``, which is checked). The result is
what the integer rewrite quantizes: the raw uint8 image is then the integer module's input.
"""
import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

_AFFINE_OPS = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide")


def fold_affine_reference(weight, a, b):
    """numpy: the folded ``(weight', bias')`` of ``conv2d(x * a + b, weight)``; ``a``, ``b`` shaped (C,)."""
    folded = weight * a[None, :, None, None]
    bias = np.einsum("ocij,c->o", weight.astype(np.float64), b.astype(np.float64))
    return folded.astype(weight.dtype), bias.astype(weight.dtype)


def _channel_vector(const: relax.Expr, channels: int, axis: int, ndim: int):
    """A constant that broadcasts per channel along ``axis`` of a rank-``ndim`` tensor, as (C,), or None."""
    if not isinstance(const, tvm.ir.Constant):
        return None
    value = const.value.numpy().astype(np.float64)
    if value.size == 1:
        return np.full(channels, value.item())
    shape = [1] * ndim
    shape[axis] = channels
    if value.ndim <= ndim and (1,) * (ndim - value.ndim) + value.shape == tuple(shape):
        return value.reshape(-1)
    return None


@mutator
class _Folder(PyExprMutator):
    """Tracks ``var = permute(image * a + b, perm)`` (``a``, ``b`` per image channel) through the graph."""

    def __init__(self, mod, image: relax.Var):
        super().__init__(mod)
        channels = int(image.ty.shape[1])
        self.affine = {image: (np.ones(channels), np.zeros(channels), (0, 1, 2, 3))}
        self.image = image

    def _affine_of(self, expr):
        return self.affine.get(expr) if isinstance(expr, relax.Var) else None

    def visit_var_binding_(self, binding):
        call = binding.value
        if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op):
            form = self._track(call)
            if form is not None:
                self.affine[binding.var] = form
        super().visit_var_binding_(binding)

    def _track(self, call):
        if call.op.name == "relax.permute_dims":
            form = self._affine_of(call.args[0])
            if form is None or call.attrs.axes is None:
                return None
            return form[0], form[1], tuple(form[2][int(a)] for a in call.attrs.axes)
        if call.op.name not in _AFFINE_OPS or len(call.args) != 2:
            return None
        lhs, rhs = call.args
        form = self._affine_of(lhs)
        const = rhs
        if form is None and call.op.name in ("relax.add", "relax.multiply"):
            form, const = self._affine_of(rhs), lhs
        if form is None:
            return None
        a, b, perm = form
        c = _channel_vector(const, len(a), perm.index(1), len(perm))
        if c is None:
            return None
        if call.op.name == "relax.add":
            return a, b + c, perm
        if call.op.name == "relax.subtract":
            return a, b - c, perm
        if call.op.name == "relax.multiply":
            return a * c, b * c, perm
        return a / c, b / c, perm

    def visit_call_(self, call):
        if call.op == tvm.ir.Op.get("relax.nn.conv2d"):
            form = self._affine_of(call.args[0])
            if form is not None and form[2] == (0, 1, 2, 3) and isinstance(call.args[1], tvm.ir.Constant):
                return self._fold(call, form[0], form[1])
        return super().visit_call_(call)

    def _fold(self, call, a, b):
        attrs = call.attrs
        padded = any(int(p) for p in attrs.padding)
        if (padded and np.any(b)) or int(attrs.groups) != 1 or attrs.data_layout != "NCHW" \
                or attrs.kernel_layout != "OIHW":
            return super().visit_call_(call)
        weight = call.args[1].value.numpy()
        folded, bias = fold_affine_reference(weight, a, b)
        conv = self.builder_.emit(relax.op.nn.conv2d(
            self.image, relax.const(folded), strides=attrs.strides, padding=attrs.padding,
            dilation=attrs.dilation, groups=attrs.groups, data_layout=attrs.data_layout,
            kernel_layout=attrs.kernel_layout, out_layout=attrs.out_layout, out_dtype=attrs.out_dtype))
        return relax.op.add(conv, relax.const(bias.reshape(1, -1, 1, 1)))


@tvm.transform.module_pass(opt_level=0, name="FoldInputNormalization")
class FoldInputNormalization:
    """Fold the affine normalisation of ``main``'s first input into the convolution(s) reading it."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        func = mod["main"]
        folder = _Folder(mod, func.params[0])
        updated = folder.visit_expr(func)
        out = mod.clone()
        out["main"] = relax.transform.DeadCodeElimination(["main"])(
            tvm.IRModule({"main": updated}))["main"]
        return out
