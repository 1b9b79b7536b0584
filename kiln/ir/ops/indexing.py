"""Indexing ops: gather (np.take along one axis, what Embedding lowers to), its adjoint
scatter_add (np.add.at along one axis), and one_hot. Each op's type rule, NumPy reference and
VJP sit together below.

Index range: gather and scatter_add accept indices in [0, size) only (no negative wrap-around,
as in an embedding lookup); the reference raises KilnValueError naming the op, the offending
index and the valid range. one_hot instead maps an index outside [0, depth) to an all-zero row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.errors import KilnValueError
from kiln.ir.registry import REQUIRED, RefContext, define, fail
from kiln.ir.types import INT_DTYPES, TensorType, canonical_dtype, check_dim, numpy_dtype


def _expect_indices(t: TensorType) -> None:
    if t.dtype not in INT_DTYPES:
        fail(f"expected int32 or int64 indices. Received: indices: {t}")


def _axis(axis: Any, rank: int, what: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -rank <= axis < rank:
        fail(f"expected axis in [{-rank}, {rank}) for {what}. Received: axis={axis!r}")
    return axis % rank


def _check_range(ctx: RefContext, indices: np.ndarray, size: int) -> None:
    """Raise KilnValueError on the first index outside [0, size)."""
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        node = ctx.node
        raise KilnValueError(
            f"{node.op} (%{node.outputs[0].name}): expected indices in [0, {size}). "
            f"Received: indices{list(position)}={int(indices[position])}"
        )


# -- gather --------------------------------------------------------------------------------
def _gather_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, indices = types
    _expect_indices(indices)
    if x.rank == 0:
        fail(f"expected an operand x of rank >= 1. Received: x: {x}")
    axis = _axis(attrs["axis"], x.rank, "x")
    return [x.with_shape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])]


def _gather_reference(ctx: RefContext, x: np.ndarray, indices: np.ndarray,
                      axis: int) -> np.ndarray:
    axis = axis % x.ndim
    _check_range(ctx, indices, x.shape[axis])
    return np.take(x, indices, axis=axis)


def _gather_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    x, indices = node.inputs
    axis = node.attr["axis"] % x.type.rank
    return [b.scatter_add(g, indices, axis=axis, size=x.type.shape[axis]), None]


# gather(x, indices) {axis=0}: out[a..., i..., b...] = x[a..., indices[i...], b...], with
# shape x.shape[:axis] + indices.shape + x.shape[axis+1:].
define("gather", family="indexing", inputs=("x", "indices"), infer=_gather_rule,
       reference=_gather_reference, vjp=_gather_vjp, attrs={"axis": 0}, tags=("indexing",))


# -- scatter_add ---------------------------------------------------------------------------
def _scatter_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    updates, indices = types
    _expect_indices(indices)
    if updates.dtype == "bool":
        fail(f"expected numeric updates. Received: updates: {updates}")
    rank = updates.rank - indices.rank + 1
    if rank < 1:
        fail(f"expected updates of rank >= indices' rank. Received: updates: {updates}, "
             f"indices: {indices}")
    axis = _axis(attrs["axis"], rank, "the output")
    if updates.shape[axis:axis + indices.rank] != indices.shape:
        fail(f"expected updates whose dimensions {axis}..{axis + indices.rank - 1} are "
             f"indices' shape. Received: updates: {updates}, indices: {indices}")
    size = check_dim(attrs["size"])
    return [updates.with_shape(updates.shape[:axis] + (size,)
                               + updates.shape[axis + indices.rank:])]


def _scatter_reference(ctx: RefContext, updates: np.ndarray, indices: np.ndarray,
                       axis: int, size: Any) -> np.ndarray:
    shape = ctx.out_shapes[0]
    axis = axis % len(shape)
    _check_range(ctx, indices, shape[axis])
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, (slice(None),) * axis + (indices,), updates)
    return out


def _scatter_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    _, indices = node.inputs
    axis = node.attr["axis"] % node.output.type.rank
    return [b.gather(g, indices, axis=axis), None]


# scatter_add(updates, indices) {axis, size}: zeros with updates' shape except `size` along
# axis (where updates has indices' dimensions), then out[a..., indices[i...], b...] +=
# updates[a..., i..., b...], repeated indices accumulating (np.add.at). The adjoint of gather.
define("scatter_add", family="indexing", inputs=("updates", "indices"), infer=_scatter_rule,
       reference=_scatter_reference, vjp=_scatter_vjp,
       attrs={"axis": REQUIRED, "size": REQUIRED}, tags=("indexing",))


# -- one_hot -------------------------------------------------------------------------------
def _one_hot_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (indices,) = types
    _expect_indices(indices)
    depth = attrs["depth"]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        fail(f"expected depth to be an int >= 1. Received: depth={depth!r}")
    axis = _axis(attrs["axis"], indices.rank + 1, "the output")
    shape = indices.shape[:axis] + (depth,) + indices.shape[axis:]
    return [TensorType(shape, canonical_dtype(attrs["dtype"]))]


def _one_hot_reference(ctx: RefContext, indices: np.ndarray, depth: int, dtype: str,
                       axis: int) -> np.ndarray:
    axis = axis % (indices.ndim + 1)
    classes = np.arange(depth).reshape((depth,) + (1,) * (indices.ndim - axis))
    hot = np.expand_dims(indices, axis) == classes
    return hot.astype(numpy_dtype(canonical_dtype(dtype)))


# one_hot(indices) {depth, dtype="float32", axis=-1}: 1 where the index equals the position
# along the new axis `axis` (of length depth), 0 elsewhere, as keras.ops.one_hot. An index
# outside [0, depth), negative ones included, gives an all-zero row (ONNX OneHot would wrap
# negative indices; a lowering there must mask them).
define("one_hot", family="indexing", inputs=("indices",), infer=_one_hot_rule,
       reference=_one_hot_reference, differentiable=False,
       attrs={"depth": REQUIRED, "dtype": "float32", "axis": -1}, tags=("indexing",))
