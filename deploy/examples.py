"""A small integer-only segmentation network in Relax, with its numpy reference.

It exercises the op families the real I-Segmenter graph uses (int8 conv2d/matmul with int32
accumulators, int32 bias, dyadic requantization in int64, an int16 residual add, a shift-based
softmax-like row normalisation with an integer division, argmax), so the deploy machinery can be
tested end to end before the real passes are plugged in.
"""
import numpy as np
import tvm
from tvm import relax

from relax_passes.requantize import Dyadic, emit_requantize, requantize_reference

R = relax.op


def _weights(seed: int, channels: int, classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": rng.integers(-127, 128, (channels, 3, 3, 3)).astype("int8"),
        "conv_b": rng.integers(-2000, 2000, (channels,)).astype("int32"),
        "pos": rng.integers(-3000, 3000, (1, 1, 1, channels)).astype("int16"),
        "head_w": rng.integers(-127, 128, (channels, classes)).astype("int8"),
    }


# Dyadic multipliers m / 2^k (compile-time integers).
CONV_M, CONV_K = 1288490189, 33  # 0.15: int32 conv sum -> int16
HEAD_M, HEAD_K = 1518500250, 38  # about 0.0055: int16 residual -> int8


def _requantize(bb: relax.BlockBuilder, x, multiplier: int, shift: int, dtype: str) -> relax.Var:
    return emit_requantize(bb, x, Dyadic(np.int64(multiplier), np.int64(shift)), dtype)


def toy_segmenter(height: int = 16, width: int = 16, channels: int = 8, classes: int = 4,
                  seed: int = 0) -> tvm.IRModule:
    """``main(image: uint8[1,H,W,3]) -> uint8[1,H,W]`` class map; weights bound as constants."""
    w = _weights(seed, channels, classes)
    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType((1, height, width, 3), "uint8"))
    with bb.function("main", [image]):
        with bb.dataflow():
            x = bb.emit(R.astype(R.subtract(R.astype(image, "int16"), relax.const(128, "int16")), "int8"))
            acc = bb.emit(R.nn.conv2d(x, relax.const(w["conv_w"]), padding=1, data_layout="NHWC",
                                      kernel_layout="OHWI", out_dtype="int32"))
            acc = bb.emit(R.add(acc, relax.const(w["conv_b"])))
            h16 = _requantize(bb, acc, CONV_M, CONV_K, "int16")
            res = bb.emit(R.add(R.astype(h16, "int32"), R.astype(relax.const(w["pos"]), "int32")))
            h8 = _requantize(bb, res, HEAD_M, HEAD_K, "int8")
            tokens = bb.emit(R.reshape(h8, (height * width, channels)))
            logits = bb.emit(R.matmul(tokens, relax.const(w["head_w"]), out_dtype="int32"))
            shifted = bb.emit(R.subtract(logits, R.max(logits, axis=1, keepdims=True)))
            exponent = bb.emit(R.clip(R.right_shift(R.negative(shifted), relax.const(6, "int32")), 0, 14))
            exp = bb.emit(R.right_shift(relax.const(1 << 14, "int32"), exponent))
            prob = bb.emit(R.floor_divide(R.multiply(exp, relax.const(255, "int32")),
                                          R.sum(exp, axis=1, keepdims=True)))
            classes_map = bb.emit(R.astype(R.argmax(prob, axis=1), "uint8"))
            out = bb.emit_output(R.reshape(classes_map, (1, height, width)))
        bb.emit_func_output(out)
    return bb.get()


def _requantize_np(x: np.ndarray, multiplier: int, shift: int, dtype: str) -> np.ndarray:
    return requantize_reference(x, Dyadic(np.int64(multiplier), np.int64(shift)), dtype)


def toy_segmenter_reference(image: np.ndarray, channels: int = 8, classes: int = 4, seed: int = 0) -> np.ndarray:
    """numpy reference of :func:`toy_segmenter` (written from the op definitions, not from TVM)."""
    w = _weights(seed, channels, classes)
    _, height, width, _ = image.shape
    x = np.pad((image.astype(np.int16) - 128).astype(np.int8), ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc = np.zeros((1, height, width, channels), np.int32)
    for dy in range(3):
        for dx in range(3):
            patch = x[:, dy:dy + height, dx:dx + width, :].astype(np.int32)
            acc += np.einsum("nhwc,oc->nhwo", patch, w["conv_w"][:, dy, dx, :].astype(np.int32))
    acc += w["conv_b"]
    h16 = _requantize_np(acc, CONV_M, CONV_K, "int16")
    h8 = _requantize_np(h16.astype(np.int32) + w["pos"].astype(np.int32), HEAD_M, HEAD_K, "int8")
    logits = h8.reshape(height * width, channels).astype(np.int32) @ w["head_w"].astype(np.int32)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = (1 << 14) >> np.clip((-shifted) >> 6, 0, 14)
    prob = (exp * 255) // exp.sum(axis=1, keepdims=True)
    return prob.argmax(axis=1).astype(np.uint8).reshape(1, height, width)


def toy_vit_block(size: int = 64, patch: int = 8, dim: int = 64, heads: int = 4, classes: int = 5,
                  seed: int = 0) -> tvm.IRModule:
    """A one-block integer ViT segmenter, NCHW ``uint8[1,3,size,size] -> uint8[1,size,size]``.

    Patch-embedding conv, int16 residual stream, an I-LayerNorm-like normalisation with an integer
    Newton square root, 4-head attention with a shift-based softmax, a ReLU-like ``where``, a linear
    class head, nearest upsampling with ``take`` and argmax: the op mix of the real graph.
    """
    rng = np.random.default_rng(seed)
    tokens, grid, head_dim = (size // patch) ** 2, size // patch, dim // heads

    def int8_weight(*shape):
        return relax.const(rng.integers(-127, 128, shape).astype("int8"))

    def i32(value: int):
        return relax.const(value, "int32")

    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType((1, 3, size, size), "uint8"))
    with bb.function("main", [image]):
        with bb.dataflow():
            x = bb.emit(R.astype(R.subtract(R.astype(image, "int16"), relax.const(128, "int16")), "int8"))
            patches = bb.emit(R.nn.conv2d(x, int8_weight(dim, 3, patch, patch), strides=patch, out_dtype="int32"))
            embedded = bb.emit(R.permute_dims(R.reshape(patches, (dim, tokens)), [1, 0]))
            h = _requantize(bb, embedded, 1288490189, 38, "int16")
            h = bb.emit(R.add(h, relax.const(rng.integers(-500, 500, (tokens, dim)).astype("int16"))))
            h32 = bb.emit(R.astype(h, "int32"))
            centred = bb.emit(R.subtract(h32, R.floor_divide(R.sum(h32, axis=1, keepdims=True), i32(dim))))
            variance = bb.emit(R.floor_divide(R.sum(R.multiply(centred, centred), axis=1, keepdims=True), i32(dim)))
            root = bb.emit(R.full_like(variance, i32(1 << 15)))
            for _ in range(6):  # integer Newton square root
                step = R.floor_divide(variance, R.maximum(root, i32(1)))
                root = bb.emit(R.right_shift(R.add(root, step), i32(1)))
            normed = bb.emit(R.astype(R.clip(R.floor_divide(R.multiply(centred, i32(64)), R.maximum(root, i32(1))),
                                             -127, 127), "int8"))
            q, k, v = [_requantize(bb, R.matmul(normed, int8_weight(dim, dim), out_dtype="int32"),
                                   1288490189, 40, "int8") for _ in range(3)]
            q = bb.emit(R.permute_dims(R.reshape(q, (tokens, heads, head_dim)), [1, 0, 2]))
            k = bb.emit(R.permute_dims(R.reshape(k, (tokens, heads, head_dim)), [1, 2, 0]))
            v = bb.emit(R.permute_dims(R.reshape(v, (tokens, heads, head_dim)), [1, 0, 2]))
            scores = bb.emit(R.matmul(q, k, out_dtype="int32"))
            shifted = bb.emit(R.subtract(scores, R.max(scores, axis=2, keepdims=True)))
            exp = bb.emit(R.right_shift(i32(1 << 14), R.clip(R.right_shift(R.negative(shifted), i32(7)), 0, 14)))
            attention = bb.emit(R.astype(R.floor_divide(R.multiply(exp, i32(127)), R.sum(exp, axis=2, keepdims=True)),
                                         "int8"))
            mixed = bb.emit(R.reshape(R.permute_dims(R.matmul(attention, v, out_dtype="int32"), [1, 0, 2]),
                                      (tokens, dim)))
            residual = bb.emit(R.add(h, _requantize(bb, mixed, 1288490189, 38, "int16")))
            activated = bb.emit(R.where(R.greater(residual, relax.const(0, "int16")), residual,
                                        R.right_shift(residual, relax.const(4, "int16"))))
            logits = bb.emit(R.matmul(_requantize(bb, activated, 1288490189, 32, "int8"), int8_weight(dim, classes),
                                      out_dtype="int32"))
            masks = bb.emit(R.reshape(R.permute_dims(logits, [1, 0]), (1, classes, grid, grid)))
            nearest = relax.const(np.repeat(np.arange(grid), patch).astype("int32"))
            upsampled = bb.emit(R.take(R.take(masks, nearest, axis=2), nearest, axis=3))
            out = bb.emit_output(R.astype(R.argmax(upsampled, axis=1), "uint8"))
        bb.emit_func_output(out)
    return bb.get()
