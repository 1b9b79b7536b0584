"""Constant folding: evaluate at compile time the nodes whose inputs are all constants.

Such a node is run through its op's NumPy reference (the same function the reference runtime
calls, so the folded value is the value the oracle computes) and becomes a `constant` node
with the same output value, so names, outputs and updates are untouched. A result whose
elements are all equal stays a scalar attribute (filled to the shape); other results become an
array attribute, but only up to MAX_ELEMENTS elements (no giant literals in the IR or in
generated code). Elementwise ops over scalar-filled constants fold to a filled constant even
when the shape holds symbols. `size` over static axes folds whatever its operand.

Not folded: random draws (folding is sound for them, the bits are a function of the key, but
it would freeze large tensors into the IR and hide the op from backends), ops with a body,
and `size` over a symbolic axis (its value is only known at run time).
"""

from __future__ import annotations

import math

import numpy as np

from kiln.compiler.passes import register
from kiln.compiler.rewrite import GraphEditor, constant_scalar, map_bodies
from kiln.ir.graph import ArrayAttr, Graph, Node, Value
from kiln.ir.registry import RefContext, get_op
from kiln.ir.types import TensorType, normalize_axes, numpy_dtype, static_size

MAX_ELEMENTS = 2**16  # the largest non-uniform array a fold may produce
MAX_INPUT_ELEMENTS = 2**20  # the largest constant materialized to evaluate a node


@register("fold_constants")
def fold_constants(graph: Graph) -> Graph:
    """Evaluate nodes whose inputs are all constants; fold `size` over static axes."""
    graph = map_bodies(graph, fold_constants)
    ed = GraphEditor(graph)
    for node in graph.nodes:
        node = ed.remap(node)
        folded = _fold(ed, node)
        if folded is None:
            ed.emit(node)
        else:
            ed.emit(folded)
            ed.mark_changed()
    return ed.finish()


def constant_node(out: Value, array: np.ndarray) -> Node | None:
    """A `constant` node giving `out` the value `array`, or every element the value of a 0-d
    `array` (None when the result would be too large)."""
    t = out.type
    flat = array.reshape(-1)
    bits = flat.view(f"u{flat.dtype.itemsize}")  # bitwise: keeps -0.0 and NaN payloads apart
    if array.ndim == 0 or (flat.size and np.all(bits == bits[0])):
        value: object = flat[0].item()
    elif flat.size <= MAX_ELEMENTS and t.is_static:
        value = ArrayAttr(np.ascontiguousarray(array))
    else:
        return None
    return Node.make("constant", (), (out,), {"value": value, "dtype": t.dtype, "shape": t.shape})


def _fold(ed: GraphEditor, node: Node) -> Node | None:
    opdef = get_op(node.op)
    if node.op == "size":
        return _fold_size(node)
    if node.op == "iota":  # depends on x's shape alone: a constant when that size is known
        (n,) = node.output.type.shape
        if not isinstance(n, int) or n > MAX_ELEMENTS:
            return None
        return constant_node(node.output, np.arange(n, dtype=numpy_dtype(node.output.type.dtype)))
    if (node.op == "constant" or "random" in opdef.tags or opdef.has_body
            or len(node.outputs) != 1 or not node.inputs):
        return None
    producers = [ed.producer(v) for v in node.inputs]
    if any(p is None or p.op != "constant" for p in producers):
        return None
    out = node.output
    if "elementwise" in opdef.tags and all(constant_scalar(p) is not None for p in producers):
        # Pointwise over filled constants: compute one element, fill the output's shape.
        scalars = [np.asarray(constant_scalar(p), numpy_dtype(v.type.dtype))
                   for p, v in zip(producers, node.inputs)]
        result = _evaluate(node, scalars, [()])
        return None if result is None else constant_node(out, result)
    sizes = [static_size(v.type.shape) for v in (*node.inputs, out)]
    if any(s is None for s in sizes) or max(sizes[:-1]) > MAX_INPUT_ELEMENTS:
        return None
    arrays = [_materialize(p, v.type) for p, v in zip(producers, node.inputs)]
    result = _evaluate(node, arrays, [out.type.resolve({})])
    return None if result is None else constant_node(out, result)


def _fold_size(node: Node) -> Node | None:
    x = node.inputs[0].type
    axes = normalize_axes(node.attr["axes"], x.rank, "size")
    dims = [x.shape[a] for a in axes]
    if any(isinstance(d, str) for d in dims):
        return None
    count = np.asarray(math.prod(dims), numpy_dtype(node.output.type.dtype))  # type: ignore[arg-type]
    return constant_node(node.output, count)


def _materialize(producer: Node, t: TensorType) -> np.ndarray:
    value = producer.attr["value"]
    if isinstance(value, ArrayAttr):
        return np.array(value.array)
    return np.full(t.resolve({}), value, numpy_dtype(t.dtype))


def _evaluate(node: Node, arrays: list[np.ndarray], shapes: list[tuple]) -> np.ndarray | None:
    """The node's reference on `arrays`; None when it fails or gives an unexpected dtype
    (folding must never turn a run-time error into a compile-time one)."""
    opdef = get_op(node.op)
    ctx = RefContext(node, shapes, _no_nested_graphs)
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(opdef.reference(ctx, *arrays, **node.attr))
    except Exception:  # noqa: BLE001 - an op that cannot run on these values stays unfolded
        return None
    if result.dtype != numpy_dtype(node.output.type.dtype) or result.shape != shapes[0]:
        return None
    return result


def _no_nested_graphs(graph: Graph, arrays: list[np.ndarray]) -> list[np.ndarray]:
    raise NotImplementedError("fold_constants does not fold ops with a body")
