"""The ONNX importer's core: an ONNX model (a file or a ModelProto) becomes a kiln `predict`
graph and its state.

What is imported:
    - the default domain's ops that kiln/frontends/onnx/convert.py lists, at opset 7 or later;
      any other op, domain, attribute value or subgraph is refused with an error that names
      the file, the node and what is supported;
    - float32, float64, int32, int64 and bool tensors;
    - initializers: float arrays become state (the parameters, under their ONNX names, so
      `kiln info` counts them and `get_weights`-style tools see them), other ones constants;
    - dimensions: an unknown first dimension of an input, or the first name (dim_param) met
      on one, becomes the batch symbol N; other names become symbols of their own, one per
      name wherever it appears.

Layout. ONNX convolutions and pools are NCHW with OIHW kernels, kiln's are NHWC with HWIO
kernels. A tensor here may be held in either layout (`Tensor.value` for ONNX's own, `.nhwc`
for the same data with its channels last), and each is made from the other only when a
consumer needs it. Elementwise ops, batch normalization, concatenation along channels and
the pools keep channels last, so a chain conv -> bn -> relu -> pool -> conv transposes once
on the way in and once on the way out, not around every node. Kernels are transposed once,
at import, and stored as HWIO state.

Constants. A value computable at import (an initializer, a Constant, Shape of a tensor whose
shape is known, and integer arithmetic on those) is held as an array, or, for shapes with a
symbolic batch, as a tuple of dims, so that PyTorch's Shape -> Gather -> Concat -> Reshape
chains become one reshape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnx import AttributeProto

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES
from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import KilnError, KilnValueError
from kiln.ir.graph import Graph, Value
from kiln.ir.types import TensorType, canonical_dtype

MIN_OPSET = 7
BATCH = "N"
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
Dims = tuple  # a shape vector known at import: ints and symbols

# ONNX TensorProto data types kiln has: the emitter's table read backwards.
_DTYPES = {code: name for name, code in ONNX_DTYPES.items()}


class OnnxImportError(KilnValueError):
    """An ONNX model kiln cannot import: the message names the file, the node and why."""


def dtype_of(code: int, what: str) -> str:
    """kiln's dtype of an ONNX TensorProto data type, or the error naming it."""
    if code not in _DTYPES:
        from onnx import TensorProto

        try:
            name = TensorProto.DataType.Name(code).lower()
        except ValueError:
            name = f"type {code}"
        raise KilnValueError(f"expected {what} of type float32, float64, int32, int64 or bool. "
                             f"Received: {name}")
    return _DTYPES[code]


def safe_name(name: str, fallback: str) -> str:
    """An ONNX name as a readable kiln value name."""
    cleaned = re.sub(r"[^A-Za-z0-9_./\-]", "_", name).strip("./-")
    return cleaned or fallback


def _symbol(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else f"d_{cleaned}"


# -- tensors -------------------------------------------------------------------------------
@dataclass(eq=False)
class Tensor:
    """One ONNX value as the importer holds it: a kiln Value in ONNX's layout (`value`), the
    same data with channels last (`nhwc`, rank 4 only), an array known at import (`array`,
    with the initializer it came from as `origin`), or a shape vector with symbols (`dims`)."""

    value: Value | None = None
    nhwc: Value | None = None
    array: np.ndarray | None = None
    origin: str | None = None
    dims: Dims | None = None
    scalar: bool = False  # dims holds one dimension of rank 0 (Gather of a Shape)

    @property
    def known(self) -> bool:
        return self.array is not None

    def shape(self) -> tuple:
        """The tensor's shape in ONNX's layout."""
        if self.array is not None:
            return tuple(self.array.shape)
        if self.dims is not None:
            return () if self.scalar else (len(self.dims),)
        if self.value is not None:
            return tuple(self.value.type.shape)
        assert self.nhwc is not None
        n, h, w, c = self.nhwc.type.shape
        return (n, c, h, w)

    def dtype(self) -> str:
        if self.array is not None:
            return canonical_dtype(self.array.dtype)
        if self.dims is not None:
            return "int64"
        return (self.value or self.nhwc).type.dtype  # type: ignore[union-attr]

    @property
    def rank(self) -> int:
        return len(self.shape())

    @property
    def channels_last(self) -> bool:
        """Held channels last and not (yet) in ONNX's layout."""
        return self.nhwc is not None and self.value is None


# -- the importer ----------------------------------------------------------------------------
Converter = Callable[["Importer", Any, list["Tensor | None"], dict[str, Any]],
                     "Sequence[Tensor | None]"]


@dataclass
class OpSpec:
    fn: Converter
    attrs: dict[str, Any] = field(default_factory=dict)
    outputs: int = 1  # outputs kiln can produce; a node asking for more is refused


CONVERTERS: dict[str, OpSpec] = {}


def converter(*op_types: str, attrs: dict[str, Any] | None = None,
              outputs: int = 1) -> Callable[[Converter], Converter]:
    """Register the conversion of ONNX `op_types`; `attrs` are the attributes it understands
    with their defaults (any other attribute on a node is refused)."""

    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = OpSpec(fn, dict(attrs or {}), outputs)
        return fn

    return register


class NodeError(KilnError):
    """Raised by a converter: what the node asks for that kiln does not do."""


class Importer:
    """Walks one ONNX graph, node by node, building kiln IR."""

    def __init__(self, model: Any, where: str):
        self.model = model
        self.where = where
        self.b = GraphBuilder("predict")
        self.env: dict[str, Tensor] = {}
        self.state: dict[str, np.ndarray] = {}
        self.opset = _opset(model, where)
        self._symbols: dict[str, str] = {}

    # -- values --------------------------------------------------------------------------
    def value(self, t: Tensor) -> Value:
        """The tensor as a kiln Value in ONNX's layout."""
        if t.value is None:
            if t.array is not None:
                t.value = self.materialize(t.array, t.origin)
            elif t.dims is not None:
                ints = self.int_dims(t.dims)
                t.value = self.b.constant(ints[0] if t.scalar else ints, "int64")
            else:
                t.value = self.b.transpose(t.nhwc, perm=NHWC_TO_NCHW)
        return t.value

    def channels_last(self, t: Tensor) -> Value:
        """The rank-4 tensor as a kiln Value with its channels last."""
        if t.nhwc is None:
            if t.rank != 4:
                raise NodeError(f"expected a tensor of rank 4 (N, C, H, W). Received: rank "
                                f"{t.rank}, shape {list(t.shape())}")
            if t.array is not None:
                t.nhwc = self.materialize(np.ascontiguousarray(t.array.transpose(NCHW_TO_NHWC)),
                                          t.origin)
            else:
                t.nhwc = self.b.transpose(self.value(t), perm=NCHW_TO_NHWC)
        return t.nhwc

    def materialize(self, array: np.ndarray, origin: str | None) -> Value:
        """An array known at import as a kiln value: float arrays of more than one element
        are state (named after the initializer they came from), everything else a constant."""
        if array.dtype.kind == "f" and array.size > 1:
            name = self._state_name(origin or "const")
            self.state[name] = np.ascontiguousarray(array)
            return self.b.state(name, TensorType(array.shape, str(array.dtype)))
        dtype = canonical_dtype(array.dtype)
        if array.ndim == 0:
            return self.b.constant(array.item(), dtype)
        return self.b.constant(np.ascontiguousarray(array), dtype)

    def _state_name(self, origin: str) -> str:
        base = safe_name(origin, "const")
        name, k = base, 1
        while name in self.state or name in self.b._names:
            name = f"{base}.{k}"
            k += 1
        return name

    def int_dims(self, dims: Dims) -> np.ndarray:
        if any(isinstance(d, str) for d in dims):
            raise NodeError(f"expected a shape known at import. Received: {list(dims)}, whose "
                            f"symbolic dimensions are only known at run time")
        return np.asarray(dims, np.int64)

    def known_ints(self, t: Tensor | None, what: str, allow_symbols: bool = False) -> list:
        """The values of an integer operand known at import (axes, pads, a shape)."""
        if t is None:
            raise NodeError(f"expected the operand {what}")
        if t.dims is not None:
            if not allow_symbols:
                return list(self.int_dims(t.dims))
            return list(t.dims)
        return [int(v) for v in self.known_values(t, what)]

    def known_values(self, t: Tensor, what: str) -> list:
        """The elements of an operand known at import, in order."""
        if t.array is None:
            raise NodeError(f"expected {what} to be known at import (an initializer or a "
                            f"Constant). Received: a value computed at run time")
        return t.array.reshape(-1).tolist()

    def symbol(self, param: str, batch: bool = False) -> str:
        """The kiln symbol of an ONNX dim_param, the same wherever the name appears: the
        batch symbol N for the first one on a leading axis (`batch`), else its own name."""
        if param not in self._symbols:
            taken = set(self._symbols.values())
            name = BATCH if batch and BATCH not in taken else _symbol(param)
            while name in taken or (name == BATCH and not batch):
                name += "_"
            self._symbols[param] = name
        return self._symbols[param]

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> Graph:
        graph = self.model.graph
        inits = {init.name: init for init in graph.initializer}
        for init in graph.initializer:
            try:
                array = tensor_array(init, f"the initializer {init.name!r}")
            except KilnError as err:
                raise OnnxImportError(f"{self.where}: {err}") from None
            self.env[init.name] = Tensor(array=array, origin=init.name)
        for k, spec in enumerate(graph.input):
            if spec.name in inits:
                continue  # an initializer listed as an input (IR version < 4): a parameter
            self.env[spec.name] = Tensor(value=self.b.input(
                safe_name(spec.name, f"input{k}"), self._input_type(spec)))
        for index, node in enumerate(graph.node):
            self._convert(index, node)
        for k, out in enumerate(graph.output):
            if out.name not in self.env:
                raise OnnxImportError(f"{self.where}: the graph output {out.name!r} is not "
                                      f"produced by any node")
            t = self.env[out.name]
            value = self.value(t)
            if any(value is v for v in (*self.b.inputs, *self.b.state_values,
                                        *(o for _, o in self.b.outputs))):
                # an output that is an input, a parameter or another output: its own copy
                value = self.b.reshape(value, shape=value.type.shape)
            self.b.output(value, safe_name(out.name, f"output{k}"))
        try:
            return self.b.build()
        except KilnError as err:
            raise OnnxImportError(f"{self.where}: the imported graph is invalid: {err}") from None

    def _input_type(self, spec: Any) -> TensorType:
        where = f"{self.where}: graph input {spec.name!r}"
        kind = spec.type.WhichOneof("value")
        if kind != "tensor_type":
            raise OnnxImportError(f"{where}: expected a tensor. Received: {kind}")
        tt = spec.type.tensor_type
        try:
            dtype = dtype_of(tt.elem_type, "a graph input")
        except KilnError as err:
            raise OnnxImportError(f"{where}: {err}") from None
        if not tt.HasField("shape"):
            raise OnnxImportError(f"{where}: expected a shape (kiln compiles for the ranks "
                                  f"and sizes the model declares). Received: none")
        dims: list[Any] = []
        for axis, dim in enumerate(tt.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param") and dim.dim_param:
                dims.append(self.symbol(dim.dim_param, batch=axis == 0))
            elif axis == 0:
                dims.append(BATCH)
            else:
                raise OnnxImportError(f"{where}: expected every dimension but the first to "
                                      f"have a size or a name. Received: axis {axis} unknown")
        return TensorType(tuple(dims), dtype)

    def _convert(self, index: int, node: Any) -> None:
        label = f"node {node.name!r}" if node.name else f"node #{index}"
        where = f"{self.where}: {label} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"{where}: expected ops of the default ONNX domain. "
                                  f"Received: domain {node.domain!r}")
        spec = CONVERTERS.get(node.op_type)
        if spec is None:
            raise OnnxImportError(f"{where}: kiln does not import {node.op_type}. It imports: "
                                  f"{', '.join(sorted(CONVERTERS))}")
        attrs = dict(spec.attrs)
        for attr in node.attribute:
            if attr.name not in spec.attrs:
                raise OnnxImportError(f"{where}: kiln does not import the attribute "
                                      f"{attr.name!r} of {node.op_type}")
            if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise OnnxImportError(f"{where}: kiln does not import subgraphs")
            attrs[attr.name] = _attr_value(attr)
        wanted = list(node.output)
        if any(name for name in wanted[spec.outputs:]):
            raise OnnxImportError(f"{where}: kiln imports only the first {spec.outputs} "
                                  f"output(s) of {node.op_type}. Received: outputs "
                                  f"{[n for n in wanted if n]}")
        ins: list[Tensor | None] = []
        for name in node.input:
            if not name:
                ins.append(None)
            elif name not in self.env:
                raise OnnxImportError(f"{where}: the input {name!r} is not produced by an "
                                      f"earlier node, an initializer or a graph input")
            else:
                ins.append(self.env[name])
        scope = safe_name(node.name or node.output[0], f"{node.op_type.lower()}{index}")
        try:
            with self.b.scope(scope):
                outs = list(spec.fn(self, node, ins, attrs))
        except KilnError as err:
            raise OnnxImportError(f"{where}: {err}") from None
        for name, out in zip(wanted, outs, strict=False):
            if name and out is not None:
                self.env[name] = out


# -- protobuf helpers ---------------------------------------------------------------------
def optional(ins: Sequence[Tensor | None], index: int) -> Tensor | None:
    """A node's input `index`, None where it is omitted (left out or given as "")."""
    return ins[index] if index < len(ins) else None


def tensor_array(tensor: Any, what: str) -> np.ndarray:
    """A TensorProto (an initializer, a Constant's value) as an array of a kiln dtype."""
    from onnx import numpy_helper

    dtype_of(tensor.data_type, what)
    return np.array(numpy_helper.to_array(tensor))


def _attr_value(attr: Any) -> Any:
    from onnx import helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if attr.type == AttributeProto.TENSOR:
        return value
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def _opset(model: Any, where: str) -> int:
    versions = {op.domain: op.version for op in model.opset_import}
    version = versions.get("", versions.get("ai.onnx"))
    if version is None:
        raise OnnxImportError(f"{where}: expected the model to import the default ONNX domain. "
                              f"Received: domains {sorted(versions)}")
    if version < MIN_OPSET:
        raise OnnxImportError(f"{where}: expected opset {MIN_OPSET} or later. Received: opset "
                              f"{version}; upgrade it with onnx.version_converter")
    return int(version)


# -- entry ---------------------------------------------------------------------------------
@dataclass
class ImportedGraph:
    """An imported ONNX model: its predict graph, the state that graph reads, and where it
    came from (`source`: the file; `producer`: the tool that wrote it; `opset`)."""

    graph: Graph
    state: dict[str, np.ndarray]
    source: str
    producer: str
    opset: int


def import_graph(model: str | os.PathLike | Any) -> ImportedGraph:
    """Import an .onnx file (or an onnx.ModelProto) as a kiln predict graph and its state."""
    import onnx

    from kiln.frontends.onnx import convert, recurrent, resize  # noqa: F401  (registering)

    if isinstance(model, onnx.ModelProto):
        where, proto = "<ModelProto>", model
    else:
        where = os.fspath(model)
        path = Path(where)
        if not path.is_file():
            raise OnnxImportError(f"{where}: no such file")
        try:
            proto = onnx.load(where, load_external_data=False)
        except Exception as err:  # protobuf raises its own DecodeError and more
            raise OnnxImportError(f"{where}: not an ONNX model ({type(err).__name__}: "
                                  f"{err})") from None
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxImportError(
                f"{where}: the initializer {tensor.name!r} is stored in an external file; "
                f"expected the weights inside the model (load it with onnx.load and save it "
                f"again with onnx.save(model, path, save_as_external_data=False))")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OnnxImportError(f"{where}: not a valid ONNX model: {first}") from None
    if proto.functions:
        raise OnnxImportError(f"{where}: kiln does not import model-local functions. "
                              f"Received: {', '.join(f.name for f in proto.functions)}")
    importer = Importer(proto, where)
    graph = importer.run()
    used = {v.name for v in graph.state}
    state = {name: array for name, array in importer.state.items() if name in used}
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    return ImportedGraph(graph, state, where, producer, importer.opset)
