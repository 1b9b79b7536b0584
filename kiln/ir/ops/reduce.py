"""Reductions over any set of axes, with keepdims: sum, mean, max, min, prod, argmax, argmin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiln.ir.registry import define, fail
from kiln.ir.types import TensorType, normalize_axes


def reduced_shape(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _reduce_rule(numeric_only: bool, float_only: bool = False) -> Callable:
    def infer(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
        (x,) = types
        if float_only and not x.is_float:
            fail(f"expected a floating-point operand x. Received: x: {x}")
        if numeric_only and x.dtype == "bool":
            fail(f"expected a numeric operand x. Received: x: {x}")
        axes = normalize_axes(attrs["axes"], x.rank, "reduction")
        return [x.with_shape(reduced_shape(x, axes, attrs["keepdims"]))]

    return infer


def keep_shape(b: Any, g: Any, x: TensorType, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Bring a reduction's cotangent back to x's shape."""
    if not keepdims and axes:
        g = b.expand_dims(g, axes=axes)
    return b.broadcast_to(g, shape=x.shape)


def _axes(node: Any) -> tuple[int, ...]:
    return normalize_axes(node.attr["axes"], node.inputs[0].type.rank, node.op)


def _sum_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (x,) = node.inputs
    return [keep_shape(b, cots[0], x.type, _axes(node), node.attr["keepdims"])]


def _mean_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (x,) = node.inputs
    count = b.size(x, axes=_axes(node), dtype=x.type.dtype)
    return [keep_shape(b, b.div(cots[0], count), x.type, _axes(node), node.attr["keepdims"])]


def _extreme_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    """The gradient is shared equally among the elements that attain the extreme."""
    (x,) = node.inputs
    axes, keepdims = _axes(node), node.attr["keepdims"]
    y = keep_shape(b, node.output, x.type, axes, keepdims)
    mask = b.cast(b.equal(x, y), dtype=x.type.dtype)
    count = b.sum(mask, axes=axes, keepdims=True)
    g = keep_shape(b, cots[0], x.type, axes, keepdims)
    return [b.mul(g, b.div(mask, count))]


def _prod_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # d prod / d x_i = prod / x_i; exact for non-zero inputs.
    (x,) = node.inputs
    axes, keepdims = _axes(node), node.attr["keepdims"]
    g = keep_shape(b, b.mul(cots[0], node.output), x.type, axes, keepdims)
    return [b.div(g, x)]


def _reference(fn: Callable) -> Callable:
    def run(ctx: Any, x: np.ndarray, axes: Any, keepdims: bool) -> np.ndarray:
        axes_t = normalize_axes(axes, x.ndim, "reduction")
        return np.asarray(fn(x, axis=axes_t, keepdims=keepdims)).astype(x.dtype, copy=False)

    return run


_REDUCE_ATTRS = {"axes": None, "keepdims": False}
for _name, _fn, _vjp, _float in (
    ("sum", np.sum, _sum_vjp, False),
    ("mean", np.mean, _mean_vjp, True),
    ("max", np.max, _extreme_vjp, False),
    ("min", np.min, _extreme_vjp, False),
    ("prod", np.prod, _prod_vjp, False),
):
    define(_name, family="reduce", inputs=("x",), infer=_reduce_rule(True, _float),
           reference=_reference(_fn), vjp=_vjp, attrs=_REDUCE_ATTRS, tags=("reduction",))


def _arg_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    if x.dtype == "bool":
        fail(f"expected a numeric operand x. Received: x: {x}")
    if attrs["axis"] is not None and not isinstance(attrs["axis"], int):
        fail(f"expected axis as one int (or none: every axis). Received: axis={attrs['axis']!r}")
    axes = normalize_axes(attrs["axis"], x.rank, "argmax/argmin")
    return [TensorType(reduced_shape(x, axes, attrs["keepdims"]), "int64")]


def _arg_reference(fn: Callable) -> Callable:
    def run(ctx: Any, x: np.ndarray, axis: int, keepdims: bool) -> np.ndarray:
        return fn(x, axis=axis, keepdims=keepdims).astype(np.int64)

    return run


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    define(_name, family="reduce", inputs=("x",), infer=_arg_rule,
           reference=_arg_reference(_fn), differentiable=False,
           attrs={"axis": -1, "keepdims": False}, tags=("reduction",))
