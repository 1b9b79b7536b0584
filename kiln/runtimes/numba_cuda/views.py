"""Nodes of an entry point that need no kernel: reshape, expand_dims and squeeze as the
operand's storage seen with another shape, and a transpose read only by GEMMs as a strided
view (the GEMM reads strided operands in place), when the buffer plan allows it.

The rule is the numba CPU codegen's (kiln/compiler/codegen/numba/frame.py): a result may be
a view of its operand's storage when nothing writes that storage while the result is alive.
The plan does not know that views exist, so this checks it: the writes to an arena slot are
the definitions of the values the plan puts there, the writes to a state its in-place update
(at the node computing it) or its copied update (after the last node). A view of a view
shares its root storage, and is checked against that root.
"""

from __future__ import annotations

from typing import Any

from kiln.compiler.passes.plan_buffers import BufferPlan, live_ranges
from kiln.ir.graph import Graph, Node
from kiln.runtimes.numba_cuda.kernels.arrays import element_strides, view

RESHAPES = ("reshape", "expand_dims", "squeeze")


def _reads_only_gemms(readers: list[Node]) -> bool:
    return bool(readers) and all(
        n.op == "matmul" or (n.op == "fused" and n.attr["kind"] == "gemm") for n in readers)


def plan_views(graph: Graph, plan: BufferPlan | None) -> dict[int, str]:
    """node index -> "reshape" or "transpose", for the nodes whose result can be a view."""
    if plan is None:
        return {}
    in_place = {value: state for state, value in plan.in_place}
    slot_of = {name: k for k, names in enumerate(plan.slots) for name in names}
    ranges = live_ranges(graph)
    readers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(v.name, []).append(node)
    at_end = {v.name for v in graph.output_values} | {v.name for _, v in graph.updates}

    def own_root(name: str) -> tuple[str, Any] | None:
        if name in in_place:
            return ("state", in_place[name])
        return ("slot", slot_of[name]) if name in slot_of else None

    candidates: dict[int, str] = {}
    for i, node in enumerate(graph.nodes):
        if node.op in RESHAPES:
            candidates[i] = "reshape"
        elif node.op == "transpose" and node.output.name not in at_end and \
                _reads_only_gemms(readers.get(node.output.name, [])):
            candidates[i] = "transpose"
    # A view writes nothing, so a node becoming one can let another do so: grow the set
    # until it stops (sound, since the writes only shrink as it grows).
    views: dict[int, str] = {}
    while True:
        found = _views_given(graph, views, candidates, own_root, ranges, in_place)
        if found == views:
            return views
        views = found


def _views_given(graph: Graph, views: dict[int, str], candidates: dict[int, str],
                 own_root: Any, ranges: dict[str, tuple[int, int]],
                 in_place: dict[str, str]) -> dict[int, str]:
    """The candidates that can be views when the nodes of `views` write nothing."""
    end = len(graph.nodes)
    writes: dict[Any, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        if i not in views:
            for o in node.outputs:
                writes.setdefault(own_root(o.name), []).append(i)
    for state, value in graph.updates:
        if value.name not in in_place:
            writes.setdefault(("state", state), []).append(end)
    roots: dict[str, Any] = {v.name: ("input", v.name) for v in graph.inputs}
    roots.update({v.name: ("state", v.name) for v in graph.state})
    found: dict[int, str] = {}
    for i, node in enumerate(graph.nodes):
        for o in node.outputs:
            roots[o.name] = own_root(o.name)
        if i not in candidates:
            continue
        out = node.output.name
        root = roots.get(node.inputs[0].name)
        if out in in_place or root is None or roots[out] is None:
            continue
        if any(i < w <= ranges[out][1] for w in writes.get(root, ())):
            continue
        found[i] = candidates[i]
        roots[out] = root
    return found


def as_view(kind: str, node: Node, x: Any, shape: tuple[int, ...]) -> Any:
    """The result of `node` (of `shape`) as a view of its operand's device array `x`."""
    if kind == "reshape":  # x is C-contiguous: the same elements in the same order
        strides, step = [], 1
        for d in reversed(shape):
            strides.append(step)
            step *= d
        return view(x, shape, strides[::-1])
    perm = node.attr["perm"]
    rank = len(x.shape)
    perm = tuple(range(rank - 1, -1, -1)) if perm is None else tuple(perm)
    xs = element_strides(x)
    return view(x, shape, [xs[a] for a in perm])
