"""GEMM epilogue fusion: a matmul, the bias add on its result and the activation after it
become one `fused` node of kind "gemm", so a backend applies bias and activation to each
tile of the product while it is still in registers (or right after its BLAS call) instead
of writing the product out and reading it back twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.compiler.passes import register
from kiln.compiler.passes.fuse_elementwise import (
    fuses_acyclic,
    map_nested,
    node_users,
    producer_index,
    replace_regions,
)
from kiln.ir.graph import Graph, Node
from kiln.ir.types import broadcast_shapes

# Keras activations that are one elementwise op of the IR (softmax is not elementwise).
ACTIVATIONS = frozenset({"relu", "sigmoid", "tanh", "elu", "selu", "softplus", "exp"})


def _bias_add(node: Node, product: str) -> bool:
    """add(product, bias) or add(bias, product), the bias broadcasting into the product."""
    if node.op != "add":
        return False
    x, y = node.inputs
    if (x.name == product) == (y.name == product):
        return False
    bias, out = (y if x.name == product else x), node.output
    return broadcast_shapes(bias.type.shape, out.type.shape) == out.type.shape and \
        out.type == (x if x.name == product else y).type


def _activation(node: Node) -> bool:
    return node.op in ACTIVATIONS and node.output.type == node.inputs[0].type


def readers_index(graph: Graph) -> dict[str, list[int]]:
    """Value name -> the nodes (by index) that read it."""
    readers: dict[str, list[int]] = {}
    for j, node in enumerate(graph.nodes):
        for v in node.inputs:
            readers.setdefault(v.name, []).append(j)
    return readers


class FormedRegions:
    """The regions a pass has formed so far, each to become one fused node: `in` says
    whether a node is taken, `fuses_acyclic` whether a new region may join them.

    Regions are formed one head (a matmul) at a time, and an earlier region's epilogue can
    come after a later one's nodes, so the search of fuses_acyclic goes on to the last node
    of any region, not only of the candidate.
    """

    def __init__(self, graph: Graph, producers: dict[str, int]) -> None:
        self.users = node_users(graph, producers)
        self.groups: dict[int, list[int]] = {}
        self.group_of: dict[int, int] = {}
        self.last = -1  # the last node of any region

    def __contains__(self, node: object) -> bool:
        return node in self.group_of

    def fuses_acyclic(self, candidate: Sequence[int]) -> bool:
        """Whether the node set (no node of it taken) fused, with every region so far fused
        too, makes no cycle."""
        members = sorted(candidate)
        return fuses_acyclic(members, self.groups, self.group_of, self.users,
                             bound=max(members[-1], self.last))

    def add(self, members: Sequence[int]) -> None:
        key = len(self.groups)
        self.groups[key] = sorted(members)
        self.group_of.update(dict.fromkeys(members, key))
        self.last = max(self.last, *members)


def with_epilogue(graph: Graph, members: list[int], readers: dict[str, list[int]],
                  formed: FormedRegions) -> list[int]:
    """`members`, whose last node's result is the product, with the first bias add reading
    the product and the first activation reading that (or the product, when there is no
    bias add); each step only when the node is in no region `formed` so far and the grown
    set fuses with them acyclically (each region convex alone is not enough: two of them can
    read each other's results, A -> B -> A, and their fused nodes make a cycle).
    """
    members, tail = list(members), graph.nodes[members[-1]].output.name
    for accepts in (lambda n, t: _bias_add(n, t), lambda n, t: _activation(n)):
        for j in readers.get(tail, ()):
            if (j not in formed and accepts(graph.nodes[j], tail)
                    and formed.fuses_acyclic([*members, j])):
                members.append(j)
                tail = graph.nodes[j].output.name
                break
    return members


def _regions(graph: Graph) -> list[tuple[list[int], str]]:
    """Each matmul with its epilogue (with_epilogue), in node order; a region fits only if
    fused with all the regions before it the graph stays acyclic, and nodes taken by an
    earlier region are not taken again."""
    producers = producer_index(graph)
    readers = readers_index(graph)
    formed = FormedRegions(graph, producers)
    regions = []
    for i, node in enumerate(graph.nodes):
        if node.op != "matmul":
            continue
        members = with_epilogue(graph, [i], readers, formed)
        if len(members) > 1:
            formed.add(members)
            regions.append((members, "gemm"))
    return regions


@register("fuse_gemm_epilogue")
def fuse_gemm_epilogue(graph: Graph) -> Graph:
    """Fuse matmul + bias add + activation into one kernel of kind "gemm".

    Sound for the same reasons as fuse_elementwise (each region convex with all the others
    fused too, every value read outside it a result, the body the region's own nodes in
    order). The product and the pre-activation stay results when other nodes read them (the
    activation's gradient reads its input). Run it before fuse_elementwise, which would
    otherwise take the bias add and activation into an elementwise kernel. Bodies of scan
    are fused too.
    """
    graph = map_nested(graph, fuse_gemm_epilogue)
    return replace_regions(graph, _regions(graph))
