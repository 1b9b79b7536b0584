"""Type inference: recompute every node's output types from the ops' type rules.

A rewrite that changes an input's type (a batch made symbolic, a dtype changed) or builds
nodes by hand can leave stale types downstream; this pass walks the nodes in order and gives
each output the type its op's rule computes from the (already recomputed) input types, so
symbolic shapes propagate through the whole graph, nested bodies first. Sound because the
type rules are the definition of each op's output type: on a correct graph it recomputes the
same types and returns the graph unchanged. A rule that rejects the new types raises its
KilnTypeError, naming the node.
"""

from __future__ import annotations

import dataclasses

from kiln.compiler.passes import register
from kiln.ir.errors import KilnError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import get_op


@register("infer_types")
def infer_types(graph: Graph) -> Graph:
    """Recompute every value's type from the type rules (repairs stale types, moves symbols)."""
    env: dict[str, Value] = {v.name: v for v in (*graph.inputs, *graph.state)}
    nodes: list[Node] = []
    for index, node in enumerate(graph.nodes):
        opdef = get_op(node.op)
        inputs = tuple(env.get(v.name, v) for v in node.inputs)
        body = infer_types(node.body) if node.body is not None else None
        types = [v.type for v in inputs]
        try:
            attrs = opdef.complete_attrs(node.attr)
            out_types = (opdef.infer(types, attrs, body) if opdef.has_body
                         else opdef.infer(types, attrs))
        except KilnError as err:
            outs = ", ".join(str(o) for o in node.outputs)
            operands = ", ".join(f"%{v.name}: {v.type}" for v in inputs)
            raise type(err)(f"infer_types: @{graph.name} node {index} ({node.op} -> {outs}) "
                            f"with operands {operands}: {err}") from None
        outputs = tuple(o if o.type == t else Value(o.name, t)
                        for o, t in zip(node.outputs, out_types, strict=True))
        if inputs != node.inputs or outputs != node.outputs or body != node.body:
            node = Node(node.op, inputs, outputs, node.attrs, body)
        nodes.append(node)
        env.update((o.name, o) for o in outputs)
    rebuilt = Graph(graph.name, graph.inputs, graph.state, tuple(nodes),
                    tuple((n, env.get(v.name, v)) for n, v in graph.outputs),
                    tuple((n, env.get(v.name, v)) for n, v in graph.updates), graph.attrs)
    # A retyped graph drops its graph-level attributes (a buffer plan sized by the old types).
    return graph if rebuilt == graph else dataclasses.replace(rebuilt, attrs=())
