"""Linear algebra: matmul with NumPy semantics for operands of rank >= 2 (batched, the batch
dimensions broadcasting), its type rule, NumPy reference and VJP together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.ops.elementwise import unbroadcast
from kiln.ir.registry import define, expect_float, expect_same_dtype, fail
from kiln.ir.types import TensorType, broadcast_shapes


def _matmul_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, y = types
    if x.rank < 2 or y.rank < 2:
        fail(f"expected operands of rank >= 2. Received: x: {x}, y: {y}")
    dtype = expect_same_dtype(types, ("x", "y"))
    expect_float("x", x)
    if x.shape[-1] != y.shape[-2]:
        fail(f"expected the last dimension of x to equal the second-to-last of y. "
             f"Received: x: {x}, y: {y}")
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
    if batch is None:
        fail(f"expected batch dimensions (all but the last two) that broadcast. "
             f"Received: x: {x}, y: {y}")
    return [TensorType((*batch, x.shape[-2], y.shape[-1]), dtype)]


def swap_last(b: Any, v: Any) -> Any:
    """The transpose of the last two axes."""
    rank = v.type.rank
    return b.transpose(v, perm=(*range(rank - 2), rank - 1, rank - 2))


def _matmul_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    x, y = node.inputs
    gx = b.matmul(g, swap_last(b, y))
    gy = b.matmul(swap_last(b, x), g)
    return [unbroadcast(b, gx, x.type), unbroadcast(b, gy, y.type)]


define(
    "matmul", family="linalg", inputs=("x", "y"), infer=_matmul_rule,
    reference=lambda ctx, x, y: np.matmul(x, y), vjp=_matmul_vjp, tags=("contraction",),
)
