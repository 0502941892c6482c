"""Integer-only Relax passes: calibrate a float Segmenter on one image and rewrite it to integers.

``quantize_model(imported, calibration_images, observer=..., gelu=...)`` is the entry point; see
docs/passes.md. Passes: :class:`FoldInputNormalization` (float -> float), :func:`calibrate`,
:func:`integerize` (float graph -> integer program -> integer Relax), :class:`VerifyIntegerOnly`.
"""
from .calibrate import OBSERVERS, Calibration, calibrate
from .fold_input_normalization import FoldInputNormalization
from .integer_program import Program
from .integerize import integerize
from .nonlinear import GELU_VARIANTS
from .overflow import program_bounds
from .quantize import QuantizedModel, quantize_model
from .verify_integer_only import IntegerOnlyError, VerifyIntegerOnly, float_offenders, verify_integer_only

__all__ = ["OBSERVERS", "GELU_VARIANTS", "Calibration", "calibrate", "FoldInputNormalization", "Program",
           "integerize", "program_bounds", "QuantizedModel", "quantize_model", "IntegerOnlyError",
           "VerifyIntegerOnly", "float_offenders", "verify_integer_only"]
