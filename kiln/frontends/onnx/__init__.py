"""The ONNX importer: an .onnx file becomes kiln IR."""
