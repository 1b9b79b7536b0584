"""Convolution + max pooling fusion: a conv2d whose result only a max_pool2d reads becomes,
with that pooling and the bias add and activation after it, one `fused` node of kind
"conv". A backend then makes the convolution's output a few images at a time and pools
each part while it is in cache, so the full-size output is never stored: at the convnet's
first layer (batch 128) that output is 11 MB written and read back, four times the pooled
result.

In a predict graph the simplifier's pool_activation rule has already moved the layer's
bias add and relu after the pooling, so the pattern is conv2d -> max_pool2d -> add ->
relu. In a train step the activation's gradient reads the convolution's (biased) result,
so the pooling reads no conv2d directly and nothing is fused.
"""

from __future__ import annotations

from kiln.compiler.passes import register
from kiln.compiler.passes.fuse_elementwise import map_nested, producer_index, replace_regions
from kiln.compiler.passes.fuse_gemm_epilogue import FormedRegions, readers_index, with_epilogue
from kiln.ir.graph import Graph


def _regions(graph: Graph) -> list[tuple[list[int], str]]:
    producers = producer_index(graph)
    readers = readers_index(graph)
    kept = {v.name for v in graph.output_values} | {v.name for _, v in graph.updates}
    formed = FormedRegions(graph, producers)
    regions = []
    for i, node in enumerate(graph.nodes):
        if node.op != "conv2d" or node.output.name in kept:
            continue
        pools = readers.get(node.output.name, [])
        if len(pools) != 1 or graph.nodes[pools[0]].op != "max_pool2d":
            continue
        members = with_epilogue(graph, [i, pools[0]], readers, formed)
        formed.add(members)
        regions.append((members, "conv"))
    return regions


@register("fuse_conv_pool")
def fuse_conv_pool(graph: Graph) -> Graph:
    """Fuse conv2d + the max_pool2d that alone reads it + bias add + activation into one
    kernel of kind "conv".

    Sound for the same reasons as fuse_elementwise (a convex region, every value read
    outside it a result, the body the region's own nodes in order); the convolution's
    result is read by the pooling alone, so it is no result. Run it before
    fuse_gemm_epilogue and fuse_elementwise, which would otherwise take the epilogue.
    Bodies of scan are fused too.
    """
    graph = map_nested(graph, fuse_conv_pool)
    return replace_regions(graph, _regions(graph))
