"""Where an entry point's time goes: per node of the graph a backend ran, the median time of
repeated calls. Each executable's `profile(entry, inputs)` measures what its backend can
(numba: a timed copy of the driver; onnxruntime: its own profiler, mapped back to kiln's
nodes; reference: each node's NumPy call); `kiln profile` prints the result.

A profile never changes the executable's state: the calls run on copies of the state the
entry point updates, so profiling a training step trains nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kiln.compiler.codegen.numba.source import ir_line
from kiln.ir import Graph, KilnValueError
from kiln.ir.graph import Node

OUTPUTS_ROW = "(outputs and state updates)"  # a numba row: the copies after the last node
BACKENDS = ("reference", "numba", "onnxruntime")  # the executables with a `profile`


@dataclass(frozen=True)
class NodeTime:
    """One row of a profile: a node of the graph that ran (index -1: time no single node of
    it accounts for, such as a runtime's own work; `op` then says what it was)."""

    index: int
    op: str
    outputs: tuple[str, ...]
    line: str  # the node's IR line, or a description of the row
    seconds: float  # median per call


@dataclass
class Profile:
    """A backend's per-node times for one entry point on one set of inputs.

    call_seconds is the median of plain calls (as `run` costs); timed_seconds the median of
    the timed calls' totals, which include the measurement's own cost, so the rows sum to
    about timed_seconds, not call_seconds."""

    backend: str
    entry: str
    graph: str
    stage: str  # the graph the rows are nodes of: "optimized" or "input" (as written)
    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype)
    repeats: int
    call_seconds: float
    timed_seconds: float
    nodes: list[NodeTime] = field(default_factory=list)

    def by_op(self) -> list[tuple[str, int, float]]:
        """(op, rows, seconds) summed over the rows of each op, slowest first; a fused
        node counts as its kind ("fused:gemm")."""
        sums: dict[str, list[float]] = {}
        for row in self.nodes:
            entry = sums.setdefault(row.op, [0, 0.0])
            entry[0] += 1
            entry[1] += row.seconds
        return sorted(((op, int(n), s) for op, (n, s) in sums.items()),
                      key=lambda item: -item[2])

    def table(self, top: int | None = None) -> str:
        """The profile as text: a heading, the slowest rows (all if `top` is None) with
        their share and running total, and the sum per op."""
        total = sum(row.seconds for row in self.nodes) or 1.0
        shapes = ", ".join(f"{k} {_shape_text(s)} {d}" for k, (s, d) in self.inputs.items())
        lines = [f"profile of {self.entry} ({self.backend}, {self.stage} graph @{self.graph}"
                 f", {len(self.nodes)} rows): {shapes}",
                 f"median of {self.repeats} calls: {_ms(self.call_seconds)} plain, "
                 f"{_ms(self.timed_seconds)} timed",
                 "",
                 f"{'ms':>9} {'%':>6} {'cum %':>6}  {'op':<22} node"]
        rows = sorted(self.nodes, key=lambda r: -r.seconds)
        running = 0.0
        for row in rows[:top] if top is not None else rows:
            running += row.seconds
            label = row.line if len(row.line) <= 100 else row.line[:97] + "..."
            lines.append(f"{row.seconds * 1e3:9.3f} {100 * row.seconds / total:6.1f} "
                         f"{100 * running / total:6.1f}  {row.op:<22} {label}")
        if top is not None and len(rows) > top:
            rest = sum(r.seconds for r in rows[top:])
            lines.append(f"{rest * 1e3:9.3f} {100 * rest / total:6.1f} {100.0:6.1f}  "
                         f"{'':<22} ({len(rows) - top} more rows)")
        lines += ["", f"{'ms':>9} {'%':>6}  {'rows':>4}  op"]
        for op, n, seconds in self.by_op():
            lines.append(f"{seconds * 1e3:9.3f} {100 * seconds / total:6.1f}  {n:4d}  {op}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The profile as JSON-ready values (seconds as floats)."""
        return {"backend": self.backend, "entry": self.entry, "graph": self.graph,
                "stage": self.stage, "repeats": self.repeats,
                "inputs": {k: {"shape": list(s), "dtype": d}
                           for k, (s, d) in self.inputs.items()},
                "call_seconds": self.call_seconds, "timed_seconds": self.timed_seconds,
                "nodes": [{"index": r.index, "op": r.op, "outputs": list(r.outputs),
                           "line": r.line, "seconds": r.seconds}
                          for r in self.nodes],
                "by_op": [{"op": op, "rows": n, "seconds": s} for op, n, s in self.by_op()]}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_repeats(repeats: int, warmup: int) -> None:
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise KilnValueError(f"profile: expected repeats to be a positive integer. "
                             f"Received: repeats={repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise KilnValueError(f"profile: expected warmup to be a non-negative integer. "
                             f"Received: warmup={warmup!r}")


def entry_graph(graphs: Mapping[str, Graph], entry: str) -> Graph:
    if entry not in graphs:
        raise KilnValueError(f"no entry point {entry!r}; expected one of {sorted(graphs)}")
    return graphs[entry]


def state_copy(graph: Graph, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state a profile's calls run on: copies of what `graph` updates, the arrays
    themselves for what it only reads."""
    updated = {name for name, _ in graph.updates}
    missing = [v.name for v in graph.state if v.name not in state]
    if missing:
        raise KilnValueError(f"@{graph.name}: no value given for state %{missing[0]}")
    return {v.name: np.array(state[v.name]) if v.name in updated else state[v.name]
            for v in graph.state}


def input_summary(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                  ) -> dict[str, tuple[tuple[int, ...], str]]:
    from kiln.runtimes import ordered_inputs

    arrays = ordered_inputs(graph, inputs)
    return {v.name: (tuple(np.shape(a)), str(np.asarray(a).dtype))
            for v, a in zip(graph.inputs, arrays)}


def time_calls(call: Callable[[], object], repeats: int, warmup: int) -> float:
    """The median wall time of `repeats` calls of `call`, after `warmup` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_rows(call: Callable[[], Sequence[float]], repeats: int, warmup: int) -> np.ndarray:
    """`call`'s per-node seconds of `repeats` calls after `warmup`, as calls x nodes."""
    rows = []
    for k in range(warmup + repeats):
        row = call()
        if k >= warmup:
            rows.append(row)
    return np.array(rows)


def node_rows(nodes: Sequence[Node], seconds: np.ndarray) -> list[NodeTime]:
    """A row per node from `seconds` (calls x nodes): each node's median."""
    medians = np.median(seconds, axis=0) if len(seconds) else np.zeros(len(nodes))
    return [NodeTime(i, op_label(node), tuple(v.name for v in node.outputs), ir_line(node),
                     float(medians[i])) for i, node in enumerate(nodes)]


def op_label(node: Node) -> str:
    """A node's op as a profile groups it: a fused node by its kind."""
    if node.op == "fused" and "kind" in node.attr:
        return f"fused:{node.attr['kind']}"
    return node.op
