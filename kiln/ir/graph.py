"""The graph IR: SSA values, nodes in topological order, and graphs as functions with state.

A Graph is immutable once built (passes build new graphs). Equality is structural: names,
types, ops, attributes and nested bodies, so `parse(str(g)) == g` is meaningful.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.ir.types import TensorType, canonical_dtype


@dataclass(frozen=True)
class Value:
    """A named SSA value; the name is unique within its graph."""

    name: str
    type: TensorType

    def __str__(self) -> str:
        return f"%{self.name}"

    @property
    def shape(self):  # noqa: ANN201 - convenience mirror of the type
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype


class ArrayAttr:
    """An ndarray held as an attribute (constants); hashable and compared by content."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        array = np.array(array)
        canonical_dtype(array.dtype)  # rejects dtypes the IR has no name for
        array.setflags(write=False)
        self.array = array

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ArrayAttr)
            and self.array.dtype == other.array.dtype
            and self.array.shape == other.array.shape
            and self.array.tobytes() == other.array.tobytes()
        )

    def __hash__(self) -> int:
        return hash((self.array.dtype.str, self.array.shape, self.array.tobytes()))

    def __repr__(self) -> str:
        return f"ArrayAttr({self.array!r})"


AttrValue = Any  # None | bool | int | float | str | tuple[AttrValue, ...] | ArrayAttr


def freeze_attr(value: object) -> AttrValue:
    """Attributes are immutable: lists become tuples, numpy scalars become Python ones."""
    if value is None or isinstance(value, (bool, str, ArrayAttr)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze_attr(v) for v in value)
    if isinstance(value, np.ndarray):
        return ArrayAttr(value)
    raise TypeError(
        f"Expected an attribute value (number, string, list, array). Received: {value!r}")


@dataclass(frozen=True)
class Node:
    """One op application: inputs and outputs are Values; body is a nested Graph (scan)."""

    op: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    attrs: tuple[tuple[str, AttrValue], ...] = ()
    body: Graph | None = None

    @staticmethod
    def make(
        op: str,
        inputs: tuple[Value, ...] | list[Value],
        outputs: tuple[Value, ...] | list[Value],
        attrs: Mapping[str, object] | None = None,
        body: Graph | None = None,
    ) -> Node:
        frozen = tuple(sorted((k, freeze_attr(v)) for k, v in (attrs or {}).items()))
        return Node(op, tuple(inputs), tuple(outputs), frozen, body)

    @property
    def attr(self) -> dict[str, AttrValue]:
        return dict(self.attrs)

    @property
    def output(self) -> Value:
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]


@dataclass(frozen=True)
class Graph:
    """A function: inputs, state, nodes (topological), named outputs, and state updates.

    `outputs` pairs each output name with the value it returns; `updates` pairs a state name
    with the value that state takes after a call (training graphs). `attrs` are graph-level
    attributes, sorted (key, value) pairs like a node's, that passes record for every backend
    (the buffer plan of kiln.compiler.passes.plan_buffers); most graphs have none, and a pass
    that rewrites the nodes drops them, since they describe the graph as it was.
    """

    name: str
    inputs: tuple[Value, ...]
    state: tuple[Value, ...] = ()
    nodes: tuple[Node, ...] = ()
    outputs: tuple[tuple[str, Value], ...] = ()
    updates: tuple[tuple[str, Value], ...] = ()
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    @property
    def attr(self) -> dict[str, AttrValue]:
        return dict(self.attrs)

    def with_attrs(self, attrs: Mapping[str, object]) -> Graph:
        """This graph with its graph-level attributes replaced (frozen and sorted)."""
        frozen = tuple(sorted((k, freeze_attr(v)) for k, v in attrs.items()))
        return Graph(self.name, self.inputs, self.state, self.nodes, self.outputs,
                     self.updates, frozen)

    @property
    def output_values(self) -> tuple[Value, ...]:
        return tuple(v for _, v in self.outputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.outputs)

    @property
    def update_map(self) -> dict[str, Value]:
        return dict(self.updates)

    def values(self) -> Iterator[Value]:
        """Every value defined in this graph (not in nested bodies), in definition order."""
        yield from self.inputs
        yield from self.state
        for node in self.nodes:
            yield from node.outputs

    def value(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(f"graph @{self.name} has no value %{name}")

    def producers(self) -> dict[str, Node]:
        return {out.name: node for node in self.nodes for out in node.outputs}

    def __str__(self) -> str:
        from kiln.ir.printer import print_graph

        return print_graph(self)
