"""Shape and movement ops: reshape (with -1 and symbols), broadcast_to, expand_dims, size,
transpose, squeeze, concat, split, slice, pad, tile.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.ops.elementwise import unbroadcast
from kiln.ir.registry import REQUIRED, define, expect_same_dtype, fail
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
        fail(f"cannot reshape {x} to {list(shape)}: the -1 would be "
             f"{factor}*{'*'.join(rest_syms)}, which a single dimension cannot express")
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
    axes = attrs["axes"]
    if not isinstance(axes, (int, tuple)):
        fail(f"expected axes as an int or a list of ints. Received: axes={axes!r}")
    rank = x.rank + (1 if isinstance(axes, int) else len(axes))
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


def _iota_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (axis,) = normalize_axes(attrs["axis"], types[0].rank, "iota")
    return [TensorType((types[0].shape[axis],), canonical_dtype(attrs["dtype"]))]


def _iota_reference(ctx: Any, x: np.ndarray, axis: int, dtype: str) -> np.ndarray:
    (axis,) = normalize_axes(axis, x.ndim, "iota")
    return np.arange(x.shape[axis], dtype=canonical_dtype(dtype))


# The positions 0, 1, ..., n - 1 of x's `axis` (n known only at run time when the axis is
# symbolic): how a positional embedding indexes a sequence of any length (kiln.ops.arange
# over ops.shape(x)[axis]).
define("iota", family="shape", inputs=("x",), infer=_iota_rule, reference=_iota_reference,
       differentiable=False, attrs={"axis": REQUIRED, "dtype": "int32"})


# -- shared checks ---------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _int_list(value: Any, rank: int, name: str, allow_none: bool = False) -> tuple:
    """An attribute that must be a list of `rank` ints (or None entries when allowed)."""
    ok = isinstance(value, (tuple, list)) and len(value) == rank and all(
        _is_int(v) or (allow_none and v is None) for v in value)
    if not ok:
        kind = "ints or none" if allow_none else "ints"
        fail(f"expected {name} to be a list of {rank} {kind}, one per axis. "
             f"Received: {name}={value!r}")
    return tuple(None if v is None else int(v) for v in value)


def _axis(axis: Any, rank: int) -> int:
    if not _is_int(axis) or not -rank <= axis < rank:
        fail(f"expected an axis in [{-rank}, {rank}). Received: axis={axis!r}")
    return int(axis) % rank


# -- transpose, squeeze ----------------------------------------------------------------------
def _perm(x: TensorType, perm: Any) -> tuple[int, ...]:
    """perm as a tuple; None reverses the axes."""
    if perm is None:
        return tuple(range(x.rank - 1, -1, -1))
    perm = _int_list(perm, x.rank, "perm")
    if sorted(perm) != list(range(x.rank)):
        fail(f"expected perm to be a permutation of {list(range(x.rank))}. "
             f"Received: perm={list(perm)}")
    return perm


def _transpose_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    return [x.with_shape(x.shape[a] for a in _perm(x, attrs["perm"]))]


def _transpose_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    perm = _perm(node.inputs[0].type, node.attr["perm"])
    return [b.transpose(cots[0], perm=tuple(int(a) for a in np.argsort(perm)))]


def _perm_of(x: np.ndarray, perm: Any) -> tuple[int, ...]:
    return tuple(range(x.ndim - 1, -1, -1)) if perm is None else tuple(perm)


# Permutes the axes: output axis i is input axis perm[i] (np.transpose).
define(
    "transpose", family="shape", inputs=("x",), infer=_transpose_rule,
    reference=lambda ctx, x, perm: np.transpose(x, _perm_of(x, perm)).copy(),
    vjp=_transpose_vjp, attrs={"perm": None}, tags=("movement",),
)


def _squeeze_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    if attrs["axes"] is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = normalize_axes(attrs["axes"], x.rank, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            fail(f"expected axes of size 1 to squeeze. Received: axes={attrs['axes']!r} "
                 f"on x: {x} (axis {a} has size {x.shape[a]})")
    return [x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)]


# Removes size-1 axes: the given ones, or every static size-1 axis when axes is None.
define(
    "squeeze", family="shape", inputs=("x",), infer=_squeeze_rule,
    reference=lambda ctx, x, axes: np.reshape(x, ctx.out_shapes[0]),
    vjp=lambda b, node, cots: [b.reshape(cots[0], shape=node.inputs[0].type.shape)],
    attrs={"axes": None}, tags=("movement",),
)


# -- concat, split ---------------------------------------------------------------------------
def _concat_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    if not types:
        fail("expected at least one operand xs. Received: none")
    names = [f"xs[{i}]" for i in range(len(types))]
    dtype = expect_same_dtype(types, names)
    first = types[0]
    if first.rank == 0:
        fail(f"expected operands of rank >= 1. Received: xs[0]: {first}")
    axis = _axis(attrs["axis"], first.rank)
    for n, t in zip(names, types, strict=True):
        same = t.rank == first.rank and all(
            a == b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if i != axis)
        if not same:
            fail(f"expected operands of one shape except along axis {axis}. "
                 f"Received: xs[0]: {first}, {n}: {t}")
    if len(types) == 1:
        return [types[0]]
    for n, t in zip(names, types, strict=True):
        if not isinstance(t.shape[axis], int):
            fail(f"expected static sizes along the concat axis {axis} when joining several "
                 f"operands. Received: {n}: {t}")
    total = sum(t.shape[axis] for t in types)
    return [TensorType(first.shape[:axis] + (total,) + first.shape[axis + 1:], dtype)]


def _concat_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    if len(node.inputs) == 1:
        return [g]
    axis = _axis(node.attr["axis"], g.type.rank)
    return list(b.split(g, axis=axis, sizes=tuple(x.type.shape[axis] for x in node.inputs)))


# Joins operands along `axis` (np.concatenate).
define(
    "concat", family="shape", inputs=("xs*",), infer=_concat_rule,
    reference=lambda ctx, *xs, axis: np.concatenate(xs, axis=axis),
    vjp=_concat_vjp, attrs={"axis": 0}, tags=("movement",),
)


def _split_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    if x.rank == 0:
        fail(f"expected an operand of rank >= 1. Received: x: {x}")
    axis, sizes = _axis(attrs["axis"], x.rank), attrs["sizes"]
    length = x.shape[axis]
    if not isinstance(length, int):
        fail(f"expected a static size along the split axis {axis}. Received: x: {x}")
    if (not isinstance(sizes, (tuple, list)) or not sizes
            or not all(_is_int(s) and s >= 0 for s in sizes) or sum(sizes) != length):
        fail(f"expected sizes to be non-negative ints summing to {length}, the size of axis "
             f"{axis}. Received: sizes={sizes!r}")
    return [x.with_shape(x.shape[:axis] + (int(s),) + x.shape[axis + 1:]) for s in sizes]


def _split_reference(ctx: Any, x: np.ndarray, axis: int, sizes: Any) -> tuple:
    parts = np.split(x, np.cumsum(sizes)[:-1].astype(int), axis=axis)
    return tuple(p.copy() for p in parts)


def _split_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    parts = [g if g is not None else b.constant(0.0, out.type.dtype, shape=out.type.shape)
             for g, out in zip(cots, node.outputs, strict=True)]
    if len(parts) == 1:
        return parts
    return [b.concat(*parts, axis=_axis(node.attr["axis"], node.inputs[0].type.rank))]


# Cuts x along `axis` into pieces of the given sizes; one output per piece.
define(
    "split", family="shape", inputs=("x",), infer=_split_rule, reference=_split_reference,
    vjp=_split_vjp, attrs={"axis": 0, "sizes": REQUIRED}, tags=("movement",),
)


# -- slice -----------------------------------------------------------------------------------
def slice_plan(x: TensorType, begin: Any, end: Any, strides: Any) -> list[tuple]:
    """Per axis (start, step, count) of a Python-semantics slice; count may be a symbol.

    A symbolic axis can only be taken whole with step 1, since where a slice of it starts
    or stops depends on the size. A step is normalized to 1 where count <= 1.
    """
    begin = _int_list(begin, x.rank, "begin", allow_none=True)
    end = _int_list(end, x.rank, "end", allow_none=True)
    strides = (1,) * x.rank if strides is None else _int_list(strides, x.rank, "strides")
    plan = []
    for axis, (d, b0, e0, s) in enumerate(zip(x.shape, begin, end, strides, strict=True)):
        if s == 0:
            fail(f"expected non-zero strides. Received: strides={list(strides)}")
        if isinstance(d, str):
            if b0 not in (None, 0) or e0 is not None or s != 1:
                fail(f"expected the full range with stride 1 on symbolic axis {axis} ({d}); "
                     f"a slice of it would depend on its run-time size. Received: "
                     f"begin={b0}, end={e0}, stride={s} on x: {x}")
            plan.append((0, 1, d))
            continue
        start, stop, step = slice(b0, e0, s).indices(d)
        count = len(range(start, stop, step))
        plan.append((start, step if count > 1 else 1, count))
    return plan


def _slice_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    plan = slice_plan(x, attrs["begin"], attrs["end"], attrs["strides"])
    return [x.with_shape(count for _, _, count in plan)]


def _slice_reference(ctx: Any, x: np.ndarray, begin: Any, end: Any, strides: Any) -> Any:
    steps = strides or (None,) * x.ndim
    return x[tuple(slice(b0, e0, s) for b0, e0, s in zip(begin, end, steps, strict=True))].copy()


def _spread(b: Any, g: Any, steps: Sequence[int]) -> Any:
    """Along each axis with step k > 1, follow every element by k - 1 zeros."""
    spread, pads, merged = [], [], []
    for d, step in zip(g.type.shape, steps, strict=True):
        spread.append(d)
        pads.append((0, 0))
        merged.append(d)
        if step > 1:
            spread.append(1)
            pads.append((0, step - 1))
            merged[-1] = d * step
    g = b.pad(b.reshape(g, shape=spread), pads=pads)
    return b.reshape(g, shape=merged)


def _slice_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    """Scatter the cotangent into zeros of x's shape: reverse the axes taken backwards,
    spread the strided ones with zeros, then pad into place."""
    (g,) = cots
    x = node.inputs[0].type
    plan = slice_plan(x, node.attr["begin"], node.attr["end"], node.attr["strides"])
    if any(count == 0 for _, _, count in plan):
        return [b.constant(0.0, x.dtype, shape=x.shape)]
    full = (None,) * x.rank
    if any(step < 0 for _, step, _ in plan):
        g = b.slice(g, begin=full, end=full,
                    strides=tuple(-1 if step < 0 else 1 for _, step, _ in plan))
        plan = [(start + (count - 1) * step, -step, count) if step < 0 else (start, step, count)
                for start, step, count in plan]
    if any(step > 1 for _, step, _ in plan):
        g = _spread(b, g, [step for _, step, _ in plan])
    # The zeros after the last element taken may run past the end of x: trim them.
    room = [None if isinstance(n, str) else n - start
            for n, (start, _, _) in zip(x.shape, plan, strict=True)]
    if any(r is not None and d > r for d, r in zip(g.type.shape, room, strict=True)):
        g = b.slice(g, begin=full, end=tuple(r if r is not None and d > r else None
                                             for d, r in zip(g.type.shape, room, strict=True)))
    pads = tuple((0, 0) if r is None else (start, r - d)
                 for d, r, (start, _, _) in zip(g.type.shape, room, plan, strict=True))
    if any(p != (0, 0) for p in pads):
        g = b.pad(g, pads=pads)
    return [g]


# Python slicing per axis: begin/end are lists of ints or none (none = from the start / to
# the end, negative counts from the end), strides a list of non-zero ints (none = all 1).
define(
    "slice", family="shape", inputs=("x",), infer=_slice_rule, reference=_slice_reference,
    vjp=_slice_vjp, attrs={"begin": REQUIRED, "end": REQUIRED, "strides": None},
    tags=("movement",),
)


# -- pad, tile -------------------------------------------------------------------------------
def _pads(x: TensorType, pads: Any) -> tuple[tuple[int, int], ...]:
    ok = isinstance(pads, (tuple, list)) and len(pads) == x.rank and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) and v >= 0 for v in p)
        for p in pads)
    if not ok:
        fail(f"expected pads to be {x.rank} pairs (before, after) of non-negative ints, one "
             f"per axis. Received: pads={pads!r}")
    result = tuple((int(p[0]), int(p[1])) for p in pads)
    for axis, (d, p) in enumerate(zip(x.shape, result, strict=True)):
        if isinstance(d, str) and p != (0, 0):
            fail(f"expected pads (0, 0) on symbolic axis {axis} ({d}). Received: "
                 f"pads={[list(q) for q in result]} on x: {x}")
    return result


def _pad_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    pads, value = _pads(x, attrs["pads"]), attrs["value"]
    if not isinstance(value, (bool, int, float)):
        fail(f"expected a number as value. Received: value={value!r}")
    if x.dtype == "bool" and value not in (0, 1):
        fail(f"expected a value of 0 or 1 (false or true) to pad x: {x}. Received: value={value}")
    if not x.is_float and not float(value).is_integer():
        fail(f"expected an integral value to pad x: {x}. Received: value={value}")
    return [x.with_shape(d if isinstance(d, str) else d + p[0] + p[1]
                         for d, p in zip(x.shape, pads, strict=True))]


def _pad_reference(ctx: Any, x: np.ndarray, pads: Any, value: Any) -> np.ndarray:
    out = np.full(ctx.out_shapes[0], value, dtype=x.dtype)
    out[tuple(slice(before, before + n) for (before, _), n in zip(pads, x.shape, strict=True))] = x
    return out


def _pad_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    pads = _pads(node.inputs[0].type, node.attr["pads"])
    return [b.slice(cots[0], begin=tuple(before for before, _ in pads),
                    end=tuple(-after if after else None for _, after in pads))]


# Constant padding: pads[i] = (before, after) elements of `value` around axis i.
define(
    "pad", family="shape", inputs=("x",), infer=_pad_rule, reference=_pad_reference,
    vjp=_pad_vjp, attrs={"pads": REQUIRED, "value": 0.0}, tags=("movement",),
)


def _tile_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    reps = _int_list(attrs["reps"], x.rank, "reps")
    if any(r < 0 for r in reps):
        fail(f"expected non-negative reps. Received: reps={list(reps)}")
    for axis, (d, r) in enumerate(zip(x.shape, reps, strict=True)):
        if isinstance(d, str) and r != 1:
            fail(f"expected rep 1 on symbolic axis {axis} ({d}). Received: reps={list(reps)} "
                 f"on x: {x}")
    return [x.with_shape(d if isinstance(d, str) else d * r
                         for d, r in zip(x.shape, reps, strict=True))]


def _tile_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # tile lays whole copies of x side by side, so axis i of the cotangent splits into
    # (reps[i], size[i]) with the copy index outermost; summing over the copies gives x's.
    (g,) = cots
    x = node.inputs[0].type
    shape: list = []
    copy_axes = []
    for d, r in zip(x.shape, node.attr["reps"], strict=True):
        if r != 1:
            copy_axes.append(len(shape))
            shape.append(r)
        shape.append(d)
    if not copy_axes:
        return [g]
    return [b.sum(b.reshape(g, shape=shape), axes=tuple(copy_axes), keepdims=False)]


# Repeats x reps[i] times along each axis i (np.tile with len(reps) == rank).
define(
    "tile", family="shape", inputs=("x",), infer=_tile_rule,
    reference=lambda ctx, x, reps: np.tile(x, reps) if reps else x.copy(),
    vjp=_tile_vjp, attrs={"reps": REQUIRED}, tags=("movement",),
)
