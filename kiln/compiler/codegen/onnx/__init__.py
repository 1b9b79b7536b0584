"""The ONNX code generator: compiled kiln graphs as standard ONNX models (opset 18).

`LOWERINGS` maps every IR op name to its ONNX lowering (one module per op family fills it);
`emit_model(graph)` builds the model of a graph, `export_onnx(graph, state, path)` writes a
standalone inference model with the weights inside.
"""

from kiln.compiler.codegen.onnx import (  # noqa: F401  (each fills LOWERINGS)
    control,
    elementwise,
    image,
    indexing,
    nn,
    random,
    reduce,
    shape,
)
from kiln.compiler.codegen.onnx.emitter import LOWERINGS, ONNX_DTYPES, OPSET, check_lowerings
from kiln.compiler.codegen.onnx.model import EmittedModel, emit_model, export_onnx

__all__ = ["LOWERINGS", "ONNX_DTYPES", "OPSET", "EmittedModel", "check_lowerings",
           "emit_model", "export_onnx"]
