"""The ONNX emitter's core: scopes, names, constants and run-time shapes, and the lowering
table every op family fills (`LOWERINGS`, op name -> lowering function).

A lowering receives the emitter, the IR node and the ONNX names of its operands, emits ONNX
nodes through `Emitter.add`, and returns the ONNX name of each result. Symbols (the batch N)
stay symbolic: graph inputs and outputs carry them as dim_param, and a shape that needs one at
run time reads it from the input that binds it (`Emitter.dim`). Every ONNX node records the IR
line it came from in its doc_string, so a node in Netron or an ORT error leads to the layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, ValueInfoProto, helper, numpy_helper

from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph, Node
from kiln.ir.printer import format_node
from kiln.ir.types import Dim, TensorType, numpy_dtype

OPSET = 18  # the default ONNX domain's version every emitted model imports
IR_VERSION = 9  # the ONNX IR version of opset 18 (onnx 1.13+)

ONNX_DTYPES: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}

Lowering = Callable[["Emitter", Node, list[str]], "str | Sequence[str]"]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register a function as the ONNX lowering of the named IR ops."""

    def register(fn: Lowering) -> Lowering:
        for op in ops:
            if op in LOWERINGS:
                raise ValueError(f"op {op!r} has two ONNX lowerings")
            LOWERINGS[op] = fn
        return fn

    return register


def value_info(name: str, t: TensorType) -> ValueInfoProto:
    """A typed ValueInfo; symbolic dimensions become dim_param."""
    return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], list(t.shape))


def check_lowerings(graph: Graph) -> None:
    """Refuse, before emitting anything, a graph holding an op with no ONNX lowering; the
    error names the op, the value it defines and its line, in nested bodies too."""
    for node in graph.nodes:
        if node.op not in LOWERINGS:
            raise KilnValueError(
                f"the onnxruntime backend has no ONNX lowering for op {node.op!r}, which defines "
                f"%{node.outputs[0].name if node.outputs else '?'} in @{graph.name}: "
                f"`{_doc(node)}`. Expected an op with an entry in "
                f"kiln.compiler.codegen.onnx.LOWERINGS")
        if node.body is not None:
            check_lowerings(node.body)


def _doc(node: Node, limit: int = 240) -> str:
    """The IR line of a node, cut short (a constant's array attribute prints every element)."""
    text = format_node(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rename_values(nodes: Sequence[NodeProto], renames: dict[str, str]) -> None:
    """Rename values wherever the nodes (and the bodies nested in them) read or write them."""
    if not renames:
        return
    for node in nodes:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name in renames:
                    names[i] = renames[name]
        for attr in node.attribute:
            for graph in (attr.g, *attr.graphs) if attr.HasField("g") else attr.graphs:
                rename_values(graph.node, renames)


class Scope:
    """One ONNX graph under construction: the model's main graph or a Scan body."""

    def __init__(self, parent: Scope | None):
        self.parent = parent
        self.nodes: list[NodeProto] = []
        self.inputs: list[ValueInfoProto] = []
        self.outputs: list[ValueInfoProto] = []
        self.dim_sources: dict[str, tuple[str, int]] = {}  # symbol -> (value, axis)
        self.dims: dict[str, str] = {}  # symbol -> int64[1] holding its size


class Emitter:
    """Builds one ONNX model: fresh names, constants as initializers of the main graph,
    nested scopes for Scan bodies, and the IR node being lowered (for names and docs)."""

    def __init__(self, reserved: Sequence[str] = ()):
        self.names: set[str] = set(reserved)
        self.node_names: set[str] = set()
        self.root = Scope(None)
        self.scope = self.root
        self.initializers: list[TensorProto] = []
        self._consts: dict[tuple, str] = {}
        self.node: Node | None = None  # the IR node being lowered
        self.top: int | None = None  # the index of the main graph's node being lowered
        self.origins: dict[str, int] = {}  # ONNX node name -> self.top when it was added

    # -- names ---------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.names:
            name = f"{hint}.{k}"
            k += 1
        self.names.add(name)
        return name

    def _hint(self, op_type: str) -> str:
        base = self.node.outputs[0].name if self.node is not None and self.node.outputs else "kiln"
        return f"{base}/{op_type}"

    # -- nodes ---------------------------------------------------------------------------
    def add(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, *,
            hint: str | None = None, **attrs: Any) -> Any:
        """Append an ONNX node; returns its output name, or a list when it has several.
        Names derive from the IR value being lowered (`hint` overrides)."""
        hint = hint or self._hint(op_type)
        names = ([self.fresh(hint) for _ in range(outputs)] if isinstance(outputs, int)
                 else list(outputs))
        node_name, k = hint, 1
        while node_name in self.node_names:
            node_name = f"{hint}.{k}"
            k += 1
        self.node_names.add(node_name)
        if self.top is not None:  # -1: a node of a body, timed inside its Scan node
            self.origins[node_name] = self.top if self.scope is self.root else -1
        doc = _doc(self.node) if self.node is not None else None
        node = helper.make_node(op_type, list(inputs), names, name=node_name, doc_string=doc,
                                **{k: v for k, v in attrs.items() if v is not None})
        self.scope.nodes.append(node)
        return names[0] if isinstance(outputs, int) and outputs == 1 else names

    def emit_nodes(self, nodes: Sequence[Node], env: dict[str, str]) -> None:
        """Lower IR nodes in order; `env` maps IR value names to ONNX names and grows."""
        main = self.node is None  # the main graph's nodes, not a body's
        for index, node in enumerate(nodes):
            outer, self.node = self.node, node
            if main:
                self.top = index
            try:
                result = LOWERINGS[node.op](self, node, [env[v.name] for v in node.inputs])
            except Exception as err:
                if not getattr(err, "_kiln_located", False):
                    err.add_note(f"while emitting ONNX for `{_doc(node)}`")
                    err._kiln_located = True  # type: ignore[attr-defined]
                raise
            finally:
                self.node = outer
                if main:
                    self.top = None
            names = [result] if isinstance(result, str) else list(result)
            if len(names) != len(node.outputs):
                raise AssertionError(f"the ONNX lowering of {node.op} returned {len(names)} "
                                     f"values for {len(node.outputs)} outputs")
            for value, name in zip(node.outputs, names, strict=True):
                env[value.name] = name

    @contextlib.contextmanager
    def subgraph(self) -> Iterator[Scope]:
        """A nested scope (a Scan body): its nodes may read values of enclosing scopes."""
        scope = Scope(self.scope)
        self.scope = scope
        try:
            yield scope
        finally:
            self.scope = scope.parent  # type: ignore[assignment]

    def declare_input(self, name: str, t: TensorType) -> None:
        """A graph input of the current scope; it binds the symbols in its shape."""
        self.scope.inputs.append(value_info(name, t))
        for axis, d in enumerate(t.shape):
            if isinstance(d, str):
                self.scope.dim_sources.setdefault(d, (name, axis))

    def declare_outputs(self, outputs: Sequence[tuple[str, str, TensorType]]) -> None:
        """The current scope's graph outputs, as (name, source, type). A source a node of this
        scope produces is renamed to the output (no copy, which onnxruntime would not always
        remove); an input, an initializer, an outer value or a value already given out is
        copied by an Identity."""
        produced = {name for node in self.scope.nodes for name in node.output}
        renames: dict[str, str] = {}
        for name, source, t in outputs:
            if source in produced and source not in renames:
                renames[source] = name
            else:
                self.add("Identity", [source], [name], hint=f"{name}/output")
            self.scope.outputs.append(value_info(name, t))
        rename_values(self.scope.nodes, renames)

    # -- constants -----------------------------------------------------------------------
    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """An initializer of the main graph holding `array` (one per distinct content)."""
        array = np.require(array, requirements="C")  # (ascontiguousarray makes 0-d 1-d)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def scalar(self, value: Any, dtype: str | np.dtype) -> str:
        np_dtype = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
        return self.const(np.array(value, np_dtype), f"const.{np_dtype.name}")

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.array(list(values), np.int64).reshape(-1), "const.ints")

    # -- run-time shapes -----------------------------------------------------------------
    def dim(self, symbol: str) -> str:
        """An int64[1] tensor holding the run-time size of `symbol`."""
        scope = self.scope
        while scope is not None and symbol not in scope.dim_sources:
            scope = scope.parent
        if scope is None:
            raise KilnValueError(f"no graph input binds the symbol {symbol!r}, so its size is "
                                 f"unknown at run time")
        if symbol not in scope.dims:
            source, axis = scope.dim_sources[symbol]
            current, self.scope = self.scope, scope  # emit where the source is visible
            try:
                scope.dims[symbol] = self.add("Shape", [source], start=axis, end=axis + 1)
            finally:
                self.scope = current
        return scope.dims[symbol]

    def shape_of(self, dims: Sequence[Dim]) -> str:
        """An int64[rank] tensor of the dims, static ones as constants, symbols at run time."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(dims)  # type: ignore[arg-type]
        pieces: list[str] = []
        static: list[int] = []
        for d in dims:
            if isinstance(d, int):
                static.append(d)
                continue
            if static:
                pieces.append(self.ints(static))
                static = []
            pieces.append(self.dim(d))
        if static:
            pieces.append(self.ints(static))
        return pieces[0] if len(pieces) == 1 else self.add("Concat", pieces, axis=0)

    def count(self, dims: Sequence[Dim]) -> str:
        """An int64 scalar: the number of elements of a shape."""
        if all(isinstance(d, int) for d in dims):
            return self.scalar(int(np.prod(dims, dtype=np.int64)), "int64")
        return self.add("ReduceProd", [self.shape_of(dims)], keepdims=0)

    def reshape(self, x: str, t: TensorType) -> str:
        """Reshape to a type's shape: a constant target when at most one dim is symbolic
        (as -1), else one built at run time."""
        symbols = [d for d in t.shape if isinstance(d, str)]
        has_zero = 0 in t.shape
        if not symbols:
            return self.add("Reshape", [x, self.ints(t.shape)],  # type: ignore[arg-type]
                            allowzero=1 if has_zero else None)
        if len(symbols) == 1 and not has_zero:
            target = [-1 if isinstance(d, str) else d for d in t.shape]
            return self.add("Reshape", [x, self.ints(target)])
        return self.add("Reshape", [x, self.shape_of(t.shape)], allowzero=1)

    def zeros(self, t: TensorType) -> str:
        return self.fill(0, t)

    def fill(self, value: Any, t: TensorType) -> str:
        """A tensor of the type filled with `value` (ConstantOfShape; a scalar is a constant)."""
        np_dtype = numpy_dtype(t.dtype)
        if not t.shape:
            return self.scalar(value, np_dtype)
        return self.add("ConstantOfShape", [self.shape_of(t.shape)],
                        value=numpy_helper.from_array(np.array([value], np_dtype)))
