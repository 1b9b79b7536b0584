"""Launchers of gather, scatter_add and one_hot (kiln.ir.ops.indexing) for the numba-cuda
backend: the op's axis becomes the middle axis of a 3-D view (kernels/indexing.py).

An index outside [0, size) writes the node's code (RunContext.error_code) into the call's
error flag, which the executable reads when the call ends and turns into a KilnValueError
naming the node; the kernel gives zeros (gather) or skips the index (scatter_add). A
context without a flag (a launcher run alone) gets a scratch one nobody reads.
"""

from __future__ import annotations

import math
from typing import Any

from kiln.ir.graph import Node
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.kernels import indexing as KI
from kiln.runtimes.numba_cuda.kernels.arrays import flat
from kiln.runtimes.numba_cuda.kernels.layout import launch_1d, reshaped


def error_flag(ctx: RunContext, node: Node, size: int) -> tuple[Any, int]:
    """(the device int32[1] that kernels set on an index out of range, this node's code)."""
    flag = ctx.error_flag
    if flag is None:
        flag = ctx.empty((1,), "int32", tag="error-flag")
        launch_1d(ctx, KI.fill_zero, 1, flag)
    return flag, ctx.error_code(node, f"indices in [0, {size})")


def launch_gather(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    x, indices = inputs
    (out,) = outputs
    axis = node.attr["axis"] % len(x.shape)
    if out.size == 0:
        return
    outer, size = math.prod(x.shape[:axis]), x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    m = math.prod(indices.shape)
    launch_1d(ctx, KI.gather, out.size, reshaped(ctx, x, (outer, size, inner)),
              reshaped(ctx, indices, (m,)), out.reshape(outer, m, inner),
              *error_flag(ctx, node, size))


def launch_scatter_add(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any],
                       ) -> None:
    updates, indices = inputs
    (out,) = outputs
    axis = node.attr["axis"] % len(out.shape)
    if out.size == 0:
        return
    launch_1d(ctx, KI.fill_zero, out.size, flat(out))
    m = math.prod(indices.shape)
    if updates.size == 0:
        return
    outer, size = math.prod(out.shape[:axis]), out.shape[axis]
    inner = math.prod(out.shape[axis + 1:])
    launch_1d(ctx, KI.scatter_add, updates.size, reshaped(ctx, updates, (outer, m, inner)),
              reshaped(ctx, indices, (m,)), out.reshape(outer, size, inner),
              *error_flag(ctx, node, size))


def launch_one_hot(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (indices,), (out,) = inputs, outputs
    axis = node.attr["axis"] % len(out.shape)
    if out.size == 0:
        return
    outer, inner = math.prod(out.shape[:axis]), math.prod(out.shape[axis + 1:])
    launch_1d(ctx, KI.one_hot, out.size, reshaped(ctx, indices, (outer, inner)),
              out.reshape(outer, out.shape[axis], inner))


LAUNCHERS: dict[str, Launcher] = {
    "gather": launch_gather,
    "scatter_add": launch_scatter_add,
    "one_hot": launch_one_hot,
}
