"""The reference runtime: interprets any graph with NumPy, node by node.

It is the oracle every backend is tested against, so it favours clarity and strict checks
(each result's dtype and shape against the IR's type) over speed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from kiln.compiler.pass_manager import CompileOptions
from kiln.ir import Graph, Value
from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.registry import RefContext, get_op
from kiln.ir.types import numpy_dtype
from kiln.runtimes import profiling


def bind_dims(values: Sequence[Value], arrays: Sequence[np.ndarray], where: str) -> dict[str, int]:
    """Check arrays against their declared types; returns the size of each symbol."""
    dims: dict[str, int] = {}
    for value, array in zip(values, arrays):
        t = value.type
        if array.dtype != numpy_dtype(t.dtype):
            raise KilnTypeError(
                f"{where}: %{value.name} expected dtype {t.dtype}. Received: {array.dtype}"
            )
        if array.ndim != t.rank:
            raise KilnValueError(
                f"{where}: %{value.name} expected shape {t}. Received: shape {array.shape}"
            )
        for declared, actual in zip(t.shape, array.shape):
            if isinstance(declared, int):
                ok = declared == actual
            else:
                ok = dims.setdefault(declared, actual) == actual
            if not ok:
                raise KilnValueError(
                    f"{where}: %{value.name} expected shape {t} (with {dims}). "
                    f"Received: shape {array.shape}"
                )
    return dims


def evaluate(graph: Graph, args: Sequence[np.ndarray], state: Sequence[np.ndarray] = (),
             timings: list[float] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run `graph` on positional inputs and state; returns (outputs, new state values).
    With `timings` (a profile's), each node's seconds are appended to it, in order."""
    if len(args) != len(graph.inputs) or len(state) != len(graph.state):
        raise KilnValueError(
            f"@{graph.name}: expected {len(graph.inputs)} inputs and {len(graph.state)} state "
            f"values. Received: {len(args)} and {len(state)}"
        )
    args = [np.asarray(a) for a in args]
    state = [np.asarray(s) for s in state]
    dims = bind_dims((*graph.inputs, *graph.state), (*args, *state), f"@{graph.name}")
    env: dict[str, np.ndarray] = {v.name: a for v, a in zip(graph.inputs, args)}
    env.update({v.name: s for v, s in zip(graph.state, state)})
    for node in graph.nodes:
        start = time.perf_counter() if timings is not None else 0.0
        opdef = get_op(node.op)
        shapes = [o.type.resolve(dims) for o in node.outputs]
        ctx = RefContext(node, shapes, lambda g, a: evaluate(g, a)[0])
        result = opdef.reference(ctx, *(env[v.name] for v in node.inputs), **node.attr)
        if timings is not None:
            timings.append(time.perf_counter() - start)
        results = result if isinstance(result, (tuple, list)) else (result,)
        for out, array, shape in zip(node.outputs, results, shapes, strict=True):
            array = np.asarray(array)
            if array.dtype != numpy_dtype(out.type.dtype) or array.shape != shape:
                raise AssertionError(
                    f"reference of {node.op} gave {array.dtype}{list(array.shape)} for "
                    f"%{out.name}: {out.type} (resolved {list(shape)})"
                )
            env[out.name] = array
    outputs = [env[v.name] for v in graph.output_values]
    updates = dict(graph.updates)
    new_state = [env[updates[v.name].name] if v.name in updates else env[v.name]
                 for v in graph.state]
    return outputs, new_state


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
              state: Mapping[str, np.ndarray] | None = None,
              timings: list[float] | None = None,
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run by name: returns ({output name: array}, {state name: new array})."""
    if isinstance(inputs, Mapping):
        missing = [v.name for v in graph.inputs if v.name not in inputs]
        if missing:
            raise KilnValueError(f"@{graph.name}: no value given for input %{missing[0]}")
        args = [inputs[v.name] for v in graph.inputs]
    else:
        args = list(inputs)
    state = state or {}
    missing = [v.name for v in graph.state if v.name not in state]
    if missing:
        raise KilnValueError(f"@{graph.name}: no value given for state %{missing[0]}")
    outputs, new_state = evaluate(graph, args, [state[v.name] for v in graph.state], timings)
    return (dict(zip(graph.output_names, outputs)),
            {v.name: s for v, s in zip(graph.state, new_state)})


class ReferenceExecutable:
    """Keeps state resident between calls and applies each call's updates in place, like a
    backend: the arrays given as state are the arrays that change."""

    backend = "reference"

    def __init__(self, graphs: Mapping[str, Graph], state: dict[str, np.ndarray],
                 options: CompileOptions | None = None):
        self.graphs = dict(graphs)
        self.state = state
        self.options = options or CompileOptions()
        self._optimized: dict[str, Graph] = {}

    def optimized(self, entry: str) -> Graph:
        """The entry point after the pass pipeline. The reference runtime interprets graphs
        as written (it is the oracle the passes are tested against); this is for reading."""
        if entry not in self._optimized:
            self._optimized[entry], _ = self.options.compile(entry, self.graphs[entry])
        return self._optimized[entry]

    def run(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
            timings: list[float] | None = None) -> dict[str, np.ndarray]:
        if entry not in self.graphs:
            raise KilnValueError(f"no entry point {entry!r}; expected one of {sorted(self.graphs)}")
        graph = self.graphs[entry]
        missing = [v.name for v in graph.state if v.name not in self.state]
        if missing:
            raise KilnValueError(f"@{graph.name}: no value given for state %{missing[0]}")
        outputs, new_state = run_graph(graph, inputs, {v.name: self.state[v.name]
                                                        for v in graph.state}, timings)
        updated = [self.state[name] for name, _ in graph.updates]
        for key, array in outputs.items():  # an output that is updated state keeps its value
            if any(array is s for s in updated):
                outputs[key] = array.copy()
        for name, _ in graph.updates:
            self.state[name][...] = new_state[name]
        return outputs

    def profile(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                repeats: int = 10, warmup: int = 2) -> profiling.Profile:
        """Per node of the graph as written (what this runtime interprets), the median time
        of its NumPy reference over `repeats` calls after `warmup`, on copies of the state
        the entry point updates: the executable's state does not change."""
        profiling.check_repeats(repeats, warmup)
        graph = profiling.entry_graph(self.graphs, entry)
        other = ReferenceExecutable({entry: graph}, profiling.state_copy(graph, self.state),
                                    self.options)
        call_seconds = profiling.time_calls(lambda: other.run(entry, inputs), repeats, warmup)

        def call() -> list[float]:
            timings: list[float] = []
            other.run(entry, inputs, timings)
            return timings

        seconds = profiling.timed_rows(call, repeats, warmup)
        return profiling.Profile(self.backend, entry, graph.name, "input",
                                 profiling.input_summary(graph, inputs), repeats, call_seconds,
                                 float(np.median(seconds.sum(axis=1))),
                                 profiling.node_rows(graph.nodes, seconds))
