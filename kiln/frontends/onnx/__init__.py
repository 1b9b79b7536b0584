"""The ONNX importer: an .onnx file becomes kiln IR.

    from kiln.frontends.onnx import import_onnx
    model = import_onnx("model.onnx")
    y = model.predict(x)
    model.save("model.kiln", backend="numba")
"""

from kiln.frontends.onnx.importer import OnnxImportError, import_graph
from kiln.frontends.onnx.model import OnnxModel, import_onnx

__all__ = ["OnnxImportError", "OnnxModel", "import_graph", "import_onnx"]
