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
    gy = _shared_matrix_grad(b, x, g) if y.type.rank == 2 and x.type.rank > 2 else None
    if gy is None:
        gy = unbroadcast(b, b.matmul(swap_last(b, x), g), y.type)
    return [unbroadcast(b, gx, x.type), gy]


def _shared_matrix_grad(b: Any, x: Any, g: Any) -> Any | None:
    """The cotangent of a matrix y that every matrix of a batched x is multiplied by
    (x[..., M, K] @ y[K, C], a Dense layer on images or sequences): x^T g contracted over
    every batch axis and M. The batch axes after the first fold into M, so the products are
    one GEMM per leading index (one in all when that axis is static too) instead of one per
    batch index, summed afterwards: the separable convnet's pointwise kernels took 832 GEMMs
    of 64x26x128 and a sum over a 27 MB product. None where an axis after the first is
    symbolic (a reshape cannot fold it)."""
    shape, k, c = x.type.shape, x.type.shape[-1], g.type.shape[-1]
    rows = shape[1:-1]
    if not all(isinstance(d, int) for d in (*rows, k, c)):
        return None
    folded = int(np.prod(rows))
    if isinstance(shape[0], int):  # everything static: one product
        x2, g2 = (b.reshape(v, shape=[shape[0] * folded, d]) for v, d in ((x, k), (g, c)))
        return b.matmul(swap_last(b, x2), g2)
    lead = shape[0]
    x3, g3 = (b.reshape(v, shape=[lead, folded, d]) for v, d in ((x, k), (g, c)))
    return b.sum(b.matmul(swap_last(b, x3), g3), axes=(0,), keepdims=False)


define(
    "matmul", family="linalg", inputs=("x", "y"), infer=_matmul_rule,
    reference=lambda ctx, x, y: np.matmul(x, y), vjp=_matmul_vjp, tags=("contraction",),
)
