"""What the frontend accepts (source ops) and what it hands on (the canonical Relax vocabulary)."""
from collections import Counter

import tvm
from tvm import relax

# ONNX operators the frontend claims; each is checked against the ONNX backend node tests
# (python -m frontend.node_tests).  Anything else is rejected with a UserError at import.
SUPPORTED_ONNX_OPS = frozenset(
    """Add ArgMax Cast CastLike Clip Concat Constant ConstantOfShape Conv Div Equal Erf Expand
    Flatten Gather Gelu Gemm Identity LayerNormalization MatMul Mul Neg Pow Reciprocal ReduceMean
    Relu Reshape Resize Shape Sigmoid Size Slice Softmax Split Sqrt Squeeze Sub Sum Tanh Transpose
    Unsqueeze Where""".split()
)

# The Relax operators a canonicalised Segmenter-like model is made of; relax_passes can rely
# on these spellings (e.g. GELU is always nn.gelu, LayerNorm always nn.layer_norm).
CANONICAL_RELAX_OPS = frozenset(
    """relax.nn.conv2d relax.matmul relax.add relax.subtract relax.multiply relax.divide
    relax.permute_dims relax.reshape relax.squeeze relax.expand_dims relax.broadcast_to
    relax.nn.layer_norm relax.nn.gelu relax.nn.gelu_tanh relax.nn.softmax relax.image.resize2d
    relax.concat relax.split relax.strided_slice relax.take relax.argmax""".split()
)


def op_census(mod: tvm.IRModule, func_name: str = "main") -> Counter:
    """How often each Relax operator is called in ``func_name``."""
    counts: Counter = Counter()

    def count(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name] += 1

    relax.analysis.post_order_visit(mod[func_name], count)
    return counts
