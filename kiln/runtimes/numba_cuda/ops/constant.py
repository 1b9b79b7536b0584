"""The constant launcher: a scalar fills its result with a kernel; an array constant is
uploaded once per executable and copied device to device at each run."""

from __future__ import annotations

from typing import Any

from kiln.ir.graph import ArrayAttr, Node
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.launch import copy, fill, upload


def launch_constant(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    value = node.attr["value"]
    (out,) = outputs
    if isinstance(value, ArrayAttr):
        # Keyed by the node object itself (kept alive by the graph the executable holds).
        copy(ctx, out, upload(ctx, ("constant", id(node)), value.array))
    else:
        fill(ctx, out, value)


LAUNCHERS: dict[str, Launcher] = {"constant": launch_constant}
