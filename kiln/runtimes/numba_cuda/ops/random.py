"""Launchers of uniform, normal and bernoulli (kiln.ir.ops.random) for the numba-cuda backend:
the output filled in row-major order from the key's counter-based stream (kernels/random.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.ir.graph import Node
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.kernels import random as KR
from kiln.runtimes.numba_cuda.kernels.arrays import flat
from kiln.runtimes.numba_cuda.kernels.layout import launch_1d, reshaped


def _draw(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    (key,), (out,) = inputs, outputs
    if out.size == 0:
        return
    a = node.attr
    key1, out1 = reshaped(ctx, key, (1,)), flat(out)
    if node.op == "uniform":
        kernel = KR.uniform32 if np.dtype(out.dtype) == np.float32 else KR.uniform64
        args = (float(a["low"]), float(a["high"]))
    elif node.op == "normal":
        kernel, args = KR.normal, (float(a["mean"]), float(a["stddev"]))
    else:
        kernel, args = KR.bernoulli, (float(a["p"]),)
    launch_1d(ctx, kernel, out.size, key1, out1, *args, int(a["stream"]))


LAUNCHERS: dict[str, Launcher] = {"uniform": _draw, "normal": _draw, "bernoulli": _draw}
