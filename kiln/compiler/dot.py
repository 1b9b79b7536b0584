"""Graphviz rendering of a graph: `dot -Tsvg` reads what `to_dot` writes (no graphviz needed
here, this is text).

Nodes are labelled with their op, short attributes and the user's value names; edges carry
the type of the value that flows along them; graph-level attributes make the title. Inputs
are ellipses, state cylinders, outputs and state updates double octagons. A node with a body
(scan, fused) is a cluster that holds the op and its body graph, drawn the same way.
"""

from __future__ import annotations

from kiln.ir.graph import Graph, Node, Value
from kiln.ir.printer import format_attr

MAX_ATTR_CHARS = 40  # longer attribute texts (arrays) are cut in labels


def to_dot(graph: Graph) -> str:
    """The graph as a Graphviz `digraph`."""
    lines = [
        f"digraph {_quote(graph.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    if graph.attrs:  # graph-level attributes (the buffer plan) as the drawing's title
        title = "\n".join(f"{k}={_short(format_attr(v))}" for k, v in graph.attrs)
        lines += [f"  label={_quote(title)};", "  labelloc=t;"]
    lines += _graph_body(graph, "", "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _decl(node_id: str, label: str, **attrs: str) -> str:
    extra = "".join(f", {k}={v}" for k, v in attrs.items())
    return f"{_quote(node_id)} [label={_quote(label)}{extra}];"


def _short(text: str) -> str:
    return text if len(text) <= MAX_ATTR_CHARS else text[:MAX_ATTR_CHARS - 3] + "..."


def _node_label(node: Node) -> str:
    parts = [node.op]
    parts += [f"{key}={_short(format_attr(value))}" for key, value in node.attrs]
    parts.append(", ".join(f"%{o.name}" for o in node.outputs))
    return "\n".join(parts)


def _graph_body(graph: Graph, prefix: str, pad: str) -> list[str]:
    """Declarations and edges of `graph`; ids start with `prefix` so bodies do not collide."""
    lines: list[str] = []
    source: dict[str, tuple[str, bool]] = {}  # value name -> (node id, producer has >1 output)
    for kind, values, shape in (("in", graph.inputs, "ellipse"),
                                ("state", graph.state, "cylinder")):
        for v in values:
            node_id = f"{prefix}{kind}:{v.name}"
            lines.append(pad + _decl(node_id, f"%{v.name}\n{v.type}", shape=shape))
            source[v.name] = (node_id, False)
    for index, node in enumerate(graph.nodes):
        node_id = f"{prefix}n{index}"
        if node.body is None:
            lines.append(pad + _decl(node_id, _node_label(node)))
        else:
            lines.append(f"{pad}subgraph {_quote('cluster_' + node_id)} {{")
            lines.append(f"{pad}  label={_quote(f'{node.op} @{node.body.name}')};")
            lines.append(f"{pad}  style=rounded;")
            lines.append(pad + "  " + _decl(node_id, _node_label(node), style="bold"))
            lines += _graph_body(node.body, f"{node_id}.", pad + "  ")
            lines.append(pad + "}")
        for v in node.inputs:
            lines.append(pad + _edge(source, v, node_id))
        for out in node.outputs:
            source[out.name] = (node_id, len(node.outputs) > 1)
    for kind, pairs in (("out", graph.outputs), ("update", graph.updates)):
        for name, v in pairs:
            node_id = f"{prefix}{kind}:{name}"
            label = name if kind == "out" else f"update %{name}"
            lines.append(pad + _decl(node_id, label, shape="doubleoctagon"))
            lines.append(pad + _edge(source, v, node_id))
    return lines


def _edge(source: dict[str, tuple[str, bool]], v: Value, target: str) -> str:
    node_id, several = source[v.name]
    label = f"%{v.name}: {v.type}" if several else str(v.type)
    return f"{_quote(node_id)} -> {_quote(target)} [label={_quote(label)}];"
