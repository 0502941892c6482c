"""Bring an imported model into the one vocabulary relax_passes expects (see docs/frontend.md)."""
import dataclasses

import tvm
from tvm import relax

from .fold_constant_layout import FoldConstantLayout
from .fold_index_arithmetic import FoldIndexArithmetic
from .fold_layer_norm_affine import FoldLayerNormAffine
from .fuse_gelu import FuseGelu
from .fuse_layer_norm import FuseLayerNorm
from .imported import ImportedModel
from .operand_order import CanonicalizeOperandOrder
from .remove_redundant_layout import RemoveRedundantLayout
from .vocabulary import CANONICAL_RELAX_OPS, op_census
from .weights import bind_weights, lift_weights


def canonicalization_passes() -> tvm.transform.Pass:
    """The passes run on ``main`` with its weights bound as constants, in order."""
    return tvm.transform.Sequential(
        [
            FoldIndexArithmetic(),
            FoldConstantLayout(),
            FuseGelu(),
            FuseLayerNorm(),
            RemoveRedundantLayout(),
            CanonicalizeOperandOrder(),
            FoldLayerNormAffine(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.DeadCodeElimination(["main"]),
        ],
        name="FrontendCanonicalize",
    )


def canonicalize(model: ImportedModel) -> ImportedModel:
    """Bind weights, rewrite into the canonical vocabulary, lift the weights back out.

    ``notes["relax_ops"]`` records the operator census; ``notes["non_canonical_ops"]`` lists
    ops outside ``CANONICAL_RELAX_OPS`` that remain (the integer passes may reject those).
    """
    bound, named = bind_weights(model.mod, model.params)
    rewritten = canonicalization_passes()(bound)
    mod, params = lift_weights(rewritten, named)
    census = op_census(mod)
    notes = dict(model.notes)
    notes["relax_ops"] = dict(sorted(census.items()))
    notes["non_canonical_ops"] = sorted(set(census) - CANONICAL_RELAX_OPS)
    return dataclasses.replace(model, mod=mod, params=params, notes=notes)
