"""The verifier: SSA, topological order, attributes and types of every node, nested bodies too.

The pass manager runs it between passes; `GraphBuilder.build` runs it on every new graph.
"""

from __future__ import annotations

import re

from kiln.ir.errors import KilnError, VerifyError
from kiln.ir.graph import Graph

_ATTR_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./\-]*$")  # what the parser reads as a key


def verify(graph: Graph) -> None:
    """Raise VerifyError naming the graph, node and value when an invariant is broken."""
    from kiln.ir.registry import get_op

    defined: dict[str, object] = {}

    def define(name: str, where: str) -> None:
        if name in defined:
            raise VerifyError(f"@{graph.name}: %{name} is defined twice ({where})")
        defined[name] = True

    for v in graph.inputs:
        define(v.name, "input")
    for v in graph.state:
        define(v.name, "state")
    types = {v.name: v.type for v in (*graph.inputs, *graph.state)}

    for index, node in enumerate(graph.nodes):
        outs = ", ".join(str(o) for o in node.outputs)
        where = f"@{graph.name} node {index} ({node.op} -> {outs})"
        try:
            opdef = get_op(node.op)
        except KilnError as err:
            raise VerifyError(f"{where}: {err}") from None
        for value in node.inputs:
            if value.name not in types:
                raise VerifyError(f"{where}: uses %{value.name} before it is defined")
            if types[value.name] != value.type:
                raise VerifyError(
                    f"{where}: %{value.name} is used as {value.type} but defined as "
                    f"{types[value.name]}"
                )
        if opdef.has_body != (node.body is not None):
            need = "needs" if opdef.has_body else "takes no"
            raise VerifyError(f"{where}: {node.op} {need} body")
        try:
            opdef.check_arity(len(node.inputs))
            attrs = opdef.complete_attrs(node.attr)
            in_types = [v.type for v in node.inputs]
            expected = (opdef.infer(in_types, attrs, node.body) if opdef.has_body
                        else opdef.infer(in_types, attrs))
        except KilnError as err:
            raise VerifyError(f"{where}: {err}") from None
        if set(attrs) != set(node.attr):
            raise VerifyError(f"{where}: attributes {sorted(node.attr)} expected {sorted(attrs)}")
        got = [o.type for o in node.outputs]
        if list(expected) != got:
            raise VerifyError(
                f"{where}: output types {', '.join(map(str, got))} do not match the type rule's "
                f"{', '.join(map(str, expected))}"
            )
        if node.body is not None:
            verify(node.body)
        for out in node.outputs:
            define(out.name, where)
            types[out.name] = out.type

    keys = [k for k, _ in graph.attrs]
    if keys != sorted(set(keys)) or not all(isinstance(k, str) and _ATTR_KEY.match(k)
                                             for k in keys):
        raise VerifyError(f"@{graph.name}: graph attributes must have distinct identifier "
                          f"keys in sorted order. Received: {keys}")

    names = set()
    for name, value in graph.outputs:
        if name in names:
            raise VerifyError(f"@{graph.name}: two outputs are named {name!r}")
        names.add(name)
        if types.get(value.name) != value.type:
            raise VerifyError(f"@{graph.name}: output {name} refers to unknown %{value.name}")
    state_types = {v.name: v.type for v in graph.state}
    updated: set[str] = set()
    for name, value in graph.updates:
        if name in updated:
            raise VerifyError(f"@{graph.name}: %{name} is updated twice")
        updated.add(name)
        if name not in state_types:
            raise VerifyError(f"@{graph.name}: update of %{name}, which is not a state value")
        if types.get(value.name) != value.type:
            raise VerifyError(f"@{graph.name}: update of %{name} refers to unknown %{value.name}")
        if value.type != state_types[name]:
            raise VerifyError(
                f"@{graph.name}: update of %{name} has type {value.type}, state is "
                f"{state_types[name]}"
            )
