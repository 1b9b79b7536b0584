"""Elementwise and reduction fusion: chains of elementwise ops over one iteration space, and
reductions with their elementwise producers (prologue) and consumers (epilogue), become one
`fused` node each, so a backend runs each region as one loop nest and keeps its
intermediates in registers instead of memory.

Also home of the region machinery every fusion pass shares: `fuses_acyclic` (whether a
region, fused with all the others, makes no cycle), the rewrite of node sets into `fused`
nodes (`replace_regions`), and `count_kernels`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from kiln.compiler.passes import register
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import OPS
from kiln.ir.types import normalize_axes

# Ops a backend implements without a loop over elements: constants, shape queries, and the
# movement ops that NumPy (and the generated code) express as views with other strides.
VIEW_OPS = frozenset({"constant", "size", "reshape", "expand_dims", "squeeze", "broadcast_to",
                      "transpose"})
# Reductions fusion handles: the ones with `axes` and `keepdims` attributes.
REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod"})


def count_kernels(graph: Graph) -> int:
    """The number of kernels a backend launches for one run of `graph`.

    A kernel is a loop over tensor elements: every `fused` node, and every other node except
    constants, `size` and the view ops (reshape, expand_dims, squeeze, broadcast_to,
    transpose), which need no loop. A node with a body other than `fused` (scan) is a driver,
    not a kernel: the kernels of its body count instead, once.
    """
    total = 0
    for node in graph.nodes:
        if node.op == "fused":
            total += 1
        elif node.body is not None:
            total += count_kernels(node.body)
        elif node.op not in VIEW_OPS:
            total += 1
    return total


# -- regions ---------------------------------------------------------------------------------
def producer_index(graph: Graph) -> dict[str, int]:
    """The index of the node producing each value (graph inputs and state are absent)."""
    return {out.name: i for i, node in enumerate(graph.nodes) for out in node.outputs}


def node_users(graph: Graph, producers: dict[str, int]) -> list[list[int]]:
    """Node -> the nodes (by index, increasing, each once) that read one of its results."""
    users: list[list[int]] = [[] for _ in graph.nodes]
    for j, node in enumerate(graph.nodes):
        for p in {producers[v.name] for v in node.inputs if v.name in producers}:
            users[p].append(j)
    return users


def fuses_acyclic(candidate: list[int], groups: dict[int, list[int]],
                  group_of: dict[int, int], users: list[list[int]],
                  bound: int | None = None) -> bool:
    """Whether fusing the sorted node set `candidate`, with every other group fused too,
    makes no cycle: no path leaves the candidate and comes back into it, where a path that
    reaches one member of a group goes on from every member (the group becomes one node).

    Convexity of the candidate alone is not enough: region A can read the sum
    of region B while B's prologue reads A, each convex, their fused nodes a cycle. Groups
    must not overlap the candidate but may hold its parts (merged into it, never reached).
    `bound` is a node index that no candidate member and no node of another group comes
    after: nodes after it belong to no group, so their paths only go forward and never come
    back; the search stops there. By default the candidate's last node, right where every
    other group lies before it (grouping in node order, as here). `users`: node_users.
    """
    inside = set(candidate)
    last = candidate[-1] if bound is None else bound
    frontier = [j for m in candidate for j in users[m] if j not in inside and j <= last]
    reached: set[int] = set()
    while frontier:
        j = frontier.pop()
        if j in reached:
            continue
        mates = groups[group_of[j]] if j in group_of else [j]
        reached.update(mates)
        for k in mates:
            for r in users[k]:
                if r in inside:
                    return False
                if r <= last and r not in reached:
                    frontier.append(r)
    return True


def _is_scalar_constant(node: Node) -> bool:
    return node.op == "constant" and node.outputs[0].type.rank == 0


def _region_node(graph: Graph, members: list[int], kind: str, producers: dict[str, int],
                 used_outside: Callable[[Value], bool]) -> tuple[Node, set[int]]:
    """The `fused` node of one region, and the scalar constants it copies into its body.

    Operands: values the members read from outside, in order of first use (scalar constants
    are copied into the body instead). Results: member outputs read outside the region.
    The body keeps every original name, so dumps still name the user's layers.
    """
    inside = set(members)
    inputs: list[Value] = []
    body_nodes: list[Node] = []
    copied: dict[str, int] = {}
    for m in members:
        node = graph.nodes[m]
        for v in node.inputs:
            p = producers.get(v.name)
            if p in inside or v.name in copied or v in inputs:
                continue
            if p is not None and _is_scalar_constant(graph.nodes[p]):
                copied[v.name] = p
                body_nodes.append(graph.nodes[p])
            else:
                inputs.append(v)
        body_nodes.append(node)
    outputs = [o for m in members for o in graph.nodes[m].outputs if used_outside(o)]
    if not outputs:  # a dead region still computes its last value
        outputs = list(graph.nodes[members[-1]].outputs)
    body = Graph(graph.nodes[members[-1]].outputs[0].name, tuple(inputs), (),
                 tuple(body_nodes), tuple((o.name, o) for o in outputs))
    return Node.make("fused", inputs, outputs, {"kind": kind}, body), set(copied.values())


def replace_regions(graph: Graph, regions: Sequence[tuple[Sequence[int], str]]) -> Graph:
    """Replace each region (node indices, kind) by one `fused` node; the graph itself when
    there is none.

    Regions must be disjoint and, fused all together, make no cycle (each convex alone is
    not enough: two regions can each feed the other). Each fused node takes the place of its
    last member; nodes between the members that read a region's results move after it (a
    stable topological order keyed by original position, so the result is deterministic).
    Scalar constants are copied into the bodies that read them and dropped when nothing else
    does. Graph attributes (a buffer plan) describe the old graph and are dropped.
    """
    if not regions:
        return graph
    producers = producer_index(graph)
    region_of: dict[int, int] = {}
    for r, (members, _) in enumerate(regions):
        for m in members:
            region_of[m] = r
    readers: dict[str, list[int]] = {}  # value -> nodes (by index) that read it
    for j, node in enumerate(graph.nodes):
        for v in node.inputs:
            readers.setdefault(v.name, []).append(j)
    kept = {v.name for v in graph.output_values} | {v.name for _, v in graph.updates}

    fused: list[Node] = []
    copied: set[int] = set()
    for r, (members, kind) in enumerate(regions):
        def used_outside(v: Value, r: int = r) -> bool:
            return v.name in kept or any(region_of.get(j) != r for j in readers.get(v.name, ()))

        node, consts = _region_node(graph, sorted(members), kind, producers, used_outside)
        fused.append(node)
        copied |= consts

    # Units to schedule: each region, and each node outside every region but the constants
    # copied into bodies that nothing outside the regions reads any more.
    dropped = {j for j in copied if graph.nodes[j].output.name not in kept
               and all(k in region_of for k in readers.get(graph.nodes[j].output.name, ()))}
    units: list[tuple[int, Node]] = []
    for j, node in enumerate(graph.nodes):
        if j in region_of:
            if j == max(regions[region_of[j]][0]):
                units.append((j, fused[region_of[j]]))
        elif j not in dropped:
            units.append((j, node))
    # Graph attributes describe the graph as it was (a buffer plan): they are dropped.
    return Graph(graph.name, graph.inputs, graph.state, tuple(_schedule(units)),
                 graph.outputs, graph.updates)


def _schedule(units: list[tuple[int, Node]]) -> list[Node]:
    """Kahn's algorithm, always taking the ready unit of the smallest original position."""
    made_by = {o.name: k for k, (_, node) in enumerate(units) for o in node.outputs}
    waiting = [0] * len(units)
    dependents: list[list[int]] = [[] for _ in units]
    for k, (_, node) in enumerate(units):
        deps = {made_by[v.name] for v in node.inputs if v.name in made_by}
        waiting[k] = len(deps)
        for d in sorted(deps):
            dependents[d].append(k)
    ready = [(pos, k) for k, (pos, _) in enumerate(units) if waiting[k] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(units[k][1])
        for d in dependents[k]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (units[d][0], d))
    assert len(order) == len(units), "fusion made a cycle: the regions were not convex together"
    return order


def map_nested(graph: Graph, fn: Callable[[Graph], Graph]) -> Graph:
    """Apply a fusion pass to the bodies of scan-like nodes (never to `fused` bodies, which
    are kernels already); the graph itself when no body changed."""
    nodes, changed = [], False
    for node in graph.nodes:
        if node.body is not None and node.op != "fused":
            body = fn(node.body)
            if body != node.body:
                node, changed = Node(node.op, node.inputs, node.outputs, node.attrs, body), True
        nodes.append(node)
    if not changed:
        return graph
    return Graph(graph.name, graph.inputs, graph.state, tuple(nodes), graph.outputs,
                 graph.updates)


# -- elementwise and reduction regions -------------------------------------------------------
def _role(node: Node) -> str | None:
    """'elementwise', 'reduction' (a reduction fusion can hold), or None (not fusible)."""
    if node.body is not None or len(node.outputs) != 1:
        return None
    if "elementwise" in OPS[node.op].tags:
        return "elementwise"
    if node.op in REDUCTIONS and node.output.type.shape != node.inputs[0].type.shape:
        return "reduction"
    return None


def _reduction_spec(node: Node) -> tuple:
    x = node.inputs[0].type
    return x.shape, normalize_axes(node.attr["axes"], x.rank, node.op), node.attr["keepdims"]


def _region_kind(graph: Graph, members: list[int], producers: dict[str, int]) -> str | None:
    """The kind of kernel the node set makes, or None when it makes no single kernel.

    elementwise: every member has one output shape, the iteration space; operands from
    outside broadcast into it. reduction: reductions of one input shape S over one set of
    axes (result shape R); the other members are a prologue of shape S that the reductions
    read (and that reads no reduction) and an epilogue of shape R reading only reductions,
    other epilogue members and values from outside.
    """
    nodes = graph.nodes
    reductions = [m for m in members if _role(nodes[m]) == "reduction"]
    if not reductions:
        shapes = {nodes[m].output.type.shape for m in members}
        return "elementwise" if len(shapes) == 1 else None
    specs = {_reduction_spec(nodes[m]) for m in reductions}
    if len(specs) != 1:
        return None
    space = nodes[reductions[0]].inputs[0].type.shape
    reduced = nodes[reductions[0]].output.type.shape
    phase: dict[int, str] = {}
    for m in members:  # members are sorted, so producers get their phase first
        node = nodes[m]
        sources = {phase[producers[v.name]] for v in node.inputs if producers.get(v.name) in phase}
        if m in reductions or node.output.type.shape == space:
            allowed, phase[m] = {"prologue"}, "reduce" if m in reductions else "prologue"
        elif node.output.type.shape == reduced:
            allowed, phase[m] = {"reduce", "epilogue"}, "epilogue"
        else:
            return None
        if not sources <= allowed:
            return None
    return "reduction"


def _regions(graph: Graph) -> list[tuple[list[int], str]]:
    """Greedy producer-consumer grouping in node order: each fusible node joins the group of
    each of its operands' producers in turn, when the union still makes one kernel and
    fusing it keeps the graph of groups acyclic. Groups of two or more nodes become
    regions."""
    producers = producer_index(graph)
    users = node_users(graph, producers)
    group_of: dict[int, int] = {}
    groups: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        if _role(node) is None:
            continue
        current, absorbed = [i], []
        for v in node.inputs:
            p = producers.get(v.name)
            if p is None or p not in group_of or group_of[p] in absorbed:
                continue
            g = group_of[p]
            candidate = sorted(current + groups[g])
            if (_region_kind(graph, candidate, producers) is not None
                    and fuses_acyclic(candidate, groups, group_of, users)):
                current = candidate
                absorbed.append(g)
        for g in absorbed:
            del groups[g]
        groups[i] = current
        for m in current:
            group_of[m] = i
    regions = []
    for members in sorted(groups.values()):
        if len(members) > 1:
            kind = _region_kind(graph, members, producers)
            assert kind is not None
            regions.append((members, kind))
    return regions


@register("fuse_elementwise")
def fuse_elementwise(graph: Graph) -> Graph:
    """Fuse elementwise chains, and reductions with their prologue and epilogue, into kernels.

    Sound because each region is convex with all the others fused too (no path leaves it
    and returns, so the fused nodes can be scheduled without a cycle), every value read
    outside a region is a result of its fused node, and the body runs the region's own
    nodes in their order: the same arithmetic, the same results. Run it after
    fuse_gemm_epilogue, so that bias adds and activations go to the GEMM kernels first.
    Bodies of scan are fused too.
    """
    graph = map_nested(graph, fuse_elementwise)
    return replace_regions(graph, _regions(graph))
