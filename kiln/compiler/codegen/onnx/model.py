"""Whole models: a compiled kiln graph as one ONNX model, and `export_onnx`.

The model's inputs are the graph's inputs, then its state (or, for an export, the state as
initializers); its outputs are the graph's outputs, then one per state update, named
`STATE.updated`. A training step is thus one ordinary inference model, state in and new state
out: forward, loss, gradients and optimizer update are all plain ONNX ops, no onnxruntime-
training. Every model passes `onnx.checker.check_model(full_check=True)` (strict shape
inference) before it leaves `emit_model`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from kiln.compiler.codegen.onnx.emitter import IR_VERSION, OPSET, Emitter, check_lowerings
from kiln.compiler.pass_manager import compile_graph
from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.graph import Graph
from kiln.ir.types import numpy_dtype


@dataclass(frozen=True)
class EmittedModel:
    """An ONNX model and how its names map to the graph's.

    inputs: the graph's inputs (their ONNX names are the same); state: the state read as
    ONNX inputs, same names; outputs: IR output name -> ONNX output name; updates: state
    name -> the ONNX output holding its new value; origins: the name of each ONNX node of
    the model -> the index of the graph's node it was lowered from, -1 inside a Scan body
    (a profile's map).
    """

    model: onnx.ModelProto
    inputs: tuple[str, ...]
    state: tuple[str, ...]
    outputs: dict[str, str]
    updates: dict[str, str]
    origins: dict[str, int] = field(default_factory=dict)


def _unique(name: str, taken: set[str]) -> str:
    result, k = name, 1
    while result in taken:
        result = f"{name}.{k}"
        k += 1
    taken.add(result)
    return result


def emit_model(graph: Graph, *, weights: Mapping[str, np.ndarray] | None = None,
               check: bool = True) -> EmittedModel:
    """The ONNX model of `graph` (already optimized: see compile_graph).

    With `weights`, the state becomes initializers holding those arrays (an inference model
    that needs nothing but its inputs); without, the state is read as inputs.
    Raises KilnValueError at once, naming the op and value, when an op has no lowering.
    """
    check_lowerings(graph)
    taken = {v.name for v in (*graph.inputs, *graph.state)}
    outputs = {name: _unique(name, taken) for name, _ in graph.outputs}
    updates = {state: _unique(f"{state}.updated", taken) for state, _ in graph.updates}
    em = Emitter(sorted(taken))
    env: dict[str, str] = {}
    for value in graph.inputs:
        em.declare_input(value.name, value.type)
        env[value.name] = value.name
    initializers = []
    for value in graph.state:
        env[value.name] = value.name
        if weights is None:
            em.declare_input(value.name, value.type)
            continue
        initializers.append(numpy_helper.from_array(_weight(graph, value, weights), value.name))
    em.emit_nodes(graph.nodes, env)
    em.declare_outputs([*((outputs[name], env[v.name], v.type) for name, v in graph.outputs),
                        *((updates[state], env[v.name], v.type) for state, v in graph.updates)])
    proto = helper.make_graph(em.root.nodes, graph.name, em.root.inputs, em.root.outputs,
                              initializer=[*initializers, *em.initializers])
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiln", ir_version=IR_VERSION,
                              doc_string=f"kiln graph @{graph.name}")
    if check:
        onnx.checker.check_model(model, full_check=True)
    state = tuple(v.name for v in graph.state) if weights is None else ()
    return EmittedModel(model, tuple(v.name for v in graph.inputs), state, outputs, updates,
                        em.origins)


def _weight(graph: Graph, value, weights: Mapping[str, np.ndarray]) -> np.ndarray:  # noqa: ANN001
    if value.name not in weights:
        raise KilnValueError(f"@{graph.name}: no value given for state %{value.name}")
    array = np.asarray(weights[value.name])
    t = value.type
    if array.dtype != numpy_dtype(t.dtype):
        raise KilnTypeError(f"@{graph.name}: %{value.name} expected dtype {t.dtype}. "
                            f"Received: {array.dtype}")
    if array.ndim != t.rank or any(isinstance(d, int) and d != a
                                   for d, a in zip(t.shape, array.shape, strict=True)):
        raise KilnValueError(f"@{graph.name}: %{value.name} expected shape {t}. "
                             f"Received: shape {array.shape}")
    return array


def export_onnx(graph: Graph, state: Mapping[str, np.ndarray], path: str | os.PathLike,
                *, level: int = 2) -> onnx.ModelProto:
    """Write `graph` (an inference graph: no state updates) as a standalone ONNX model with
    the state's arrays as initializers, after the -O`level` pipeline. The file opens in a
    bare onnxruntime.InferenceSession; symbolic dims (the batch) stay symbolic. The write is
    atomic: a temporary file in the same folder, then a rename."""
    if graph.updates:
        raise KilnValueError(
            f"export_onnx writes an inference model; expected a graph without state updates. "
            f"Received: @{graph.name} updating {', '.join(s for s, _ in graph.updates)}")
    compiled, _ = compile_graph(graph, level)
    model = emit_model(compiled, weights=state).model
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return model
