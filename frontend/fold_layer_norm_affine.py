"""FoldLayerNormAffine: move a LayerNorm's gamma/beta into the constant-weight matmuls it feeds.

    y = layer_norm(x, gamma, beta)               y = layer_norm(x, 1, 0)
    v = view(y)                          ->      v = view(y)
    z = matmul(v, W)                             t = matmul(v, gamma[:, None] * W)
    o = add(z, b)                                o = add(t, b + beta @ W)

``view`` is any chain of ``reshape`` keeping the last dimension and ``strided_slice`` not slicing it, so
channel ``c`` of ``y`` stays row ``c`` of ``W``. Exact in real arithmetic, ``(n*gamma + beta) @ W =
n @ (diag(gamma) W) + beta @ W``; the new constants are computed in float64 and rounded once to the
weight dtype. Applied only when every use of ``y`` ends in such a matmul with a constant 2-D weight
(the pre-norm LayerNorms of a transformer block); then the LayerNorm keeps no per-channel affine, so
its integer form stores no per-channel constants. A matmul without a bias ``add`` gets one (none when
``beta @ W`` is zero).
"""
import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .pattern_util import const, constant_array, static_shape


def _last_axis_kept(binding: relax.VarBinding, channels: int) -> bool:
    """``reshape`` that keeps the last dimension / ``strided_slice`` that does not slice it."""
    call = binding.value
    shape = static_shape(binding.var)
    if shape is None or not shape or shape[-1] != channels:
        return False
    if call.op.name == "relax.reshape":
        return True
    if call.op.name == "relax.strided_slice":
        axes = call.args[1].fields if isinstance(call.args[1], relax.Tuple) else call.args[1]
        return len(shape) - 1 not in [int(getattr(a, "value", a)) % len(shape) for a in axes]
    return False


def _bias_add(users: list, var: relax.Var, columns: int) -> relax.VarBinding | None:
    """The sole user of ``var`` when it is ``add(var, b)`` with a constant ``b`` of shape ``(columns,)``."""
    op = getattr(users[0].value, "op", None) if len(users) == 1 else None
    if not isinstance(op, tvm.ir.Op) or op.name != "relax.add":
        return None
    lhs, rhs = users[0].value.args
    bias = constant_array(rhs)
    return users[0] if lhs.same_as(var) and bias is not None and bias.shape == (columns,) else None


def _plan(func: relax.Function) -> tuple[dict, dict, dict]:
    """``({layer_norm var: channels}, {matmul var: (gamma, beta, has a bias add)}, {bias add var: beta @ W})``
    of the LayerNorms that fold."""
    bindings = [b for block in func.body.blocks for b in block.bindings]
    users: dict[relax.Var, list[relax.VarBinding]] = {}
    for binding in bindings:
        value = binding.value
        operands = value.args if isinstance(value, relax.Call) else getattr(value, "fields", [value])
        for operand in operands:
            if isinstance(operand, relax.Var):
                users.setdefault(operand, []).append(binding)
    norms, matmuls, bias_adds = {}, {}, {}
    for binding in bindings:
        call = binding.value
        if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                and call.op.name == "relax.nn.layer_norm"):
            continue
        gamma, beta = constant_array(call.args[1]), constant_array(call.args[2])
        shape = static_shape(binding.var)
        if gamma is None or beta is None or shape is None or gamma.ndim != 1 \
                or [int(a) % len(shape) for a in call.attrs.axes] != [len(shape) - 1]:
            continue
        channels = gamma.size
        found, adds, pending, ok = {}, {}, [binding.var], True
        while pending and ok:
            var = pending.pop()
            uses = users.get(var, [])
            ok = bool(uses) and isinstance(var, relax.DataflowVar)
            for use in uses if ok else []:
                op = getattr(use.value, "op", None)
                name = op.name if isinstance(op, tvm.ir.Op) else ""
                weight = constant_array(use.value.args[1]) if name == "relax.matmul" else None
                if weight is not None and use.value.args[0].same_as(var) and weight.ndim == 2 \
                        and weight.shape[0] == channels:
                    add = _bias_add(users.get(use.var, []), use.var, weight.shape[1])
                    found[use.var] = (gamma, beta, add is not None)
                    if add is not None:
                        adds[add.var] = beta.astype(np.float64) @ weight.astype(np.float64)
                elif name in ("relax.reshape", "relax.strided_slice") and _last_axis_kept(use, channels):
                    pending.append(use.var)
                else:
                    ok = False
        if ok and found:
            norms[binding.var] = channels
            matmuls.update(found)
            bias_adds.update(adds)
    return norms, matmuls, bias_adds


@mutator
class _Folder(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, norms: dict, matmuls: dict, bias_adds: dict):
        super().__init__(mod)
        self.norms, self.matmuls, self.bias_adds = norms, matmuls, bias_adds

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.var not in self.norms and binding.var not in self.matmuls and binding.var not in self.bias_adds:
            super().visit_var_binding_(binding)
            return
        call = self.visit_expr(binding.value)
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        if binding.var in self.bias_adds:
            bias = constant_array(call.args[1])
            merged = (bias.astype(np.float64) + self.bias_adds[binding.var]).astype(bias.dtype)
            self.set_var_remap(binding.var, emit(relax.op.add(call.args[0], const(merged)), binding.var.name))
            return
        if binding.var in self.norms:
            dtype = str(constant_array(call.args[1]).dtype)
            channels = self.norms[binding.var]
            folded = relax.Call(call.op, [call.args[0], const(np.ones(channels, dtype)),
                                          const(np.zeros(channels, dtype))], call.attrs)
            self.set_var_remap(binding.var, self.builder_.emit(folded, binding.var.name))
            return
        gamma, beta, has_bias_add = self.matmuls[binding.var]
        weight = constant_array(call.args[1])
        scaled = (gamma.astype(np.float64)[:, None] * weight).astype(weight.dtype)
        product = relax.Call(call.op, [call.args[0], const(scaled)], call.attrs)
        bias = (beta.astype(np.float64) @ weight.astype(np.float64)).astype(weight.dtype)
        if not has_bias_add and np.any(bias):
            product = relax.op.add(self.builder_.emit(product, binding.var.name + "_scaled"), const(bias))
        self.set_var_remap(binding.var, emit(product, binding.var.name))


@tvm.transform.module_pass(opt_level=0, name="FoldLayerNormAffine")
class FoldLayerNormAffine:
    """``layer_norm(x, gamma, beta) -> matmul(., W)`` into ``layer_norm(x, 1, 0) -> matmul(., gamma W) + beta W``."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        updated = mod
        for gvar, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            norms, matmuls, bias_adds = _plan(func)
            if norms:
                folder = _Folder(updated, norms, matmuls, bias_adds)
                folder.builder_.update_func(gvar, folder.visit_expr(func))
                updated = folder.builder_.get()
        return updated
