"""ONNX lowerings of the shape and movement ops: reshape, broadcast_to, expand_dims, size,
transpose, squeeze, concat, split, slice, pad, tile.

Target shapes come from the IR result's type: static dims as constants, a symbol as the size
an input binds at run time (Shape/Concat), or -1 when it is the only one (Emitter.reshape).
"""

from __future__ import annotations

import numpy as np

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES, Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.ops.shape import slice_plan
from kiln.ir.types import canonical_dtype, normalize_axes, numpy_dtype

INT64_MIN = -(2**63)  # a Slice end before index 0 when stepping backwards


@lowering("reshape", "squeeze")
def _reshape(em: Emitter, node: Node, ins: list[str]) -> str:
    if node.inputs[0].type.shape == node.output.type.shape:
        return em.add("Identity", ins)
    return em.reshape(ins[0], node.output.type)


@lowering("expand_dims")
def _expand_dims(em: Emitter, node: Node, ins: list[str]) -> str:
    axes = normalize_axes(node.attr["axes"], node.output.type.rank, "expand_dims")
    return em.add("Unsqueeze", [ins[0], em.ints(axes)])


@lowering("broadcast_to")
def _broadcast_to(em: Emitter, node: Node, ins: list[str]) -> str:
    if node.inputs[0].type.shape == node.output.type.shape:
        return em.add("Identity", ins)
    return em.add("Expand", [ins[0], em.shape_of(node.output.type.shape)])


@lowering("size")
def _size(em: Emitter, node: Node, ins: list[str]) -> str:
    x = node.inputs[0].type
    axes = normalize_axes(node.attr["axes"], x.rank, "size")
    dims = [x.shape[a] for a in axes]
    dtype = canonical_dtype(node.attr["dtype"])
    if all(isinstance(d, int) for d in dims):
        return em.scalar(int(np.prod(dims, dtype=np.int64)), dtype)
    return em.add("Cast", [em.count(dims)], to=ONNX_DTYPES[dtype])


@lowering("iota")
def _iota(em: Emitter, node: Node, ins: list[str]) -> str:
    (n,) = node.output.type.shape
    dtype = canonical_dtype(node.attr["dtype"])
    if isinstance(n, int):
        return em.const(np.arange(n, dtype=numpy_dtype(dtype)), "const.iota")
    count = em.count([n])  # int64, known at run time
    positions = em.add("Range", [em.scalar(0, "int64"), count, em.scalar(1, "int64")])
    return em.add("Cast", [positions], to=ONNX_DTYPES[dtype])


@lowering("transpose")
def _transpose(em: Emitter, node: Node, ins: list[str]) -> str:
    rank = node.inputs[0].type.rank
    perm = node.attr["perm"]
    perm = tuple(range(rank - 1, -1, -1)) if perm is None else tuple(perm)
    return em.add("Transpose", ins, perm=list(perm))


@lowering("concat")
def _concat(em: Emitter, node: Node, ins: list[str]) -> str:
    if len(ins) == 1:
        return em.add("Identity", ins)
    return em.add("Concat", ins, axis=node.attr["axis"] % node.output.type.rank)


@lowering("split")
def _split(em: Emitter, node: Node, ins: list[str]) -> list[str]:
    sizes = node.attr["sizes"]
    if len(sizes) == 1:
        return [em.add("Identity", ins)]
    axis = node.attr["axis"] % node.inputs[0].type.rank
    return em.add("Split", [ins[0], em.ints(sizes)], len(sizes), axis=axis)


@lowering("slice")
def _slice(em: Emitter, node: Node, ins: list[str]) -> str:
    x = node.inputs[0].type
    plan = slice_plan(x, node.attr["begin"], node.attr["end"], node.attr["strides"])
    starts, ends, axes, steps = [], [], [], []
    for axis, (d, (start, step, count)) in enumerate(zip(x.shape, plan, strict=True)):
        if isinstance(d, str) or (start == 0 and step == 1 and count == d):
            continue  # the whole axis
        end = start + count * step
        starts.append(start)
        ends.append(end if end >= 0 else INT64_MIN)
        axes.append(axis)
        steps.append(step)
    if not axes:
        return em.add("Identity", ins)
    return em.add("Slice", [ins[0], em.ints(starts), em.ints(ends), em.ints(axes),
                            em.ints(steps)])


@lowering("pad")
def _pad(em: Emitter, node: Node, ins: list[str]) -> str:
    pads = node.attr["pads"]
    if all(tuple(p) == (0, 0) for p in pads):
        return em.add("Identity", ins)
    flat = [p[0] for p in pads] + [p[1] for p in pads]
    dtype = node.inputs[0].type.dtype
    value = em.const(np.array(node.attr["value"]).astype(numpy_dtype(dtype)), f"const.{dtype}")
    return em.add("Pad", [ins[0], em.ints(flat), value], mode="constant")


@lowering("tile")
def _tile(em: Emitter, node: Node, ins: list[str]) -> str:
    reps = node.attr["reps"]
    if not reps or all(r == 1 for r in reps):
        return em.add("Identity", ins)
    return em.add("Tile", [ins[0], em.ints(reps)])
