"""Model import: ONNX, torch.export (.pt2) and TFLite files into canonical Relax.

``frontend.load(path)`` returns an :class:`ImportedModel` whose ``mod["main"]`` takes the image
first and then one weight per entry of ``params``; GELU and LayerNorm appear as single
``nn.gelu`` / ``nn.layer_norm`` calls whatever the source format (see docs/frontend.md).
"""
from .imported import ImportedModel
from .loader import detect_format, load

__all__ = ["ImportedModel", "detect_format", "load"]
