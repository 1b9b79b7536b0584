"""A graph as JSON (`kiln ir --format json`): the IR's structure for tools that would rather
not parse the text format. Strict JSON (no NaN or Infinity literals); docs/cli.md describes
the schema, versioned by `SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kiln.ir.graph import ArrayAttr, Graph, Value

SCHEMA = "kiln-ir-json"
SCHEMA_VERSION = 1
WIDTH = 100  # the line length a value may take before it is spread over lines


def graph_to_json(graph: Graph, *, entry: str | None = None, stage: str | None = None,
                  indent: int | None = 2) -> str:
    """The JSON text of `graph`; `entry` and `stage` are recorded beside it when given."""
    document: dict[str, Any] = {"schema": SCHEMA, "version": SCHEMA_VERSION}
    if entry is not None:
        document["entry"] = entry
    if stage is not None:
        document["stage"] = stage
    document["graph"] = graph_to_dict(graph)
    if indent is None:
        return json.dumps(document, allow_nan=False)
    return _indented(document, indent, 0)


def _indented(value: Any, indent: int, depth: int) -> str:
    """JSON that reads like code: a list or dict that fits on a line of WIDTH stays on one
    line, and so does a list of plain values however long (an array's data); anything larger
    gets one entry a line."""
    compact = json.dumps(value, allow_nan=False)
    if not isinstance(value, (dict, list)) or not value:
        return compact
    scalars = isinstance(value, list) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value)
    if scalars or len(compact) + indent * depth <= WIDTH:
        return compact
    pad, inner = " " * (indent * depth), " " * (indent * (depth + 1))
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_indented(v, indent, depth + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + _indented(v, indent, depth + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as plain dicts and lists; a node's body (scan, fused) nests the same way."""
    return {
        "name": graph.name,
        "attrs": {key: attr_to_json(value) for key, value in graph.attrs},
        "inputs": [_value(v) for v in graph.inputs],
        "state": [_value(v) for v in graph.state],
        "nodes": [
            {
                "op": node.op,
                "inputs": [v.name for v in node.inputs],
                "outputs": [_value(v) for v in node.outputs],
                "attrs": {key: attr_to_json(value) for key, value in node.attrs},
                **({"body": graph_to_dict(node.body)} if node.body is not None else {}),
            }
            for node in graph.nodes
        ],
        "outputs": [{"name": name, "value": value.name} for name, value in graph.outputs],
        "updates": [{"state": name, "value": value.name} for name, value in graph.updates],
    }


def _value(value: Value) -> dict[str, Any]:
    return {"name": value.name, "shape": list(value.type.shape), "dtype": value.type.dtype}


def attr_to_json(value: object) -> Any:
    """An attribute as JSON: numbers, strings, booleans and null as themselves, tuples as
    lists, a non-finite float as {"float": "nan" | "inf" | "-inf"}, an array as
    {"array": {"shape", "dtype", "data"}} with its values flattened in C order."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": _nonfinite(value)}
    if isinstance(value, tuple):
        return [attr_to_json(v) for v in value]
    if isinstance(value, ArrayAttr):
        array = value.array
        data = [attr_to_json(x.item()) for x in array.reshape(-1)]
        return {"array": {"shape": list(array.shape), "dtype": str(array.dtype), "data": data}}
    raise TypeError(f"Expected an IR attribute value. Received: {value!r}")


def _nonfinite(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"
