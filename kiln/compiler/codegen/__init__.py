"""Code generators of the backends, one package each, with its lowering table (`LOWERINGS`,
op name -> lowering): `numba` writes one @njit driver per entry point (CPU), `onnx` emits
an ONNX model for onnxruntime."""
