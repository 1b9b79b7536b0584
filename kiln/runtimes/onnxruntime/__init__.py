"""The onnxruntime backend: entry points emitted as standard ONNX models (training steps
included) and run by onnxruntime with the state resident; `export_onnx` writes a standalone
inference model."""

from kiln.compiler.codegen.onnx import export_onnx
from kiln.runtimes.onnxruntime.executable import OnnxRuntimeExecutable, session_options

__all__ = ["OnnxRuntimeExecutable", "export_onnx", "session_options"]
