"""The IR text format, printing side. `kiln.ir.parse` reads back exactly what this writes.

    graph @predict(%x: f32[N,784]) state(%dense.kernel: f32[784,32]) {
      %dense.matmul = matmul(%x, %dense.kernel) : f32[N,32]
      %dense.relu = relu(%dense.matmul) : f32[N,32]
      return %dense.relu as y
    }

Attributes print in sorted order in braces; floats print as Python's shortest round-trip repr,
so the parsed value is bit-identical. Nested bodies (scan, fused) print indented inside the
node. Graph-level attributes, when a graph has any, print after the signature, one a line:

    graph @f(%x: f32[4]) attributes {
        buffers.peak_bytes=16
    } {
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from kiln.ir.graph import ArrayAttr, Graph, Node
from kiln.ir.types import DTYPES, TensorType, canonical_dtype

NAME_RE = re.compile(r"[A-Za-z0-9_./\-]+")  # whole names: fullmatch (a "$" passes "x\n")


def print_graph(graph: Graph, indent: int = 0) -> str:
    return "\n".join(_graph_lines(graph, indent))


def format_name(name: str) -> str:
    return name if NAME_RE.fullmatch(name) else json.dumps(name)


OUTPUT_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]*")


def format_output_name(name: str) -> str:
    """Output names after `as` print bare only where they read back as one identifier."""
    return name if OUTPUT_NAME_RE.fullmatch(name) else json.dumps(name)


def format_attr(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, ArrayAttr):
        array = value.array
        t = TensorType(array.shape, canonical_dtype(array.dtype))
        flat = [format_attr(x.item()) for x in array.reshape(-1)]
        return f"array<{t}>[{', '.join(flat)}]"
    raise TypeError(f"cannot print attribute {value!r}")


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    return text if any(c in text for c in ".e") else text + ".0"


def format_node(node: Node) -> str:
    outs = ", ".join(f"%{format_name(o.name)}" for o in node.outputs)
    ins = ", ".join(f"%{format_name(v.name)}" for v in node.inputs)
    text = f"{outs} = {node.op}({ins})"
    if node.attrs:
        text += " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in node.attrs) + "}"
    text += " : " + ", ".join(str(o.type) for o in node.outputs)
    return text


def _signature(values) -> str:  # noqa: ANN001
    return ", ".join(f"%{format_name(v.name)}: {v.type}" for v in values)


def _graph_lines(graph: Graph, indent: int) -> list[str]:
    pad = "  " * indent
    head = f"{pad}graph @{format_name(graph.name)}({_signature(graph.inputs)})"
    if graph.state:
        head += f" state({_signature(graph.state)})"
    lines = [head + " {"]
    if graph.attrs:  # graph-level attributes, one a line: `attributes {k=v, ...} {`
        items = [f"{pad}    {k}={format_attr(v)}" for k, v in graph.attrs]
        lines = [head + " attributes {", *(i + "," for i in items[:-1]), items[-1],
                 pad + "} {"]
    for node in graph.nodes:
        line = pad + "  " + format_node(node)
        if node.body is not None:
            lines.append(line + " {")
            lines.extend(_graph_lines(node.body, indent + 2))
            lines.append(pad + "  }")
        else:
            lines.append(line)
    if graph.outputs:
        parts = []
        for name, value in graph.outputs:
            ref = f"%{format_name(value.name)}"
            parts.append(ref if name == value.name else f"{ref} as {format_output_name(name)}")
        lines.append(pad + "  return " + ", ".join(parts))
    for name, value in graph.updates:
        lines.append(f"{pad}  update %{format_name(name)} = %{format_name(value.name)}")
    lines.append(pad + "}")
    return lines


def dtype_short(dtype: str) -> str:
    return DTYPES[dtype][0]


def array_from_flat(values: list, t: TensorType) -> np.ndarray:
    return np.array(values, dtype=DTYPES[t.dtype][1]).reshape(t.shape)
