"""Rebuilding a graph node by node, the common ground of the rewriting passes.

Graphs are immutable, so a pass walks the nodes of the old graph in order and hands each one,
its inputs already substituted, to a GraphEditor: keep it (`emit`), drop it and stand an
existing value in for its outputs (`replace`), or build new nodes in its place (`op`).
`finish` rebuilds the graph, pointing outputs and updates at the replacements; when nothing
was changed it returns the old graph itself, so a pass that finds nothing leaves it equal.
A rebuilt graph has no graph-level attributes: they describe the graph as it was (the buffer
plan names values that may be gone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.ir.autodiff import remove_dead_nodes
from kiln.ir.graph import ArrayAttr, Graph, Node, Value, freeze_attr
from kiln.ir.registry import get_op


class GraphEditor:
    """Builds the new node list of one graph; see the module docstring."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.changed = False
        self._subst: dict[str, Value] = {}
        self._producers: dict[str, Node] = {}
        self._names = {v.name for v in graph.values()}
        self._reads: dict[str, int] | None = None

    # -- reading -------------------------------------------------------------------------
    def value(self, v: Value) -> Value:
        """The value now standing for `v` (itself unless it was replaced)."""
        return self._subst.get(v.name, v)

    def remap(self, node: Node) -> Node:
        """`node` with its inputs substituted (the node itself when none changed)."""
        inputs = tuple(self.value(v) for v in node.inputs)
        if inputs == node.inputs:
            return node
        return Node(node.op, inputs, node.outputs, node.attrs, node.body)

    def reads(self, v: Value) -> int:
        """How many times the graph reads `v`: as a node's operand, an output or an update
        (after the edit so far: reads of the values `v` replaced count too)."""
        if self._reads is None:
            g = self.graph
            self._reads = {}
            for name in [*(v.name for n in g.nodes for v in n.inputs),
                         *(v.name for v in g.output_values), *(v.name for _, v in g.updates)]:
                self._reads[name] = self._reads.get(name, 0) + 1
        return sum(self._reads.get(old, 0) for old in
                   [v.name, *(old for old, new in self._subst.items() if new.name == v.name)])

    def producer(self, v: Value) -> Node | None:
        """The node of the new graph that produces `v` (None for inputs and state)."""
        return self._producers.get(v.name)

    # -- writing -------------------------------------------------------------------------
    def emit(self, node: Node) -> None:
        self.nodes.append(node)
        for out in node.outputs:
            self._producers[out.name] = node

    def replace(self, old: Value, new: Value) -> None:
        if old.type != new.type:
            raise AssertionError(f"replacing %{old.name}: {old.type} by %{new.name}: {new.type}")
        if old != new:
            self._subst[old.name] = new
        self.changed = True

    def mark_changed(self) -> None:
        self.changed = True

    def fresh_name(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._names:
            name = f"{hint}.{k}"
            k += 1
        self._names.add(name)
        return name

    def op(self, op_name: str, *inputs: Value, name: str, **attrs: Any) -> Value:
        """Emit one single-output node; `name` is a hint made unique in the graph."""
        opdef = get_op(op_name)
        full = {k: freeze_attr(v) for k, v in opdef.complete_attrs(attrs).items()}
        (out_type,) = opdef.infer([v.type for v in inputs], full)
        out = Value(self.fresh_name(name), out_type)
        self.emit(Node.make(op_name, inputs, (out,), full))
        return out

    def rename_last(self, value: Value, name: str) -> Value:
        """Give `value`, the output of the node emitted last, the (freed) name `name`."""
        node = self.nodes[-1]
        if node.outputs != (value,):
            return value
        renamed = Value(name, value.type)
        self.nodes[-1] = Node(node.op, node.inputs, (renamed,), node.attrs, node.body)
        del self._producers[value.name]
        self._producers[name] = self.nodes[-1]
        self._names.discard(value.name)
        return renamed

    def finish(self) -> Graph:
        """The rebuilt graph, without the nodes the edit left unused (nodes that were already
        dead stay: removing them is dce's job)."""
        if not self.changed:
            return self.graph
        g = self.graph
        edited = Graph(g.name, g.inputs, g.state, tuple(self.nodes),
                       tuple((n, self.value(v)) for n, v in g.outputs),
                       tuple((n, self.value(v)) for n, v in g.updates))
        dead_before = _output_names(g) - _output_names(remove_dead_nodes(g))
        # Keep what reaches an output, an update, or a node that was dead already.
        roots = tuple((f"dead:{o.name}", o) for n in edited.nodes for o in n.outputs
                      if o.name in dead_before)
        probe = Graph(g.name, g.inputs, g.state, edited.nodes, edited.outputs + roots,
                      edited.updates)
        kept = remove_dead_nodes(probe).nodes
        return Graph(g.name, g.inputs, g.state, kept, edited.outputs, edited.updates)


def _output_names(graph: Graph) -> set[str]:
    return {o.name for node in graph.nodes for o in node.outputs}


def map_bodies(graph: Graph, fn: Callable[[Graph], Graph]) -> Graph:
    """Apply `fn` to the body of every node that has one (scan, fused); the graph itself when
    no body changed."""
    nodes = []
    changed = False
    for node in graph.nodes:
        if node.body is not None:
            body = fn(node.body)
            if body != node.body:
                node = Node(node.op, node.inputs, node.outputs, node.attrs, body)
                changed = True
        nodes.append(node)
    if not changed:
        return graph
    return Graph(graph.name, graph.inputs, graph.state, tuple(nodes), graph.outputs,
                 graph.updates)


def constant_scalar(node: Node | None) -> float | int | bool | None:
    """The value every element of a `constant` node holds, or None (not a constant, or an
    array whose elements differ)."""
    if node is None or node.op != "constant":
        return None
    value = node.attr["value"]
    if isinstance(value, ArrayAttr):
        flat = value.array.reshape(-1)
        if flat.size == 0 or not np.all(flat == flat[0]):
            return None
        return flat[0].item()
    return value
