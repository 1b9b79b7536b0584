"""Compile entry-point graphs for a backend and write them as one artifact: what a Keras
model's save() and an imported ONNX model's save() both do."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from kiln.compiler.artifact import Artifact, write_artifact
from kiln.compiler.pass_manager import CompileOptions
from kiln.ir.graph import Graph


def backend_code(backend: str, entry: str, graph: Graph, optimized: Graph) -> tuple[Any, Any]:
    """(ONNX model bytes, kernel source) of one entry point for the backend, or None."""
    if backend == "onnxruntime":
        from kiln.compiler.codegen.onnx import emit_model

        return emit_model(optimized).model.SerializeToString(), None
    if backend == "numba":
        from kiln.compiler.codegen.numba import generate_driver, module_source

        driver = generate_driver(optimized)
        return None, module_source([driver], f"kiln: generated Numba driver of @{graph.name} "
                                             f"(entry point {entry!r}).")
    return None, None


def save_compiled(path: str | os.PathLike, *, backend: str, model_config: Mapping[str, Any],
                  graphs: Mapping[str, Graph], state: Mapping[str, np.ndarray],
                  options: CompileOptions,
                  state_roles: Mapping[str, str] | None = None) -> Artifact:
    """Each graph through the pass pipeline of `options`, its backend code, and the whole
    written atomically as an artifact (see write_artifact)."""
    optimized, onnx_models, kernels = {}, {}, {}
    for entry, graph in graphs.items():
        optimized[entry], _ = options.compile(entry, graph)
        onnx_bytes, source = backend_code(backend, entry, graph, optimized[entry])
        if onnx_bytes is not None:
            onnx_models[entry] = onnx_bytes
        if source is not None:
            kernels[entry] = source
    return write_artifact(path, backend=backend, model_config=model_config, graphs=graphs,
                          optimized=optimized, state=state,
                          compile_options=options.as_dict(), onnx_models=onnx_models,
                          kernel_source=kernels, state_roles=state_roles)
