"""Symbolic reverse-mode differentiation: the gradient is more IR, built from each op's VJP.

`backprop` works inside a GraphBuilder (training steps and scan bodies use it); `grad`
differentiates a finished graph and returns a new one whose outputs include the gradients.
Only floating-point values carry cotangents; integer and bool values (indices, masks,
argmax) and the outputs of non-differentiable ops are constants to the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import get_op


def backprop(b: GraphBuilder, seeds: Sequence[tuple[Value, Value]],
             wrt: Sequence[Value]) -> list[Value | None]:
    """Emit into `b` the gradient of the seeded values; returns one cotangent per `wrt`.

    Each seed pairs a value already in `b` with its cotangent. A `wrt` value with no path to
    any seed gets None. Fan-out is handled by summing the cotangents of every use.
    """
    depends = {w.name for w in wrt if w.type.is_float}
    for node in b.nodes:
        if get_op(node.op).differentiable and any(v.name in depends for v in node.inputs):
            depends.update(o.name for o in node.outputs if o.type.is_float)
    needed = {value.name for value, _ in seeds}
    active: list[int] = []
    for index in range(len(b.nodes) - 1, -1, -1):
        node = b.nodes[index]
        if any(o.name in needed for o in node.outputs):
            needed.update(v.name for v in node.inputs)
            if any(o.name in depends for o in node.outputs):
                active.append(index)

    # Ops whose VJP needs residuals (scan) swap in a node that also outputs them.
    for index in active:
        augment = get_op(b.nodes[index].op).augment
        if augment is not None:
            b.nodes[index] = augment(b, b.nodes[index])

    cotangents: dict[str, Value] = {}

    def accumulate(value: Value, cot: Value, node: Node | None) -> None:
        if cot.type != value.type:
            where = f"the VJP of {node.op}" if node else "a seed"
            raise KilnValueError(
                f"{where} gave a cotangent {cot.type} for %{value.name}: {value.type}"
            )
        if value.name in cotangents:
            with b.scope(f"{value.name}.grad"):
                cotangents[value.name] = b.add(cotangents[value.name], cot, name="acc")
        else:
            cotangents[value.name] = cot

    for value, seed in seeds:
        accumulate(value, seed, None)
    for index in active:  # already in reverse topological order
        node = b.nodes[index]
        cots = [cotangents.get(o.name) for o in node.outputs]
        if all(c is None for c in cots):
            continue
        opdef = get_op(node.op)
        assert opdef.vjp is not None
        with b.scope(f"{node.outputs[0].name}.grad"):
            input_cots = opdef.vjp(b, node, cots)
        for value, cot in zip(node.inputs, input_cots, strict=True):
            if cot is not None and value.name in depends:
                accumulate(value, cot, node)
    return [cotangents.get(w.name) for w in wrt]


def grad(graph: Graph, of: str | Value, wrt: Sequence[str | Value]) -> Graph:
    """A new graph computing `graph`'s outputs and d(of)/d(each of wrt), named `grad.NAME`.

    `of` names an output or a value; a non-scalar `of` is differentiated as the sum of its
    elements. A `wrt` value that `of` does not depend on gets a zero gradient.
    """
    b = GraphBuilder(graph.name)
    for v in graph.inputs:
        b.input(v.name, v.type)
    for v in graph.state:
        b.state(v.name, v.type)
    env = {v.name: v for v in (*graph.inputs, *graph.state)}
    outs, updates = b.call(graph, env, env)
    named = {**{v.name: v for v in b.nodes_values()}, **env, **outs}
    target = named.get(of if isinstance(of, str) else of.name)
    if target is None:
        raise KilnValueError(f"grad: @{graph.name} has no output or value named {of}")
    if not target.type.is_float:
        raise KilnValueError(f"grad: expected a floating-point value to differentiate. "
                             f"Received: %{target.name}: {target.type}")
    wrt_values = []
    for w in wrt:
        name = w if isinstance(w, str) else w.name
        if name not in named:
            raise KilnValueError(f"grad: @{graph.name} has no value named %{name}")
        wrt_values.append(named[name])
    seed = b.constant(1.0, target.type.dtype, shape=target.type.shape, name="grad.seed")
    grads = backprop(b, [(target, seed)], wrt_values)
    for name, value in outs.items():
        b.output(value, name)
    for w, g in zip(wrt_values, grads):
        if g is None:
            g = b.constant(0.0, w.type.dtype, shape=w.type.shape, name=f"grad.{w.name}.zero")
        name = f"grad.{w.name}"
        while name in outs:  # a gradient of a gradient graph: grad.grad.x, ...
            name = f"grad.{name}"
        outs[name] = g
        b.output(g, name)
    for name, value in updates.items():
        b.update(name, value)
    return remove_dead_nodes(b.build())


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes none of whose outputs reach an output or a state update."""
    live = {v.name for v in graph.output_values} | {v.name for _, v in graph.updates}
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if any(o.name in live for o in node.outputs):
            kept.append(node)
            live.update(v.name for v in node.inputs)
    return Graph(graph.name, graph.inputs, graph.state, tuple(reversed(kept)), graph.outputs,
                 graph.updates)
