"""ONNX lowerings of affine_transform and its adjoint, from standard ops.

Each output pixel's sample points are computed as the reference computes them (Floor or Round,
half to even, for the pixel indices; Mod, Clip and Where for the fill modes). The forward
reads the points with GatherND(batch_dims=1) and sums their weighted values in the reference's
order; the adjoint adds the weighted cotangents back with ScatterND(reduction="add") at
(image, row, column) indices.
"""

from __future__ import annotations

import numpy as np

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES, Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.types import numpy_dtype


def _fix(em: Emitter, index: str, size: int, mode: str) -> str:
    """Integer pixel indices mapped into [0, size) by fill_mode (as kiln.ir.ops.image)."""
    if mode in ("constant", "nearest"):
        return em.add("Clip", [index, em.scalar(0, "int64"), em.scalar(size - 1, "int64")])
    if mode == "wrap":
        return em.add("Mod", [index, em.scalar(size, "int64")])
    if mode == "mirror" and size == 1:
        return em.add("Mul", [index, em.scalar(0, "int64")])
    period = 2 * (size - 1) if mode == "mirror" else 2 * size
    top = period if mode == "mirror" else period - 1
    m = em.add("Mod", [index, em.scalar(period, "int64")])
    beyond = em.add("Greater", [m, em.scalar(size - 1, "int64")])
    return em.add("Where", [beyond, em.add("Sub", [em.scalar(top, "int64"), m]), m])


def _points(em: Emitter, node: Node, transform: str, out_size: tuple[int, int],
            size: tuple[int, int]) -> list[tuple[str, str, str, str]]:
    """(rows, cols, weight, inside) of each sample point, each [N, OH, OW]; rows and cols
    fixed by fill_mode, inside the unfixed point's test, weight None for 1 (nearest)."""
    dtype = node.inputs[1].type.dtype
    np_dtype = numpy_dtype(dtype)
    t = em.add("Reshape", [transform, em.ints([-1, 6, 1, 1])])
    a = [em.add("Gather", [t, em.scalar(k, "int64")], axis=1) for k in range(6)]
    y = em.const(np.arange(out_size[0], dtype=np_dtype).reshape(-1, 1), "affine.rows")
    x = em.const(np.arange(out_size[1], dtype=np_dtype).reshape(1, -1), "affine.cols")
    xs = em.add("Add", [em.add("Add", [em.add("Mul", [a[0], x]), em.add("Mul", [a[1], y])]),
                        a[2]])
    ys = em.add("Add", [em.add("Add", [em.add("Mul", [a[3], x]), em.add("Mul", [a[4], y])]),
                        a[5]])
    int64 = ONNX_DTYPES["int64"]
    axes = []
    for coord in (ys, xs):
        if node.attr["interpolation"] == "nearest":
            axes.append([(em.add("Cast", [em.add("Round", [coord])], to=int64), None)])
            continue
        low = em.add("Floor", [coord])
        up = em.add("Sub", [coord, low])
        index = em.add("Cast", [low], to=int64)
        axes.append([(index, em.add("Sub", [em.scalar(1, dtype), up])),
                     (em.add("Add", [index, em.scalar(1, "int64")]), up)])
    mode = node.attr["fill_mode"]
    points = []
    for rows, wy in axes[0]:
        for cols, wx in axes[1]:
            tests = [em.add("GreaterOrEqual", [rows, em.scalar(0, "int64")]),
                     em.add("Less", [rows, em.scalar(size[0], "int64")]),
                     em.add("GreaterOrEqual", [cols, em.scalar(0, "int64")]),
                     em.add("Less", [cols, em.scalar(size[1], "int64")])]
            inside = em.add("And", [em.add("And", tests[:2]), em.add("And", tests[2:])])
            weight = em.add("Mul", [wy, wx]) if wy is not None else None
            points.append((_fix(em, rows, size[0], mode), _fix(em, cols, size[1], mode),
                           weight, inside))
    return points


def _last(em: Emitter, x: str) -> str:
    return em.add("Unsqueeze", [x, em.ints([-1])])


@lowering("affine_transform")
def _affine_transform(em: Emitter, node: Node, ins: list[str]) -> str:
    images, out = node.inputs[0].type, node.output.type
    total = None
    for rows, cols, weight, inside in _points(em, node, ins[1], out.shape[1:3],
                                              images.shape[1:3]):
        index = em.add("Concat", [_last(em, rows), _last(em, cols)], axis=-1)
        values = em.add("GatherND", [ins[0], index], batch_dims=1)
        if node.attr["fill_mode"] == "constant":
            fill = em.scalar(node.attr["fill_value"], images.dtype)
            values = em.add("Where", [_last(em, inside), values, fill])
        term = values if weight is None else em.add("Mul", [_last(em, weight), values])
        total = term if total is None else em.add("Add", [total, term])
    return total


@lowering("affine_transform_grad")
def _affine_transform_grad(em: Emitter, node: Node, ins: list[str]) -> str:
    g, out = node.inputs[0].type, node.output.type
    batch = em.add("Squeeze", [em.add("Shape", [ins[1]], start=0, end=1), em.ints([0])])
    images = em.add("Range", [em.scalar(0, "int64"), batch, em.scalar(1, "int64")])
    images = em.add("Reshape", [images, em.ints([-1, 1, 1])])
    result = em.zeros(out)
    for rows, cols, weight, inside in _points(em, node, ins[1], g.shape[1:3], out.shape[1:3]):
        updates = ins[0] if weight is None else em.add("Mul", [_last(em, weight), ins[0]])
        if node.attr["fill_mode"] == "constant":
            updates = em.add("Where", [_last(em, inside), updates, em.scalar(0, g.dtype)])
        expanded = em.add("Expand", [images, em.add("Shape", [rows])])
        index = em.add("Concat", [_last(em, expanded), _last(em, rows), _last(em, cols)],
                       axis=-1)
        result = em.add("ScatterND", [result, index, updates], reduction="add")
    return result
