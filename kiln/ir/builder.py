"""GraphBuilder: write IR graphs by hand in Python.

    b = GraphBuilder("predict")
    x = b.input("x", f32["N", 784])
    w = b.state("dense.kernel", f32[784, 32])
    with b.scope("dense"):
        h = b.relu(b.matmul(x, w))
    b.output(h, "y")
    graph = b.build()

Every registered op is a method (`b.matmul`, `b.sum(x, axes=[1])`); Python numbers given as
operands become constants of the other operand's dtype. Type errors name the op, the value
being built and the operands' types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from kiln.ir.errors import KilnError, KilnTypeError, KilnValueError
from kiln.ir.graph import ArrayAttr, Graph, Node, Value, freeze_attr
from kiln.ir.registry import get_op
from kiln.ir.types import TensorType, canonical_dtype

Operand = "Value | int | float | bool | np.ndarray"


class GraphBuilder:
    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.state_values: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[tuple[str, Value]] = []
        self.updates: dict[str, Value] = {}
        self._names: set[str] = set()
        self._scopes: list[str] = []
        self._counter = 0

    # -- names ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Values made inside carry `name.` as a prefix: the layer name in dumps and errors."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def fresh_name(self, hint: str | None = None) -> str:
        prefix = ".".join(self._scopes)
        if hint is None and not prefix:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
            self._counter += 1
        else:
            base = f"{prefix}.{hint}" if prefix and hint else (prefix or hint)
            name, k = base, 1
            while name in self._names:
                name = f"{base}.{k}"
                k += 1
        self._names.add(name)
        return name

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise KilnValueError(f"graph @{self.name}: the name %{name} is already used")
        self._names.add(name)
        return name

    # -- signature -----------------------------------------------------------------------
    def input(self, name: str, type: TensorType) -> Value:
        value = Value(self._claim(name), type)
        self.inputs.append(value)
        return value

    def state(self, name: str, type: TensorType) -> Value:
        value = Value(self._claim(name), type)
        self.state_values.append(value)
        return value

    def output(self, value: Value, name: str | None = None) -> None:
        name = name or value.name
        if any(n == name for n, _ in self.outputs):
            raise KilnValueError(f"graph @{self.name}: two outputs are named {name!r}")
        self.outputs.append((name, value))

    def update(self, state: Value | str, value: Value) -> None:
        """Declare the value `state` takes after a call of the graph."""
        name = state if isinstance(state, str) else state.name
        target = next((s for s in self.state_values if s.name == name), None)
        if target is None:
            raise KilnValueError(f"graph @{self.name}: %{name} is not a state value")
        if target.type != value.type:
            raise KilnTypeError(
                f"graph @{self.name}: update of state %{name} expected type {target.type}. "
                f"Received: %{value.name}: {value.type}"
            )
        self.updates[name] = value

    # -- ops -----------------------------------------------------------------------------
    def op(self, op_name: str, *operands: Any, body: Graph | None = None,
           name: str | None = None, **attrs: Any) -> Any:
        """Append one node; returns its Value, or a tuple when the op has several outputs."""
        opdef = get_op(op_name)
        opdef.check_arity(len(operands))
        inputs = self._coerce_operands(op_name, operands)
        full_attrs = {k: freeze_attr(v) for k, v in opdef.complete_attrs(attrs).items()}
        types = [v.type for v in inputs]
        try:
            if opdef.has_body:
                out_types = opdef.infer(types, full_attrs, body)
            else:
                out_types = opdef.infer(types, full_attrs)
        except KilnError as err:
            operands_text = ", ".join(
                f"{opdef.operand_name(i)}=%{v.name}: {v.type}" for i, v in enumerate(inputs)
            )
            hint = name or ".".join(self._scopes) or None
            where = f" in {hint}" if hint else ""
            raise type(err)(f"{op_name}{where} ({operands_text}): {err}") from None
        hint = name or op_name
        outputs = tuple(Value(self.fresh_name(hint if name or self._scopes else None), t)
                        for t in out_types)
        self.nodes.append(Node.make(op_name, inputs, outputs, full_attrs, body))
        return outputs[0] if len(outputs) == 1 else outputs

    def _coerce_operands(self, op_name: str, operands: Sequence[Any]) -> list[Value]:
        # A number takes the dtype of the operands it meets: the first non-bool Value (so the
        # 0.0 in where(cond, x, 0.0) is x's dtype), else bool, else float32.
        values = [o for o in operands if isinstance(o, Value)]
        dtype = next((v.type.dtype for v in values if v.type.dtype != "bool"),
                     values[0].type.dtype if values else "float32")
        result = []
        for i, operand in enumerate(operands):
            if isinstance(operand, Value):
                result.append(operand)
            elif isinstance(operand, (bool, int, float, np.number, np.bool_, np.ndarray)):
                if dtype in ("int32", "int64") and not np.all(np.mod(operand, 1) == 0):
                    raise KilnTypeError(
                        f"{op_name}: expected an integral number next to {dtype} operands. "
                        f"Received: operand {i}={operand!r}"
                    )
                result.append(self.constant(operand, dtype))
            else:
                raise KilnTypeError(
                    f"{op_name}: expected operand {i} to be a Value or a number. "
                    f"Received: {operand!r}"
                )
        return result

    def constant(self, value: Any, dtype: str | None = None,
                 shape: Sequence[Any] | None = None, name: str | None = None) -> Value:
        """A constant: a scalar (optionally filled to `shape`, symbols allowed) or an array."""
        if isinstance(value, np.ndarray) and value.ndim > 0:
            dtype = canonical_dtype(dtype or value.dtype)
            array = np.asarray(value, dtype=np.dtype(_np_name(dtype)))
            return self.op("constant", value=ArrayAttr(array), dtype=dtype,
                           shape=tuple(array.shape), name=name)
        dtype = canonical_dtype(dtype or "float32")
        scalar = np.asarray(value).item()
        if dtype == "bool":
            scalar = bool(scalar)
        elif dtype in ("int32", "int64"):
            scalar = int(scalar)
        else:
            scalar = float(scalar)
        return self.op("constant", value=scalar, dtype=dtype,
                       shape=tuple(shape or ()), name=name)

    def __getattr__(self, op_name: str) -> Any:
        if op_name.startswith("_"):
            raise AttributeError(op_name)
        get_op(op_name)  # a clear error for an unknown op

        def emit(*operands: Any, **attrs: Any) -> Any:
            return self.op(op_name, *operands, **attrs)

        return emit

    def nodes_values(self) -> Iterator[Value]:
        for node in self.nodes:
            yield from node.outputs

    # -- graphs --------------------------------------------------------------------------
    def call(self, graph: Graph, inputs: Mapping[str, Value] | Sequence[Value],
             state: Mapping[str, Value] | None = None,
             ) -> tuple[dict[str, Value], dict[str, Value]]:
        """Inline `graph`; returns its outputs and state updates by name, as values here."""
        if not isinstance(inputs, Mapping):
            if len(inputs) != len(graph.inputs):
                raise KilnValueError(f"inlining @{graph.name}: expected {len(graph.inputs)} "
                                     f"inputs. Received: {len(inputs)}")
            inputs = {v.name: given for v, given in zip(graph.inputs, inputs)}
        env: dict[str, Value] = {}
        for v in graph.inputs:
            env[v.name] = _bind(graph, v, inputs)
        for v in graph.state:
            env[v.name] = _bind(graph, v, state or {})
        for node in graph.nodes:
            outputs = tuple(Value(self.fresh_name(o.name), o.type) for o in node.outputs)
            self.nodes.append(Node(node.op, tuple(env[i.name] for i in node.inputs), outputs,
                                   node.attrs, node.body))
            env.update({o.name: new for o, new in zip(node.outputs, outputs)})
        outs = {name: env[v.name] for name, v in graph.outputs}
        updates = {name: env[v.name] for name, v in graph.updates}
        return outs, updates

    def build(self, verify: bool = True) -> Graph:
        graph = Graph(
            name=self.name,
            inputs=tuple(self.inputs),
            state=tuple(self.state_values),
            nodes=tuple(self.nodes),
            outputs=tuple(self.outputs),
            updates=tuple((s.name, self.updates[s.name]) for s in self.state_values
                          if s.name in self.updates),
        )
        if verify:
            from kiln.ir.verifier import verify as verify_graph

            verify_graph(graph)
        return graph


def _bind(graph: Graph, v: Value, given: Mapping[str, Value]) -> Value:
    if v.name not in given:
        raise KilnValueError(f"inlining @{graph.name}: no value given for %{v.name}")
    if given[v.name].type != v.type:
        raise KilnTypeError(
            f"inlining @{graph.name}: %{v.name} expected type {v.type}. "
            f"Received: %{given[v.name].name}: {given[v.name].type}"
        )
    return given[v.name]


def _np_name(dtype: str) -> str:
    return "bool" if dtype == "bool" else dtype
