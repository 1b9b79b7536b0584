"""Elementwise ops as scalar expressions for CUDA kernels: one element of a node's output from
one element of each operand.

The math functions are the names the generated module imports (`exp`, `log`, ...): Python's
`math` functions, which Numba's CUDA target lowers to libdevice in the operand's precision,
or NumPy's when the CUDA simulator runs the kernel as Python (where `math.log(0.0)` raises
instead of giving -inf). Numbers are typed literals (np.float32(0.5)): an untyped Python
float would widen a float32 kernel to float64. int32 results are cast back, since Numba
widens int32 arithmetic to int64.
"""

from __future__ import annotations

from collections.abc import Sequence

# The expression helpers are the CPU generator's: both emit Python scalar arithmetic that
# numba types the same way on either target.
from kiln.compiler.codegen.numba.scalar import (
    ScalarFn,
    _binary,
    _c,
    _unary,
    clip_expr,
    sign_expr,
)
from kiln.compiler.codegen.numba.source import NP_TYPE
from kiln.ir.graph import Node
from kiln.ir.ops.elementwise import SELU_ALPHA, SELU_SCALE
from kiln.ir.types import canonical_dtype

# The functions a kernel module imports, from `math` on a GPU and from NumPy in the simulator.
MATH_FUNCTIONS = ("exp", "expm1", "log", "log1p", "sqrt", "tanh", "pow", "sin", "cos",
                  "floor", "ceil")


def _sigmoid(node: Node, a: Sequence[str]) -> str:
    # As the reference: exp of a non-positive number only, stable in both tails.
    x, one = a[0], _c(node, 1)
    e = f"exp(-abs({x}))"
    return f"({one} / ({one} + {e}) if {x} >= {_c(node, 0)} else {e} / ({one} + {e}))"


def _relu(node: Node, a: Sequence[str]) -> str:
    zero = _c(node, 0)
    return f"({a[0]} if not {a[0]} < {zero} else {zero})"  # NaN stays NaN, as np.maximum


def _elu(node: Node, a: Sequence[str]) -> str:
    alpha = _c(node, node.attr["alpha"])
    return f"({a[0]} if {a[0]} > {_c(node, 0)} else {alpha} * expm1({a[0]}))"


def _selu(node: Node, a: Sequence[str]) -> str:
    scale, alpha = _c(node, SELU_SCALE), _c(node, SELU_ALPHA)
    return f"({scale} * ({a[0]} if {a[0]} > {_c(node, 0)} else {alpha} * expm1({a[0]})))"


def _softplus(node: Node, a: Sequence[str]) -> str:
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), as np.logaddexp(0, x) computes it.
    x, zero = a[0], _c(node, 0)
    return f"(({x} if {x} > {zero} else {zero}) + log1p(exp(-abs({x}))))"


def _select(op: str) -> ScalarFn:
    # np.maximum / np.minimum: NaN in either operand gives NaN.
    return lambda node, a: f"({a[0]} if {a[0]} {op} {a[1]} or {a[0]} != {a[0]} else {a[1]})"


# At and above this magnitude every float of the dtype is an integer: rounding is the
# identity there (and x + 1/2 would round before floor sees it).
_INTEGRAL = {"float32": 2.0 ** 23, "float64": 2.0 ** 52}


def _rounding(fn: str) -> ScalarFn:
    """floor or ceil in the float dtype (Python's would be an int in the simulator), for
    magnitudes below _INTEGRAL; NaN and infinities pass through as themselves."""
    def emit(node: Node, a: Sequence[str]) -> str:
        x, dtype = a[0], node.outputs[0].type.dtype
        return (f"({NP_TYPE[dtype]}({fn}({x})) if abs({x}) < {_c(node, _INTEGRAL[dtype])} "
                f"else {x})")

    return emit


def _round(node: Node, a: Sequence[str]) -> str:
    """Halves to even: floor(x + 1/2), less one where x was a half and that is odd; float
    arithmetic only (an int literal in `%` would widen a float32 kernel to float64)."""
    x, dtype = a[0], node.outputs[0].type.dtype
    t, half = NP_TYPE[dtype], _c(node, 0.5)
    up = f"{t}(floor({x} + {half}))"
    odd = f"{t}(floor({up} * {half})) * {_c(node, 2)} != {up}"
    fix = f"({_c(node, 1)} if {up} - {x} == {half} and {odd} else {_c(node, 0)})"
    return f"(({up} - {fix}) if abs({x}) < {_c(node, _INTEGRAL[dtype])} else {x})"


def _cast_op(node: Node, a: Sequence[str]) -> str:
    target = canonical_dtype(node.attr["dtype"])
    if target == "bool":
        return f"({a[0]} != 0)"
    return f"{NP_TYPE[target]}({a[0]})"


SCALAR: dict[str, ScalarFn] = {
    "neg": _unary("-{x}"),
    "abs": _unary("abs({x})"),
    "exp": _unary("exp({x})"),
    "log": _unary("log({x})"),
    "log1p": _unary("log1p({x})"),
    "sqrt": _unary("sqrt({x})"),
    "rsqrt": lambda node, a: f"({_c(node, 1)} / sqrt({a[0]}))",
    "square": _unary("{x} * {x}"),
    "sin": _unary("sin({x})"),
    "cos": _unary("cos({x})"),
    "tanh": _unary("tanh({x})"),
    "sigmoid": _sigmoid,
    "relu": _relu,
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "sign": sign_expr,
    "floor": _rounding("floor"),
    "ceil": _rounding("ceil"),
    "round": _round,
    "reciprocal": lambda node, a: f"({_c(node, 1)} / {a[0]})",
    "clip": clip_expr,
    "add": _binary("{x} + {y}"),
    "sub": _binary("{x} - {y}"),
    "mul": _binary("{x} * {y}"),
    "div": _binary("{x} / {y}"),
    "pow": _binary("pow({x}, {y})"),
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
