"""ONNX lowerings of gather, scatter_add and one_hot.

gather is ONNX Gather. scatter_add is ScatterND(reduction="add") into zeros, after moving the
scattered axis first (ScatterND indexes leading axes); repeated indices accumulate, as
np.add.at. one_hot compares the indices with 0..depth-1 along the new axis, so an index
outside [0, depth), negative ones included, gives an all-zero row (ONNX OneHot would wrap
negative indices). Out-of-range gather/scatter indices are an onnxruntime run-time error for
index >= size; a negative index wraps there, where the reference raises.
"""

from __future__ import annotations

import numpy as np

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES, Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.types import TensorType, canonical_dtype, numpy_dtype


@lowering("gather")
def _gather(em: Emitter, node: Node, ins: list[str]) -> str:
    return em.add("Gather", ins, axis=node.attr["axis"] % node.inputs[0].type.rank)


@lowering("scatter_add")
def _scatter_add(em: Emitter, node: Node, ins: list[str]) -> str:
    updates, indices = node.inputs
    out = node.output.type
    axis = node.attr["axis"] % out.rank
    k = indices.type.rank
    index = ins[1]
    if indices.type.dtype != "int64":
        index = em.add("Cast", [index], to=ONNX_DTYPES["int64"])
    index = em.add("Unsqueeze", [index, em.ints([-1])])
    values = ins[0]
    moved = TensorType((out.shape[axis], *out.shape[:axis], *out.shape[axis + 1:]), out.dtype)
    if axis:
        # updates: [pre, idx, post] -> [idx, pre, post]; the output: [size, pre, post].
        perm = [*range(axis, axis + k), *range(axis), *range(axis + k, updates.type.rank)]
        values = em.add("Transpose", [values], perm=perm)
    result = em.add("ScatterND", [em.zeros(moved), index, values], reduction="add")
    if axis:
        result = em.add("Transpose", [result],
                        perm=[*range(1, axis + 1), 0, *range(axis + 1, out.rank)])
    return result


@lowering("one_hot")
def _one_hot(em: Emitter, node: Node, ins: list[str]) -> str:
    indices = node.inputs[0].type
    depth = node.attr["depth"]
    axis = node.attr["axis"] % (indices.rank + 1)
    classes = np.arange(depth, dtype=numpy_dtype(indices.dtype))
    classes = classes.reshape((depth,) + (1,) * (indices.rank - axis))
    hot = em.add("Equal", [em.add("Unsqueeze", [ins[0], em.ints([axis])]),
                           em.const(classes, "one_hot.classes")])
    return em.add("Cast", [hot], to=ONNX_DTYPES[canonical_dtype(node.attr["dtype"])])
