"""Executors of compiled graphs: reference (NumPy), numba, numba-cuda, onnxruntime."""
