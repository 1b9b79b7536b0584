"""Common subexpression elimination: merge nodes that compute the same thing.

Two nodes are the same computation when they have the same op, the same input values, the
same attributes and the same body (up to the names inside it); the later one is dropped and
its uses (outputs and updates included) read the earlier one's outputs. Operands of ops
tagged "commutative" (add, mul, maximum, ...) are compared as a multiset, so add(a, b) merges
with add(b, a). Attributes compare exactly (0.0 and -0.0 differ). Sound because every op is
a pure function of its inputs and attributes; that includes the random ops, whose bits are
defined by (key, stream, shape, attributes): two draws with equal key and attributes give
identical bits, so merging them changes nothing. Bodies are processed first, so scans whose
bodies become equal merge too. Deterministic: the first node in order wins.
"""

from __future__ import annotations

from kiln.compiler.passes import register
from kiln.compiler.rewrite import GraphEditor, map_bodies
from kiln.ir.graph import Graph, Node
from kiln.ir.registry import get_op


@register("cse")
def cse(graph: Graph) -> Graph:
    """Merge nodes with the same op, inputs, attributes and body."""
    graph = map_bodies(graph, cse)
    ed = GraphEditor(graph)
    seen: dict[tuple, Node] = {}
    for node in graph.nodes:
        node = ed.remap(node)
        key = _key(node)
        first = seen.get(key)
        if first is None:
            seen[key] = node
            ed.emit(node)
            continue
        for old, new in zip(node.outputs, first.outputs, strict=True):
            ed.replace(old, new)
    return ed.finish()


def _key(node: Node) -> tuple:
    names = tuple(v.name for v in node.inputs)
    if "commutative" in get_op(node.op).tags:
        names = tuple(sorted(names))
    types = tuple(o.type for o in node.outputs)
    attrs = tuple((k, _attr_key(v)) for k, v in node.attrs)
    body = _body_key(node.body) if node.body is not None else None
    return (node.op, names, attrs, body, types)


def _body_key(graph: Graph) -> tuple:
    """A body up to the names of its values (they are private to it): positions instead."""
    index = {v.name: i for i, v in enumerate(graph.values())}
    nodes = tuple((n.op, tuple(index[v.name] for v in n.inputs),
                   tuple((k, _attr_key(v)) for k, v in n.attrs),
                   _body_key(n.body) if n.body is not None else None,
                   tuple(o.type for o in n.outputs)) for n in graph.nodes)
    return (tuple(v.type for v in graph.inputs), nodes,
            tuple(index[v.name] for v in graph.output_values),
            tuple((k, _attr_key(v)) for k, v in graph.attrs))


def _attr_key(value: object) -> object:
    """Attributes compared exactly: 0.0 and -0.0 (equal to Python) differ, as do 1 and 1.0."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    return (type(value).__name__, value)
