"""ONNX lowerings of the elementwise ops and `constant`.

Most map to one ONNX op. Where ONNX's op rounds differently from the NumPy reference, the
lowering writes the reference's formula instead: log1p and expm1 (elu, selu, softplus) use
Kahan's compensated forms, accurate to a few ulp near zero where log(1 + x) and exp(x) - 1
lose every digit; selu keeps its constants in the operand's dtype (ONNX's Selu takes them as
float32 attributes). onnxruntime has no bool Where, so a bool `where` is written with And/Or.
"""

from __future__ import annotations

import numpy as np

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES, Emitter, lowering
from kiln.ir.graph import ArrayAttr, Node
from kiln.ir.ops.elementwise import SELU_ALPHA, SELU_SCALE
from kiln.ir.types import canonical_dtype, numpy_dtype

_UNARY = {
    "neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
    "sin": "Sin", "cos": "Cos", "floor": "Floor", "ceil": "Ceil", "round": "Round",
    "sigmoid": "Sigmoid", "sign": "Sign", "reciprocal": "Reciprocal", "relu": "Relu",
    "logical_not": "Not",
}
_BINARY = {
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
    "minimum": "Min", "equal": "Equal", "less": "Less", "greater": "Greater",
    "logical_and": "And", "logical_or": "Or",
}


def _dtype(node: Node, index: int = 0) -> str:
    return node.inputs[index].type.dtype


@lowering(*_UNARY)
def _unary(em: Emitter, node: Node, ins: list[str]) -> str:
    return em.add(_UNARY[node.op], ins)


@lowering(*_BINARY)
def _binary(em: Emitter, node: Node, ins: list[str]) -> str:
    if node.op in ("less", "greater") and _dtype(node) == "bool":
        # ONNX orders numbers only: compare bools as 0/1.
        ins = [em.add("Cast", [name], to=ONNX_DTYPES["int32"]) for name in ins]
    return em.add(_BINARY[node.op], ins)


@lowering("square")
def _square(em: Emitter, node: Node, ins: list[str]) -> str:
    return em.add("Mul", [ins[0], ins[0]])


@lowering("rsqrt")
def _rsqrt(em: Emitter, node: Node, ins: list[str]) -> str:
    return em.add("Reciprocal", [em.add("Sqrt", ins)])  # 1 / sqrt(x), as the reference


def log1p(em: Emitter, x: str, dtype: str) -> str:
    """log(1 + x) to a few ulp: log(u) * x / (u - 1) with u = 1 + x (Goldberg); x where u
    rounds to 1, and log(u) where u - 1 == x (so x = inf gives inf, not inf / inf)."""
    one = em.scalar(1, dtype)
    u = em.add("Add", [x, one])
    d = em.add("Sub", [u, one])
    log_u = em.add("Log", [u])
    scaled = em.add("Mul", [log_u, em.add("Div", [x, d])])
    exact = em.add("Where", [em.add("Equal", [d, x]), log_u, scaled])
    return em.add("Where", [em.add("Equal", [u, one]), x, exact])


def expm1_nonpositive(em: Emitter, x: str, dtype: str) -> str:
    """exp(x) - 1 for x <= 0 to a few ulp (Kahan): (u - 1) * x / log(u) with u = exp(x);
    x where u rounds to 1, -1 where u - 1 rounds to -1 (so log(0) never divides)."""
    one = em.scalar(1, dtype)
    u = em.add("Exp", [x])
    d = em.add("Sub", [u, one])
    scaled = em.add("Mul", [d, em.add("Div", [x, em.add("Log", [u])])])
    saturated = em.add("Where", [em.add("Equal", [d, em.scalar(-1, dtype)]), d, scaled])
    return em.add("Where", [em.add("Equal", [u, one]), x, saturated])


def _negative_branch(em: Emitter, x: str, dtype: str) -> tuple[str, str]:
    """(x > 0, expm1(min(x, 0))): the unselected branch of elu/selu stays finite."""
    zero = em.scalar(0, dtype)
    return (em.add("Greater", [x, zero]),
            expm1_nonpositive(em, em.add("Min", [x, zero]), dtype))


@lowering("elu")
def _elu(em: Emitter, node: Node, ins: list[str]) -> str:
    dtype = _dtype(node)
    positive, em1 = _negative_branch(em, ins[0], dtype)
    scaled = em.add("Mul", [em.scalar(node.attr["alpha"], dtype), em1])
    return em.add("Where", [positive, ins[0], scaled])


@lowering("selu")
def _selu(em: Emitter, node: Node, ins: list[str]) -> str:
    dtype = _dtype(node)
    positive, em1 = _negative_branch(em, ins[0], dtype)
    inner = em.add("Where", [positive, ins[0],
                             em.add("Mul", [em.scalar(SELU_ALPHA, dtype), em1])])
    return em.add("Mul", [em.scalar(SELU_SCALE, dtype), inner])


@lowering("softplus")
def _softplus(em: Emitter, node: Node, ins: list[str]) -> str:
    # logaddexp(0, x) = max(x, 0) + log1p(exp(-|x|)), as NumPy computes it.
    dtype = _dtype(node)
    x = ins[0]
    tail = em.add("Exp", [em.add("Neg", [em.add("Abs", [x])])])
    return em.add("Add", [em.add("Max", [x, em.scalar(0, dtype)]), log1p(em, tail, dtype)])


@lowering("log1p")
def _log1p(em: Emitter, node: Node, ins: list[str]) -> str:
    return log1p(em, ins[0], _dtype(node))


def _bound(value: float, dtype: str) -> np.ndarray:
    """A clip bound in x's dtype; an infinite one saturates to an int dtype's range."""
    np_dtype = numpy_dtype(dtype)
    if np_dtype.kind in "iu":
        info = np.iinfo(np_dtype)
        return np.array(min(max(value, info.min), info.max)).astype(np_dtype)
    return np.array(value, np_dtype)


@lowering("clip")
def _clip(em: Emitter, node: Node, ins: list[str]) -> str:
    dtype = _dtype(node)
    low, high = node.attr["min"], node.attr["max"]
    bounds = ["" if low == -np.inf and dtype in ("float32", "float64")
              else em.const(_bound(low, dtype), f"const.{dtype}"),
              "" if high == np.inf and dtype in ("float32", "float64")
              else em.const(_bound(high, dtype), f"const.{dtype}")]
    while bounds and not bounds[-1]:
        bounds.pop()
    return em.add("Clip", [ins[0], *bounds]) if bounds else em.add("Identity", ins)


@lowering("where")
def _where(em: Emitter, node: Node, ins: list[str]) -> str:
    cond, x, y = ins
    if _dtype(node, 1) != "bool":
        return em.add("Where", ins)
    # onnxruntime has no bool Where: (cond and x) or (not cond and y).
    return em.add("Or", [em.add("And", [cond, x]),
                         em.add("And", [em.add("Not", [cond]), y])])


@lowering("cast")
def _cast(em: Emitter, node: Node, ins: list[str]) -> str:
    dtype = canonical_dtype(node.attr["dtype"])
    if dtype == _dtype(node):
        return em.add("Identity", ins)
    return em.add("Cast", ins, to=ONNX_DTYPES[dtype])


@lowering("constant")
def _constant(em: Emitter, node: Node, ins: list[str]) -> str:
    value = node.attr["value"]
    t = node.output.type
    if isinstance(value, ArrayAttr):
        return em.const(value.array, node.output.name)
    return em.fill(value, t)
