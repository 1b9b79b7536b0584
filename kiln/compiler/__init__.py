"""Passes, the pass manager, codegen (numba, cuda, onnx) and the artifact format."""
