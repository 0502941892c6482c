"""TFLite full-int8 peer: the reference Segmenter ported to TensorFlow, quantized by TFLite's converter.

``tf_port(model)`` rewrites ``segmenter.model.Segmenter``'s forward pass with TensorFlow ops (NHWC,
batch 1), the weights taken from the torch checkpoint. ``convert_full_int8`` runs
``tf.lite.TFLiteConverter`` post-training full-integer quantization on it (Optimize.DEFAULT,
TFLITE_BUILTINS_INT8 only, a representative dataset of calibration scenes, uint8 image in, int8
logits out) and ``full_int8_class_maps`` runs the result with ai-edge-litert on the test split
(``relax_passes.benchmark`` scores the class maps).

Every tensor of the converted graph is int8/int32, yet it is not integer-only in this project's
sense: LayerNorm stays MEAN/SQUARED_DIFFERENCE/RSQRT on 8-bit values, and the int8 kernels fill their
softmax/GELU lookup tables and requantization multipliers with float math on the device when the
interpreter prepares the model. The interpreter runs TFLite's builtin int8 kernels (no XNNPACK
delegate, whose int8 arithmetic may differ).
Needs ``tensorflow-cpu`` (``pip install -e .[peers]``) and torch (to read the checkpoint).
"""
import collections
import os

import numpy as np
from tqdm import tqdm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banners
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every LayerNorm of the Segmenter
NOTE = ("TFLite full-int8 (TFLiteConverter post-training quantization, builtin int8 kernels of ai-edge-litert): "
        "int8 tensors throughout, but LayerNorm is MEAN/SQUARED_DIFFERENCE/RSQRT on int8, softmax and GELU are "
        "lookup tables and the requantize multipliers are computed in float when the model is loaded: "
        "not integer-only")


def tensorflow_missing() -> str | None:
    """Why the peer cannot run here (one line), or None when tensorflow, ai-edge-litert and torch import."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        import tensorflow  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed (pip install -e .[dev,train,peers])"
    return None


def tf_port(model):
    """``tf.function`` float32 image [1,H,W,3] (0..255) -> logits [1,H,W,classes], weights of torch ``model``."""
    import tensorflow as tf

    c = model.config
    w = {name: value.detach().numpy().astype(np.float32) for name, value in model.state_dict().items()}
    head_dim = c.dim // c.heads

    def linear(x, name):
        y = tf.matmul(x, w[f"{name}.weight"].T)
        return y + w[f"{name}.bias"] if f"{name}.bias" in w else y

    def layer_norm(x, name):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPS) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def attention(x, name):
        tokens = x.shape[0]
        qkv = tf.transpose(tf.reshape(linear(x, f"{name}.qkv"), [tokens, 3, c.heads, head_dim]), [1, 2, 0, 3])
        scores = tf.matmul(qkv[0], qkv[1], transpose_b=True) * head_dim ** -0.5
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), qkv[2])
        return linear(tf.reshape(tf.transpose(out, [1, 0, 2]), [tokens, c.dim]), f"{name}.proj")

    def block(x, name):
        x = x + attention(layer_norm(x, f"{name}.norm1"), f"{name}.attn")
        hidden = tf.nn.gelu(linear(layer_norm(x, f"{name}.norm2"), f"{name}.fc1"), approximate=False)
        return x + linear(hidden, f"{name}.fc2")

    tokens = c.grid * c.grid

    @tf.function(input_signature=[tf.TensorSpec([1, c.image_size, c.image_size, 3], tf.float32, name="image")])
    def forward(image):
        x = (image / 255.0 - w["pixel_mean"].reshape(3)) / w["pixel_std"].reshape(3)
        x = tf.nn.conv2d(x, w["patch_embed.weight"].transpose(2, 3, 1, 0), c.patch_size, "VALID")
        x = tf.reshape(x + w["patch_embed.bias"], [tokens, c.dim]) + w["pos_embed"][0]
        for i in range(c.depth):
            x = block(x, f"encoder.{i}")
        x = tf.concat([layer_norm(x, "encoder_norm"), w["class_embed"][0]], axis=0)
        for i in range(c.decoder_depth):
            x = block(x, f"decoder.{i}")
        x = layer_norm(x, "decoder_norm")
        patches, classes = linear(x[:tokens], "patch_proj"), linear(x[tokens:], "class_proj")
        masks = layer_norm(tf.matmul(patches, classes, transpose_b=True) * c.dim ** -0.5, "mask_norm")
        masks = tf.reshape(masks, [1, c.grid, c.grid, c.num_classes])
        return tf.raw_ops.ResizeNearestNeighbor(images=masks, size=[c.image_size, c.image_size],
                                                align_corners=False, half_pixel_centers=False)  # = torch "nearest"

    return forward


def convert_full_int8(forward, calibration) -> bytes:
    """TFLite flatbuffer of ``forward`` with int8 weights and activations, calibrated on uint8 images [N,H,W,3]."""
    import tensorflow as tf

    def representative_dataset():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    holder = tf.Module()
    holder.forward = forward
    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = representative_dataset
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    return converter.convert()


class LiteRTRunner:
    """ai-edge-litert interpreter on a TFLite flatbuffer: raw uint8 image [H,W,3] -> class map uint8 [H,W]."""

    def __init__(self, flatbuffer: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interpreter = Interpreter(model_content=flatbuffer, num_threads=1,
                                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def quantize_input(self, image):
        """The image in the input tensor's dtype (its scale/zero point come from the calibration range)."""
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(self.input["dtype"])
        q = np.round(image.astype(np.float64) / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(self.input["dtype"])[None]

    def logits(self, image) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(image))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])[0]

    def class_map(self, image) -> np.ndarray:
        return self.logits(image).argmax(-1).astype(np.uint8)

    def op_dtypes(self) -> list[tuple[str, set]]:
        """(op name, dtypes of all its operands and results, weights included) for each op of the graph."""
        return [(op["op_name"], {np.dtype(t).name for t in [*op["operand_types"], *op["result_types"]]})
                for op in self.interpreter._get_ops_details()]

    def float_ops(self) -> list[str]:
        """Names of the ops that read or write a float tensor (empty for a full-int8 model)."""
        return sorted({name for name, kinds in self.op_dtypes() if kinds & {"float32", "float16"}})


def full_int8_class_maps(model, calibration, test_images, counts=(1, 32), parity_images=8):
    """For each n in ``counts``: (n, class maps uint8 [N,H,W] of the full-int8 TFLite model calibrated on the
    first n ``calibration`` scenes, facts about the converted model); the float port is first checked
    against torch on ``parity_images`` test scenes (max |logit difference| and argmax agreement)."""
    import torch

    forward = tf_port(model)
    with torch.no_grad():
        expected = [model(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))).numpy()[0]
                    for img in test_images[:parity_images]]
    got = [forward(img[None].astype(np.float32)).numpy()[0].transpose(2, 0, 1) for img in test_images[:parity_images]]
    parity = {"images": len(got), "max_abs_logit_diff": float(max(np.abs(g - e).max() for g, e in zip(got, expected))),
              "argmax_identical": all(np.array_equal(g.argmax(0), e.argmax(0)) for g, e in zip(got, expected))}
    for n in counts:
        runner = LiteRTRunner(convert_full_int8(forward, calibration[:n]))
        maps = np.stack([runner.class_map(img) for img in tqdm(test_images, desc=f"TFLite int8 ({n} calib.)",
                                                                unit="img", leave=False)])
        scale, zero_point = runner.input["quantization"]
        facts = {"float_port_vs_torch": parity, "ops_with_float_tensors": runner.float_ops(),
                 "op_counts": dict(sorted(collections.Counter(name for name, _ in runner.op_dtypes()).items())),
                 "input_scale_zero_point": [float(scale), int(zero_point)]}
        yield n, maps, facts
