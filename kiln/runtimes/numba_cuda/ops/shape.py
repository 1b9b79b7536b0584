"""Launchers of the shape and movement ops. reshape, expand_dims and squeeze keep the bytes
of a C-contiguous array, so they are device-to-device copies; broadcast_to, transpose, slice,
pad, tile, concat and split are affine maps run by the movement kernel
(kiln.compiler.codegen.cuda.movement); size fills its scalar result."""

from __future__ import annotations

import math
from typing import Any

from kiln.ir.graph import Node
from kiln.ir.types import normalize_axes
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.launch import copy, fill, iota, movement, strides_of


def _identity_axes(shape: tuple[int, ...]) -> list[dict[str, int]]:
    strides = strides_of(shape)
    return [{"extent": d, "stride": s, "start": 0, "step": 1, "out_stride": s, "offset": 0}
            for d, s in zip(shape, strides, strict=True)]


def launch_copy(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    copy(ctx, outputs[0], inputs[0])


def launch_broadcast_to(ctx: RunContext, node: Node, inputs: list[Any],
                        outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    shape, xshape = tuple(out.shape), tuple(x.shape)
    lead = len(shape) - len(xshape)
    xstrides = strides_of(xshape)
    axes = []
    for a, (d, s) in enumerate(zip(shape, strides_of(shape), strict=True)):
        spans = a >= lead and xshape[a - lead] != 1
        axes.append({"extent": d, "stride": xstrides[a - lead] if spans else 0, "start": 0,
                     "step": 1, "out_stride": s, "offset": 0})
    movement(ctx, out, x, axes)


def launch_transpose(ctx: RunContext, node: Node, inputs: list[Any],
                     outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    rank = len(x.shape)
    perm = node.attr["perm"]
    perm = tuple(range(rank - 1, -1, -1)) if perm is None else tuple(perm)
    xstrides = strides_of(tuple(x.shape))
    shape = tuple(out.shape)
    axes = [{"extent": d, "stride": xstrides[perm[a]], "start": 0, "step": 1, "out_stride": s,
             "offset": 0} for a, (d, s) in enumerate(zip(shape, strides_of(shape), strict=True))]
    movement(ctx, out, x, axes)


def launch_slice(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    xshape = tuple(x.shape)
    steps = node.attr["strides"] or (1,) * len(xshape)
    axes = []
    for d, xs, b0, e0, st, os in zip(xshape, strides_of(xshape), node.attr["begin"],
                                      node.attr["end"], steps, strides_of(tuple(out.shape)),
                                      strict=True):
        start, stop, step = slice(b0, e0, st).indices(d)
        axes.append({"extent": len(range(start, stop, step)), "stride": xs, "start": start,
                     "step": step, "out_stride": os, "offset": 0})
    movement(ctx, out, x, axes)


def launch_pad(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    xshape, shape = tuple(x.shape), tuple(out.shape)
    axes = [{"extent": d, "stride": xs, "start": -before, "step": 1, "limit": n,
             "out_stride": s, "offset": 0}
            for d, s, xs, n, (before, _) in zip(shape, strides_of(shape), strides_of(xshape),
                                                xshape, node.attr["pads"], strict=True)]
    if x.size == 0:  # nothing to read: every element is the pad value
        fill(ctx, out, node.attr["value"])
        return
    movement(ctx, out, x, axes, node.attr["value"])


def launch_tile(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    xshape, shape = tuple(x.shape), tuple(out.shape)
    axes = [{"extent": d, "stride": xs, "start": 0, "step": 1, "period": max(n, 1),
             "out_stride": s, "offset": 0}
            for d, s, xs, n in zip(shape, strides_of(shape), strides_of(xshape), xshape,
                                   strict=True)]
    movement(ctx, out, x, axes)


def _axis(node: Node, rank: int) -> int:
    return normalize_axes(node.attr["axis"], rank, node.op)[0]


def launch_concat(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (out,) = outputs
    shape = tuple(out.shape)
    axis = _axis(node, len(shape))
    out_strides = strides_of(shape)
    offset = 0
    for x in inputs:
        axes = _identity_axes(tuple(x.shape))
        for a, spec in enumerate(axes):
            spec["out_stride"] = out_strides[a]
        axes[axis]["offset"] = offset
        movement(ctx, out, x, axes)
        offset += x.shape[axis]


def launch_split(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (x,) = inputs
    xshape = tuple(x.shape)
    axis = _axis(node, len(xshape))
    xstrides = strides_of(xshape)
    offset = 0
    for out in outputs:
        axes = _identity_axes(tuple(out.shape))
        for a, spec in enumerate(axes):
            spec["stride"] = xstrides[a]
        axes[axis]["start"] = offset
        movement(ctx, out, x, axes)
        offset += out.shape[axis]


def launch_size(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    shape = tuple(inputs[0].shape)
    axes = normalize_axes(node.attr["axes"], len(shape), "size")
    fill(ctx, outputs[0], math.prod(shape[a] for a in axes))


def launch_iota(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    iota(ctx, outputs[0])


LAUNCHERS: dict[str, Launcher] = {
    "reshape": launch_copy,
    "expand_dims": launch_copy,
    "squeeze": launch_copy,
    "broadcast_to": launch_broadcast_to,
    "transpose": launch_transpose,
    "slice": launch_slice,
    "pad": launch_pad,
    "tile": launch_tile,
    "concat": launch_concat,
    "split": launch_split,
    "size": launch_size,
    "iota": launch_iota,
}
