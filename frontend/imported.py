"""What every import path returns: a Relax module, its weights and its input spec."""
from dataclasses import dataclass, field

import numpy as np
import tvm


@dataclass
class ImportedModel:
    """A float model imported into TVM Relax.

    ``mod["main"]`` takes the input tensor first, then one argument per entry of ``params``
    (in order). ``input_shape`` is the model's input as its source format states it
    (e.g. NCHW float32 for the reference Segmenter).
    """

    mod: tvm.IRModule
    params: list[np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    source_format: str  # "onnx" | "tflite" | "torch"
    source_path: str = ""
    notes: dict = field(default_factory=dict)
