"""Executors of compiled graphs, behind one face: `create_executable(backend, graphs, state)`.

An Executable runs named entry points (`run(entry, inputs) -> outputs`) and keeps the state
it was given resident, updating those very arrays in place after each call, so a model's
weights and its runtime never drift apart. Backend names: reference, numba, numba-cuda,
onnxruntime; `KILN_BACKEND` or `set_backend` choose the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from kiln.compiler.pass_manager import CompileOptions
from kiln.ir import Graph, KilnValueError

BACKENDS = ("reference", "numba", "numba-cuda", "onnxruntime")
# Backends whose runtime exists in this build; the others are refused with a clear error.
AVAILABLE = ("reference", "numba", "numba-cuda", "onnxruntime")

_default: dict[str, str | None] = {"backend": None}


class Executable(Protocol):
    backend: str
    state: dict[str, np.ndarray]

    def run(self, entry: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def optimized(self, entry: str) -> Graph: ...


def ordered_inputs(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                   ) -> list[np.ndarray]:
    """The inputs of a call in the graph's order: a mapping checked by name (missing and
    unknown names refused), a sequence by count. Arrays are returned as given."""
    if isinstance(inputs, Mapping):
        names = [v.name for v in graph.inputs]
        missing = [n for n in names if n not in inputs]
        if missing:
            raise KilnValueError(f"@{graph.name}: no value given for input %{missing[0]}; "
                                 f"expected inputs {names}")
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise KilnValueError(f"@{graph.name}: unknown input {unknown[0]!r}; expected "
                                 f"inputs {names}")
        return [inputs[n] for n in names]
    arrays = list(inputs)
    if len(arrays) != len(graph.inputs):
        raise KilnValueError(f"@{graph.name}: expected {len(graph.inputs)} inputs. "
                             f"Received: {len(arrays)}")
    return arrays


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise KilnValueError(f"Unknown backend {name!r}; expected one of {', '.join(BACKENDS)}. "
                             f"Received: backend={name!r}")
    if name not in AVAILABLE:
        raise KilnValueError(f"backend {name!r} is not built yet in this version of kiln; "
                             f"available: {', '.join(AVAILABLE)}")
    return name


def set_backend(name: str) -> None:
    """Make `name` the default backend of models compiled from now on."""
    _default["backend"] = check_backend(name)


def get_backend() -> str:
    if _default["backend"] is not None:
        return _default["backend"]
    return check_backend(os.environ.get("KILN_BACKEND", "numba"))


def create_executable(backend: str | None, graphs: Mapping[str, Graph],
                      state: dict[str, np.ndarray],
                      options: CompileOptions | None = None) -> Executable:
    """An executable of `backend` (default: get_backend()) running `graphs`, compiled with
    `options` (pass level and IR dumps), over the `state` arrays it updates in place."""
    backend = check_backend(backend) if backend else get_backend()
    if backend == "numba":
        from kiln.runtimes.numba import NumbaExecutable

        return NumbaExecutable(graphs, state, options)
    if backend == "numba-cuda":
        from kiln.runtimes.numba_cuda import NumbaCudaExecutable

        return NumbaCudaExecutable(graphs, state, options)
    if backend == "onnxruntime":
        from kiln.runtimes.onnxruntime import OnnxRuntimeExecutable

        return OnnxRuntimeExecutable(graphs, state, compile_options=options)
    from kiln.runtimes.reference import ReferenceExecutable

    return ReferenceExecutable(graphs, state, options)
