"""``quantize_model``: a float imported model + calibration images -> an integer-only Relax module.

Pipeline: bind the weights -> convolutions to NCHW/OIHW -> :class:`FoldInputNormalization` -> :func:`calibrate` (TVM llvm build of
the float module, every intermediate) -> :func:`integerize` (the integer program) -> integer Relax
``main(image: uint8 [1,H,W,3]) -> uint8 [1,H,W]`` class map -> :class:`VerifyIntegerOnly`.
"""
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from common.errors import UserError

from .calibrate import OBSERVERS, Calibration, calibrate
from .fold_input_normalization import FoldInputNormalization
from .integer_program import Program
from .integerize import integerize
from .nonlinear import GELU_VARIANTS, SOFTMAX_DTYPES
from .verify_integer_only import verify_integer_only


@dataclass
class QuantizedModel:
    """The integer model: its program (numpy reference), Relax module and what it was made from."""

    program: Program
    mod: tvm.IRModule  # integer-only main(image uint8 NHWC) -> uint8 class map
    float_mod: tvm.IRModule  # the float module it approximates (weights bound, normalisation folded)
    calibration: Calibration
    observer: str
    gelu: str
    softmax_dtype: str
    headroom: bool

    @property
    def input_shape(self) -> tuple:
        return self.program.input_shape

    def reference(self, image: np.ndarray) -> np.ndarray:
        """numpy integer reference: uint8 class map [1,H,W] of one uint8 image [1,H,W,3]."""
        return self.program.run(image)[self.program.output]

    def intermediates(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Every value of the integer program for one image (see ``Program.run``)."""
        return self.program.run(image)

    def debug_mod(self) -> tvm.IRModule:
        """The integer module returning every program value, in ``program.ops`` order."""
        return self.program.to_relax(debug=True)

    @property
    def weight_bytes(self) -> int:
        """Bytes of every integer constant of the program (weights, biases, multipliers, tables)."""
        return self.program.weight_bytes()

    @property
    def float_weight_bytes(self) -> int:
        """Bytes of the float constants of the float model."""
        return float_constant_bytes(self.float_mod)


def float_constant_bytes(mod: tvm.IRModule) -> int:
    seen, total = set(), 0

    def visit(expr):
        nonlocal total
        if isinstance(expr, tvm.ir.Constant) and hasattr(expr.value, "numpy") and expr not in seen:
            seen.add(expr)
            total += expr.value.numpy().nbytes

    relax.analysis.post_order_visit(mod["main"], visit)
    return total


def model_inputs(imported, images) -> list[np.ndarray]:
    """uint8 NHWC images -> the float model's inputs (one [1,C,H,W] float32 tensor per image)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    _, channels, height, width = imported.input_shape
    if images.ndim != 4 or images.shape[1:] != (height, width, channels) or images.dtype != np.uint8 or not len(images):
        raise UserError(f"calibration images must be uint8 [N,{height},{width},{channels}] (N >= 1), got "
                        f"{images.dtype} {list(images.shape)}; pass raw camera pixels, e.g. segdata.load_split")
    return [img.transpose(2, 0, 1)[None].astype(np.float32) for img in images]


def float_module(imported) -> tvm.IRModule:
    """The imported model with its weights bound as constants and its input normalisation folded."""
    from frontend.weights import bind_weights

    if len(imported.input_shape) != 4 or not str(imported.input_dtype).startswith("float"):
        raise UserError(f"{imported.source_path or 'model'}: input must be one float NCHW image, got "
                        f"{imported.input_dtype} {list(imported.input_shape)}")
    bound, _ = bind_weights(imported.mod, imported.params)
    nchw = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NCHW", "OIHW"]})(bound)  # e.g. TFLite's NHWC
    return FoldInputNormalization()(relax.transform.FoldConstant()(nchw))


def quantize_model(imported, calibration_images, *, observer: str = "minmax", gelu: str = "lambda_shift",
                   softmax_dtype: str = "int16", headroom: bool = True, progress: bool = True) -> QuantizedModel:
    """Calibrate on ``calibration_images`` (uint8 [N,H,W,3]; one is the default use) and integerize.

    ``observer``: activation clipping (minmax | percentile | mse); ``gelu``: lambda_shift | shift | poly;
    ``softmax_dtype``: Shiftmax output, int16 (scale 2**-15, default) or uint8 (scale 2**-8: too coarse
    for rows of 256 tokens, where most probabilities are below one LSB); ``headroom``: widen the
    calibrated activation ranges (``integerize.RANGE_HEADROOM``) for images unlike the calibration one.
    """
    if observer not in OBSERVERS:
        raise UserError(f"unknown observer {observer!r}; use one of {', '.join(OBSERVERS)}")
    if gelu not in GELU_VARIANTS:
        raise UserError(f"unknown GELU variant {gelu!r}; use one of {', '.join(GELU_VARIANTS)}")
    if softmax_dtype not in SOFTMAX_DTYPES:
        raise UserError(f"unknown softmax dtype {softmax_dtype!r}; use one of {', '.join(SOFTMAX_DTYPES)}")
    inputs = model_inputs(imported, calibration_images)
    mod = float_module(imported)
    calibration = calibrate(mod, inputs, progress=progress)
    program = integerize(mod["main"], calibration, observer=observer, gelu=gelu, softmax_dtype=softmax_dtype,
                         headroom=headroom)
    integer_mod = verify_integer_only(program.to_relax())
    return QuantizedModel(program, integer_mod, mod, calibration, observer, gelu, softmax_dtype, headroom)
