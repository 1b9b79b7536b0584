"""Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons,
logic, where and cast. Each op's type rule, NumPy reference and VJP sit together below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiln.ir.registry import define, expect_float, expect_same_dtype, fail
from kiln.ir.types import TensorType, broadcast_shapes, canonical_dtype

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


# -- type rules ----------------------------------------------------------------------------
def _unary_rule(float_only: bool) -> Callable:
    def infer(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
        (x,) = types
        if float_only:
            expect_float("x", x)
        elif x.dtype == "bool":
            fail(f"expected a numeric operand x. Received: x: {x}")
        return [x]

    return infer


def broadcast_rule(types: Sequence[TensorType], names: Sequence[str]) -> tuple:
    shape = broadcast_shapes(*(t.shape for t in types))
    if shape is None:
        operands = ", ".join(f"{n}: {t}" for n, t in zip(names, types))
        fail(f"expected operands whose shapes broadcast. Received: {operands}")
    return shape


def _binary_rule(float_only: bool, result: str | None = None, logical: bool = False) -> Callable:
    def infer(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
        x, y = types
        dtype = expect_same_dtype(types, ("x", "y"))
        if logical and dtype != "bool":
            fail(f"expected bool operands. Received: x: {x}, y: {y}")
        if float_only:
            expect_float("x", x)
        elif not logical and result is None and dtype == "bool":
            fail(f"expected numeric operands. Received: x: {x}, y: {y}")
        return [TensorType(broadcast_rule(types, ("x", "y")), result or dtype)]

    return infer


# -- gradient helpers ----------------------------------------------------------------------
def unbroadcast(b: Any, g: Any, target: TensorType) -> Any:
    """Sum a broadcast cotangent back down to the operand's shape."""
    if g is None:
        return None
    extra = g.type.rank - target.rank
    if extra:
        g = b.sum(g, axes=tuple(range(extra)), keepdims=False)
    axes = tuple(i for i, (dt, dg) in enumerate(zip(target.shape, g.type.shape))
                 if dt == 1 and dg != 1)
    if axes:
        g = b.sum(g, axes=axes, keepdims=True)
    return g


def _zero_where(b: Any, mask: Any, g: Any) -> Any:
    """g where mask holds, 0 elsewhere."""
    return b.where(mask, g, b.constant(0.0, g.type.dtype))


# -- unary ---------------------------------------------------------------------------------
def _unary(name: str, reference: Callable, vjp: Callable | None, float_only: bool = True,
           attrs: dict | None = None, differentiable: bool = True) -> None:
    def grad(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
        (g,) = cots
        (x,) = node.inputs
        return [vjp(b, x, node.output, g, node.attr)]  # type: ignore[misc]

    define(
        name, family="elementwise", inputs=("x",), infer=_unary_rule(float_only),
        reference=lambda ctx, x, **a: reference(x, **a),
        vjp=grad if vjp else None, differentiable=differentiable,
        attrs=attrs, tags=("elementwise", "unary"),
    )


def _bound(value: float, dtype: np.dtype) -> np.ndarray:
    """A clip bound in x's dtype; an infinite bound saturates to an int dtype's range."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.asarray(min(max(value, info.min), info.max)).astype(dtype)
    return np.asarray(value, dtype)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros((), x.dtype), x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Stable in both tails: exp of a non-positive number only.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


_unary("neg", lambda x: -x, lambda b, x, y, g, a: b.neg(g), float_only=False)
_unary("abs", np.abs, lambda b, x, y, g, a: b.mul(g, b.sign(x)), float_only=False)
_unary("exp", np.exp, lambda b, x, y, g, a: b.mul(g, y))
_unary("log", np.log, lambda b, x, y, g, a: b.div(g, x))
_unary("log1p", np.log1p, lambda b, x, y, g, a: b.div(g, b.add(x, 1.0)))
_unary("sqrt", np.sqrt, lambda b, x, y, g, a: b.div(b.mul(g, 0.5), y))
_unary("rsqrt", lambda x: (1 / np.sqrt(x)).astype(x.dtype),
       lambda b, x, y, g, a: b.mul(g, b.mul(b.mul(y, b.square(y)), -0.5)))
_unary("square", np.square, lambda b, x, y, g, a: b.mul(g, b.mul(x, 2.0)), float_only=False)
_unary("sin", np.sin, lambda b, x, y, g, a: b.mul(g, b.cos(x)))
_unary("cos", np.cos, lambda b, x, y, g, a: b.neg(b.mul(g, b.sin(x))))
_unary("tanh", np.tanh, lambda b, x, y, g, a: b.mul(g, b.sub(1.0, b.square(y))))
_unary("sigmoid", _sigmoid, lambda b, x, y, g, a: b.mul(g, b.mul(y, b.sub(1.0, y))))
_unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)),
       lambda b, x, y, g, a: _zero_where(b, b.greater(x, b.constant(0, x.dtype)), g),
       float_only=False)
_unary(
    "elu",
    lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)).astype(x.dtype),
    lambda b, x, y, g, a: b.where(b.greater(x, 0.0), g, b.mul(g, b.add(y, a["alpha"]))),
    attrs={"alpha": 1.0},
)
_unary(
    "selu",
    lambda x: (SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))).astype(x.dtype),
    lambda b, x, y, g, a: b.where(b.greater(x, 0.0), b.mul(g, SELU_SCALE),
                                  b.mul(g, b.add(y, SELU_SCALE * SELU_ALPHA))),
)
_unary("softplus", _softplus, lambda b, x, y, g, a: b.mul(g, b.sigmoid(x)))
_unary("sign", np.sign, None, float_only=False, differentiable=False)
# Rounding to an integral value (in the operand's float dtype); round takes halves to even,
# as np.round and ONNX's Round. Their gradient is zero almost everywhere: none.
_unary("floor", np.floor, None, differentiable=False)
_unary("ceil", np.ceil, None, differentiable=False)
_unary("round", np.round, None, differentiable=False)
_unary("reciprocal", lambda x: (1 / x).astype(x.dtype),
       lambda b, x, y, g, a: b.neg(b.mul(g, b.square(y))))
_unary(
    "clip",
    lambda x, min, max: np.clip(x, _bound(min, x.dtype), _bound(max, x.dtype)),
    lambda b, x, y, g, a: _zero_where(
        b, b.logical_and(b.logical_not(b.less(x, b.constant(a["min"], x.dtype))),
                         b.logical_not(b.greater(x, b.constant(a["max"], x.dtype)))), g),
    float_only=False, attrs={"min": -np.inf, "max": np.inf},
)


# -- binary --------------------------------------------------------------------------------
def _binary(name: str, reference: Callable, vjp: Callable | None, float_only: bool = False,
            tags: Sequence[str] = (), result: str | None = None, logical: bool = False) -> None:
    def grad(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
        (g,) = cots
        x, y = node.inputs
        gx, gy = vjp(b, x, y, node.output, g)  # type: ignore[misc]
        return [unbroadcast(b, gx, x.type), unbroadcast(b, gy, y.type)]

    define(
        name, family="elementwise", inputs=("x", "y"),
        infer=_binary_rule(float_only, result, logical),
        reference=lambda ctx, x, y: reference(x, y),
        vjp=grad if vjp else None, differentiable=vjp is not None,
        tags=("elementwise", "binary", *tags),
    )


def _pow_vjp(b: Any, x: Any, y: Any, out: Any, g: Any) -> tuple:
    gx = b.mul(g, b.mul(y, b.pow(x, b.sub(y, 1.0))))
    positive = b.greater(x, b.constant(0.0, x.type.dtype))
    safe_x = b.where(positive, x, b.constant(1.0, x.type.dtype))
    gy = b.mul(g, b.mul(out, b.log(safe_x)))
    return gx, gy


def _select_vjp(prefer_x: str) -> Callable:
    """maximum/minimum: the gradient goes to the chosen operand, to x on ties."""

    def vjp(b: Any, x: Any, y: Any, out: Any, g: Any) -> tuple:
        loses = b.less(x, y) if prefer_x == "max" else b.greater(x, y)
        zero = b.constant(0.0, g.type.dtype)
        return b.where(loses, zero, g), b.where(loses, g, zero)

    return vjp


_binary("add", np.add, lambda b, x, y, o, g: (g, g), tags=("commutative",))
_binary("sub", np.subtract, lambda b, x, y, o, g: (g, b.neg(g)))
_binary("mul", np.multiply, lambda b, x, y, o, g: (b.mul(g, y), b.mul(g, x)),
        tags=("commutative",))
_binary("div", lambda x, y: np.divide(x, y).astype(x.dtype),
        lambda b, x, y, o, g: (b.div(g, y), b.neg(b.div(b.mul(g, o), y))), float_only=True)
_binary("pow", lambda x, y: np.power(x, y).astype(x.dtype), _pow_vjp, float_only=True)
_binary("maximum", np.maximum, _select_vjp("max"), tags=("commutative",))
_binary("minimum", np.minimum, _select_vjp("min"), tags=("commutative",))
_binary("equal", np.equal, None, result="bool", tags=("commutative",))
_binary("less", np.less, None, result="bool")
_binary("greater", np.greater, None, result="bool")
_binary("logical_and", np.logical_and, None, logical=True, tags=("commutative",))
_binary("logical_or", np.logical_or, None, logical=True, tags=("commutative",))


def _not_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    if x.dtype != "bool":
        fail(f"expected a bool operand x. Received: x: {x}")
    return [x]


define("logical_not", family="elementwise", inputs=("x",), infer=_not_rule,
       reference=lambda ctx, x: np.logical_not(x), differentiable=False,
       tags=("elementwise", "unary"))


# -- where, cast ---------------------------------------------------------------------------
def _where_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    cond, x, y = types
    if cond.dtype != "bool":
        fail(f"expected a bool operand cond. Received: cond: {cond}")
    dtype = expect_same_dtype((x, y), ("x", "y"))
    return [TensorType(broadcast_rule(types, ("cond", "x", "y")), dtype)]


def _where_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    cond, x, y = node.inputs
    zero = b.constant(0.0, g.type.dtype)
    return [None, unbroadcast(b, b.where(cond, g, zero), x.type),
            unbroadcast(b, b.where(cond, zero, g), y.type)]


define("where", family="elementwise", inputs=("cond", "x", "y"), infer=_where_rule,
       reference=lambda ctx, c, x, y: np.where(c, x, y), vjp=_where_vjp,
       tags=("elementwise",))


def _cast_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    return [types[0].with_dtype(canonical_dtype(attrs["dtype"]))]


def _cast_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    (x,) = node.inputs
    if not x.type.is_float or g is None:
        return [None]
    return [b.cast(g, dtype=x.type.dtype)]


define("cast", family="elementwise", inputs=("x",), infer=_cast_rule,
       reference=lambda ctx, x, dtype: x.astype(canonical_dtype(dtype)),
       vjp=_cast_vjp, attrs={"dtype": "float32"}, tags=("elementwise", "unary"))
