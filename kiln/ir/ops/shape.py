"""Shape and movement ops: reshape (with -1 and symbols), broadcast_to, expand_dims, size,
transpose, squeeze, concat, split, slice, pad, tile.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from kiln.ir.ops.elementwise import unbroadcast
from kiln.ir.registry import REQUIRED, define, fail
from kiln.ir.types import (
    TensorType,
    broadcast_shapes,
    canonical_dtype,
    check_dim,
    dims_product,
    normalize_axes,
)


# -- reshape -------------------------------------------------------------------------------
def reshape_target(x: TensorType, shape: Sequence[Any]) -> tuple:
    """The output shape of reshaping x to `shape` (ints, symbols, at most one -1)."""
    if sum(1 for d in shape if d == -1) > 1:
        fail(f"expected at most one -1 in shape. Received: shape={list(shape)}")
    known = [check_dim(d) for d in shape if d != -1]
    in_factor, in_syms = dims_product(x.shape)
    t_factor, t_syms = dims_product(known)
    left = Counter(in_syms)
    left.subtract(Counter(t_syms))
    if any(c < 0 for c in left.values()):
        fail(f"cannot reshape {x} to {list(shape)}: the target names a symbol x lacks")
    rest_syms = sorted(left.elements())
    if -1 not in shape:
        if rest_syms or in_factor != t_factor:
            fail(f"cannot reshape {x} to {list(shape)}: the sizes differ")
        return tuple(known)
    if t_factor == 0 or in_factor % t_factor:
        fail(f"cannot reshape {x} to {list(shape)}: {in_factor} is not divisible by {t_factor}")
    factor = in_factor // t_factor
    if not rest_syms:
        fill: Any = factor
    elif len(rest_syms) == 1 and factor == 1:
        fill = rest_syms[0]
    else:
        fail(f"cannot reshape {x} to {list(shape)}: the -1 would be {factor}*{'*'.join(rest_syms)}, "
             "which a single dimension cannot express")
    return tuple(fill if d == -1 else check_dim(d) for d in shape)


define(
    "reshape", family="shape", inputs=("x",),
    infer=lambda types, attrs: [types[0].with_shape(reshape_target(types[0], attrs["shape"]))],
    reference=lambda ctx, x, shape: np.reshape(x, ctx.out_shapes[0]),
    vjp=lambda b, node, cots: [b.reshape(cots[0], shape=node.inputs[0].type.shape)],
    attrs={"shape": REQUIRED}, tags=("movement",),
)


# -- broadcast_to, expand_dims, size -------------------------------------------------------
def _broadcast_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    shape = tuple(check_dim(d) for d in attrs["shape"])
    if broadcast_shapes(x.shape, shape) != shape:
        fail(f"cannot broadcast {x} to shape {list(shape)}")
    return [x.with_shape(shape)]


define(
    "broadcast_to", family="shape", inputs=("x",), infer=_broadcast_rule,
    reference=lambda ctx, x, shape: np.broadcast_to(x, ctx.out_shapes[0]).copy(),
    vjp=lambda b, node, cots: [unbroadcast(b, cots[0], node.inputs[0].type)],
    attrs={"shape": REQUIRED}, tags=("movement",),
)


def _expand_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    rank = x.rank + len(attrs["axes"]) if not isinstance(attrs["axes"], int) else x.rank + 1
    axes = normalize_axes(attrs["axes"], rank, "expand_dims")
    dims = iter(x.shape)
    return [x.with_shape(tuple(1 if i in axes else next(dims) for i in range(rank)))]


define(
    "expand_dims", family="shape", inputs=("x",), infer=_expand_rule,
    reference=lambda ctx, x, axes: np.reshape(x, ctx.out_shapes[0]),
    vjp=lambda b, node, cots: [b.reshape(cots[0], shape=node.inputs[0].type.shape)],
    attrs={"axes": REQUIRED}, tags=("movement",),
)


def _size_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    normalize_axes(attrs["axes"], types[0].rank, "size")
    return [TensorType((), canonical_dtype(attrs["dtype"]))]


def _size_reference(ctx: Any, x: np.ndarray, axes: Any, dtype: str) -> np.ndarray:
    count = int(np.prod([x.shape[a] for a in normalize_axes(axes, x.ndim, "size")]))
    return np.asarray(count, dtype=canonical_dtype(dtype))


# The number of elements along `axes` (all when None) as a scalar: how `mean` over the
# symbolic batch learns its divisor at run time.
define("size", family="shape", inputs=("x",), infer=_size_rule, reference=_size_reference,
       differentiable=False, attrs={"axes": None, "dtype": "float32"})
