"""ONNX lowerings of the reductions (axes as an input, opset 18) and argmax/argmin.

NumPy reduces over no axes as the identity, where ONNX reduces over every axis when given an
empty axes list: an empty set of axes lowers to Identity.
"""

from __future__ import annotations

from kiln.compiler.codegen.onnx.emitter import Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.types import normalize_axes

_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
           "prod": "ReduceProd"}


@lowering(*_REDUCE)
def _reduce(em: Emitter, node: Node, ins: list[str]) -> str:
    axes = normalize_axes(node.attr["axes"], node.inputs[0].type.rank, node.op)
    if not axes:
        return em.add("Identity", ins)
    return em.add(_REDUCE[node.op], [ins[0], em.ints(axes)],
                  keepdims=int(bool(node.attr["keepdims"])))


@lowering("argmax", "argmin")
def _arg(em: Emitter, node: Node, ins: list[str]) -> str:
    op = "ArgMax" if node.op == "argmax" else "ArgMin"
    x = node.inputs[0].type
    keepdims = int(bool(node.attr["keepdims"]))
    if node.attr["axis"] is not None:
        # select_last_index=0: the first extreme wins, as in NumPy.
        return em.add(op, ins, axis=node.attr["axis"] % x.rank, keepdims=keepdims)
    flat = em.add("Reshape", [ins[0], em.ints([-1])])
    index = em.add(op, [flat], axis=0, keepdims=0)
    return em.reshape(index, node.output.type)
