"""Elementwise ops as scalar expressions: the body of every fused loop.

`SCALAR[op](node, args)` returns a Python expression computing one element of the node's
output from the source expressions of one element of each operand. Each result is cast to
the output dtype, since Numba promotes int32 arithmetic to int64 and mixed float arithmetic
to float64, while the IR keeps every value in its declared dtype (as NumPy does). NaN goes
through maximum, minimum, relu and clip as it does in NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from kiln.compiler.codegen.numba.source import NP_TYPE, typed
from kiln.ir.graph import Node
from kiln.ir.ops.elementwise import SELU_ALPHA, SELU_SCALE
from kiln.ir.types import canonical_dtype

ScalarFn = Callable[[Node, Sequence[str]], str]


def _dtype(node: Node) -> str:
    return node.outputs[0].type.dtype


def _cast(node: Node, expr: str) -> str:
    """expr in the output dtype. Numba keeps float32, float64 and int64 arithmetic in its
    operands' type but widens int32 to int64, so only int32 results need the cast (fewer
    calls also make the driver compile faster)."""
    if _dtype(node) == "int32":
        return f"np.int32({expr})"
    return f"({expr})"


def _c(node: Node, value: float) -> str:
    """A constant in the node's output dtype."""
    return typed(value, _dtype(node))


def _unary(template: str) -> ScalarFn:
    return lambda node, a: _cast(node, template.format(x=a[0]))


def _binary(template: str) -> ScalarFn:
    return lambda node, a: _cast(node, template.format(x=a[0], y=a[1]))


def _float32_or(fast: str, template: str) -> ScalarFn:
    """float32: the kernel library's vectorizable version (a libm call per element keeps
    a loop scalar); other dtypes: NumPy's."""
    def emit(node: Node, a: Sequence[str]) -> str:
        if _dtype(node) == "float32":
            return fast.format(x=a[0])
        return _cast(node, template.format(x=a[0]))

    return emit


def _sigmoid(node: Node, a: Sequence[str]) -> str:
    if _dtype(node) == "float32":
        return f"K.sigmoid32({a[0]})"
    # As the reference: exp of a non-positive number only, stable in both tails.
    x, one = a[0], _c(node, 1)
    e = f"np.exp(-abs({x}))"
    return _cast(node, f"({one} / ({one} + {e}) if {x} >= 0 else {e} / ({one} + {e}))")


def _relu(node: Node, a: Sequence[str]) -> str:
    zero = _c(node, 0)
    return f"({a[0]} if not {a[0]} < {zero} else {zero})"


def _elu(node: Node, a: Sequence[str]) -> str:
    alpha = _c(node, node.attr["alpha"])
    return _cast(node, f"({a[0]} if {a[0]} > 0 else {alpha} * np.expm1({a[0]}))")


def _selu(node: Node, a: Sequence[str]) -> str:
    scale, alpha = _c(node, SELU_SCALE), _c(node, SELU_ALPHA)
    return _cast(node, f"{scale} * ({a[0]} if {a[0]} > 0 else {alpha} * np.expm1({a[0]}))")


def _softplus(node: Node, a: Sequence[str]) -> str:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), as np.logaddexp(0, x) computes it.
    x, zero = a[0], _c(node, 0)
    return _cast(node, f"(({x} if {x} > {zero} else {zero}) + np.log1p(np.exp(-abs({x}))))")


def sign_expr(node: Node, a: Sequence[str]) -> str:
    x = a[0]
    one, zero = _c(node, 1), _c(node, 0)
    nan = f"{x} if {x} != {x} else " if node.outputs[0].type.is_float else ""
    return f"({one} if {x} > {zero} else (-{one} if {x} < {zero} else ({nan}{zero})))"


def _bound(value: float, dtype: str) -> str | None:
    """A clip bound in x's dtype (saturated to an int dtype's range); None when infinite
    for a float, which bounds nothing."""
    if dtype in ("int32", "int64"):
        info = np.iinfo(dtype)
        return typed(int(min(max(value, info.min), info.max)), dtype)
    if np.isinf(value):
        return None
    return typed(value, dtype)


def clip_expr(node: Node, a: Sequence[str]) -> str:
    x, dtype = a[0], _dtype(node)
    low, high = _bound(node.attr["min"], dtype), _bound(node.attr["max"], dtype)
    # np.clip is minimum(maximum(x, min), max): the upper bound wins when min > max.
    expr = x
    if low is not None:
        expr = f"({low} if {expr} < {low} else {expr})"
    if high is not None:
        expr = f"({high} if {expr} > {high} else {expr})"
    return expr


def _select(op: str) -> ScalarFn:
    # np.maximum / np.minimum: NaN in either operand gives NaN.
    def emit(node: Node, a: Sequence[str]) -> str:
        x, y = a
        return f"({x} if {x} {op} {y} or {x} != {x} else {y})"

    return emit


def _cast_op(node: Node, a: Sequence[str]) -> str:
    target = canonical_dtype(node.attr["dtype"])
    if target == "bool":
        return f"({a[0]} != 0)"
    return f"{NP_TYPE[target]}({a[0]})"


SCALAR: dict[str, ScalarFn] = {
    "neg": _unary("-{x}"),
    "abs": _unary("abs({x})"),
    "exp": _float32_or("K.exp32({x})", "np.exp({x})"),
    "log": _unary("np.log({x})"),
    "log1p": _unary("np.log1p({x})"),
    "sqrt": _unary("np.sqrt({x})"),
    "rsqrt": lambda node, a: _cast(node, f"{_c(node, 1)} / np.sqrt({a[0]})"),
    "square": _unary("{x} * {x}"),
    "sin": _unary("np.sin({x})"),
    "cos": _unary("np.cos({x})"),
    "tanh": _float32_or("K.tanh32({x})", "np.tanh({x})"),
    "sigmoid": _sigmoid,
    "relu": _relu,
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "sign": sign_expr,
    "floor": lambda node, a: f"{NP_TYPE[_dtype(node)]}(np.floor({a[0]}))",
    "ceil": lambda node, a: f"{NP_TYPE[_dtype(node)]}(np.ceil({a[0]}))",
    "round": lambda node, a: f"{NP_TYPE[_dtype(node)]}(np.rint({a[0]}))",
    "reciprocal": lambda node, a: _cast(node, f"{_c(node, 1)} / {a[0]}"),
    "clip": clip_expr,
    "add": _binary("{x} + {y}"),
    "sub": _binary("{x} - {y}"),
    "mul": _binary("{x} * {y}"),
    "div": _binary("{x} / {y}"),
    "pow": _binary("np.power({x}, {y})"),
    "maximum": _select(">="),
    "minimum": _select("<="),
    "equal": lambda node, a: f"({a[0]} == {a[1]})",
    "less": lambda node, a: f"({a[0]} < {a[1]})",
    "greater": lambda node, a: f"({a[0]} > {a[1]})",
    "logical_and": lambda node, a: f"({a[0]} and {a[1]})",
    "logical_or": lambda node, a: f"({a[0]} or {a[1]})",
    "logical_not": lambda node, a: f"(not {a[0]})",
    "where": lambda node, a: f"({a[1]} if {a[0]} else {a[2]})",
    "cast": _cast_op,
}
