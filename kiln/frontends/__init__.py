"""Frontends that produce kiln IR: the Keras-style API and the ONNX importer."""
