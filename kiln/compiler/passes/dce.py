"""Dead code elimination: drop every node none of whose outputs reaches an output or a state
update, in the graph and in every nested body.

Sound because IR ops have no side effects: a node's only effect is its outputs (random draws
are pure functions of their key), so a node nobody reads can go. Body inputs and outputs are
kept (they are the interface of scan), only body nodes are dropped.
"""

from __future__ import annotations

from kiln.compiler.passes import register
from kiln.compiler.rewrite import map_bodies
from kiln.ir.autodiff import remove_dead_nodes
from kiln.ir.graph import Graph


@register("dce")
def dce(graph: Graph) -> Graph:
    """Remove nodes whose outputs reach no output or state update (bodies too)."""
    graph = map_bodies(graph, dce)
    pruned = remove_dead_nodes(graph)
    return graph if pruned.nodes == graph.nodes else pruned
