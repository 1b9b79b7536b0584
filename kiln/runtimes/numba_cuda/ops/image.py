"""Launchers of affine_transform and its adjoint (kiln.ir.ops.image) for numba-cuda: one
thread per output (or cotangent) element of kernels/image.py."""

from __future__ import annotations

from typing import Any

from kiln.ir.graph import Node
from kiln.ir.ops.image import FILL_MODES
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.kernels import image as KM
from kiln.runtimes.numba_cuda.kernels.layout import launch_1d
from kiln.runtimes.numba_cuda.launch import fill


def _modes(node: Node) -> tuple[bool, int]:
    return node.attr["interpolation"] == "nearest", FILL_MODES.index(node.attr["fill_mode"])


def launch_affine_transform(ctx: RunContext, node: Node, inputs: list[Any],
                            outputs: list[Any]) -> None:
    (out,) = outputs
    if out.size:
        launch_1d(ctx, KM.affine_transform, out.size, *inputs, out, *_modes(node),
                  float(node.attr["fill_value"]))


def launch_affine_transform_grad(ctx: RunContext, node: Node, inputs: list[Any],
                                 outputs: list[Any]) -> None:
    g, _ = inputs
    (dx,) = outputs
    fill(ctx, dx, 0)
    if g.size and dx.size:
        launch_1d(ctx, KM.affine_transform_grad, g.size, *inputs, dx, *_modes(node))


LAUNCHERS: dict[str, Launcher] = {
    "affine_transform": launch_affine_transform,
    "affine_transform_grad": launch_affine_transform_grad,
}
