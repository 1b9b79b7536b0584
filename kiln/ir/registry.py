"""The op registry: every op's type rule, NumPy reference and VJP, keyed by name.

Op families (kiln/ir/ops/*.py) call `define` once per op. Backends keep their own lowering
tables keyed by the same names; a completeness test lists every op against every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.types import TensorType

if TYPE_CHECKING:
    from kiln.ir.builder import GraphBuilder
    from kiln.ir.graph import Graph, Node, Value

# infer(input types, attrs) -> output types; raises KilnTypeError via `fail`.
InferFn = Callable[[Sequence[TensorType], Mapping[str, Any]], Sequence[TensorType]]
# reference(ctx, *arrays, **attrs) -> array or tuple of arrays
ReferenceFn = Callable[..., Any]
# vjp(builder, node, cotangents per output (None = zero)) -> cotangent per input (None = zero)
VjpFn = Callable[["GraphBuilder", "Node", Sequence["Value | None"]], Sequence["Value | None"]]

# Attribute marker: the attribute has no default and must be given.
REQUIRED = object()


class RefContext:
    """What a reference implementation may need beyond its inputs."""

    def __init__(
        self,
        node: Node,
        out_shapes: Sequence[tuple[int, ...]],
        run_graph: Callable[[Graph, Sequence[np.ndarray]], list[np.ndarray]],
    ):
        self.node = node
        self.out_shapes = out_shapes
        self.run_graph = run_graph


@dataclass(frozen=True)
class OpDef:
    """One op's whole meaning.

    Attributes:
        name: the op's name in the IR text.
        family: the module that defines it (elementwise, reduce, shape, ...).
        inputs: operand names used in error messages; a trailing "*" marks a variadic operand.
        attrs: allowed attributes and their defaults (REQUIRED when there is none).
        infer: the type rule.
        reference: the NumPy implementation.
        vjp: the vector-Jacobian product written as IR, or None.
        differentiable: False for ops whose outputs carry no gradient (comparisons, argmax,
            random draws, integer results); grad treats their outputs as constants.
        tags: group sets that passes test against ("elementwise", "unary", "binary",
            "reduction", "commutative", ...).
        augment: for ops whose VJP needs residuals the forward op does not output (scan),
            returns a replacement node that also outputs them, before the VJP runs.
        has_body: the op carries a nested graph.
    """

    name: str
    family: str
    inputs: tuple[str, ...]
    infer: InferFn
    reference: ReferenceFn
    vjp: VjpFn | None = None
    differentiable: bool = True
    attrs: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    augment: Callable[[GraphBuilder, Node], Node] | None = None
    has_body: bool = False

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    def operand_name(self, index: int) -> str:
        if self.variadic and index >= len(self.inputs) - 1:
            return f"{self.inputs[-1].rstrip('*')}[{index - len(self.inputs) + 1}]"
        return self.inputs[index] if index < len(self.inputs) else f"#{index}"

    def check_arity(self, count: int) -> None:
        fixed = len(self.inputs) - (1 if self.variadic else 0)
        if (self.variadic and count < fixed) or (not self.variadic and count != fixed):
            expected = f"at least {fixed}" if self.variadic else str(fixed)
            raise KilnTypeError(
                f"{self.name}: expected {expected} operands ({', '.join(self.inputs)}). "
                f"Received: {count}"
            )

    def complete_attrs(self, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.attrs))
        if unknown:
            raise KilnValueError(
                f"{self.name}: unknown attribute {unknown[0]!r}; expected one of "
                f"{sorted(self.attrs)}. Received: {unknown[0]}={given[unknown[0]]!r}"
            )
        result = {}
        for key, default in self.attrs.items():
            if key in given:
                result[key] = given[key]
            elif default is REQUIRED:
                raise KilnValueError(f"{self.name}: attribute {key!r} is required")
            else:
                result[key] = default
        return result


OPS: dict[str, OpDef] = {}


def define(
    name: str,
    *,
    family: str,
    inputs: Sequence[str],
    infer: InferFn,
    reference: ReferenceFn,
    vjp: VjpFn | None = None,
    differentiable: bool = True,
    attrs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    augment: Callable[[GraphBuilder, Node], Node] | None = None,
    has_body: bool = False,
) -> OpDef:
    if name in OPS:
        raise ValueError(f"op {name!r} is defined twice")
    if differentiable and vjp is None:
        raise ValueError(f"op {name!r} is differentiable but has no VJP")
    op = OpDef(
        name=name,
        family=family,
        inputs=tuple(inputs),
        infer=infer,
        reference=reference,
        vjp=vjp,
        differentiable=differentiable,
        attrs=dict(attrs or {}),
        tags=frozenset(tags),
        augment=augment,
        has_body=has_body,
    )
    OPS[name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KilnValueError(f"Unknown op {name!r}. Known ops: {', '.join(sorted(OPS))}") from None


def fail(message: str) -> None:
    """Raise the type error of a type rule; the builder prefixes the op and value name."""
    raise KilnTypeError(message)


def expect_float(op_input: str, t: TensorType) -> None:
    if not t.is_float:
        fail(f"expected a floating-point operand {op_input}. Received: {op_input}: {t}")


def expect_same_dtype(types: Sequence[TensorType], names: Sequence[str]) -> str:
    dtype = types[0].dtype
    for t, n in zip(types[1:], names[1:]):
        if t.dtype != dtype:
            fail(
                f"expected operands of one dtype. Received: {names[0]}: {types[0]}, {n}: {t}"
            )
    return dtype
