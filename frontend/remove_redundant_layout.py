"""RemoveRedundantLayout: drop layout ops that do not change their input.

torch.export programs are full of them (``broadcast_to`` to the shape a tensor already has
before every batched matmul, ``reshape`` chains around each Linear).  This pass rewrites

* ``reshape(x, s)`` and ``broadcast_to(x, s)`` with ``s == shape(x)`` into ``x``,
* ``reshape(reshape(x, s1), s2)`` into ``reshape(x, s2)``,
* ``permute_dims(x, [0, 1, ..., n-1])`` into ``x``.
"""
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from .pattern_util import rewrite_calls, rewrite_functions, static_shape


def _identity_shape(func: relax.Function) -> relax.Function:
    x, shape = wildcard(), wildcard()
    pattern = is_op("relax.reshape")(x, shape) | is_op("relax.broadcast_to")(x, shape)

    def rewriter(expr, matches):
        source = static_shape(matches[x])
        return matches[x] if source is not None and source == static_shape(expr) else expr

    return rewrite_calls(pattern, rewriter, func)


def _reshape_chain(func: relax.Function) -> relax.Function:
    x, inner_shape, outer_shape = wildcard(), wildcard(), wildcard()
    pattern = is_op("relax.reshape")(is_op("relax.reshape")(x, inner_shape), outer_shape)

    def rewriter(_expr, matches):
        return relax.op.reshape(matches[x], matches[outer_shape])

    return rewrite_calls(pattern, rewriter, func)


def _identity_permute(func: relax.Function) -> relax.Function:
    x = wildcard()

    def rewriter(expr, matches):
        axes = expr.attrs.axes
        rank = len(static_shape(matches[x]) or ())
        is_identity = axes is not None and [int(a) for a in axes] == list(range(rank))
        return matches[x] if is_identity else expr

    return rewrite_calls(is_op("relax.permute_dims")(x), rewriter, func)


@tvm.transform.module_pass(opt_level=0, name="RemoveRedundantLayout")
class RemoveRedundantLayout:
    """Remove no-op reshape/broadcast_to/permute_dims and merge reshape chains."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        def remove(func):
            # A merged chain can itself be an identity reshape, hence the second _identity_shape.
            return _identity_shape(_reshape_chain(_identity_shape(_identity_permute(func))))

        return rewrite_functions(mod, remove)
