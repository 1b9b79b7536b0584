"""An imported ONNX model as a user holds it: `predict` and `save` as on a Keras model, over
the predict graph the importer built. It serves inference only: an ONNX file carries no loss
or optimizer, so there is no fit() and an artifact of it has no train_step."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kiln.compiler.artifact import SUFFIX, Artifact
from kiln.compiler.package import save_compiled
from kiln.compiler.pass_manager import CompileOptions
from kiln.frontends.onnx.importer import ImportedGraph, import_graph
from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.graph import Graph
from kiln.runtimes import check_backend, create_executable, get_backend

CLASS_NAME = "OnnxModel"


class OnnxModel:
    """An inference model imported from ONNX (or loaded from an artifact of one).

    Attributes:
        graph: the predict graph in kiln IR; state: its parameters by name.
        input_names, output_names: the graph's, in ONNX's order.
        source, producer, opset: where it came from.
        compile_options: the pass level used by predict and save (default -O2).
    """

    def __init__(self, graph: Graph, state: Mapping[str, np.ndarray], *, source: str,
                 producer: str = "", opset: int = 0, backend: str | None = None):
        self.graph = graph
        self.state = {name: np.array(a) for name, a in state.items()}
        self.source, self.producer, self.opset = source, producer, opset
        self.compile_options = CompileOptions()
        self._backend = check_backend(backend) if backend else None
        self._executables: dict[tuple[str, int], Any] = {}

    @classmethod
    def from_import(cls, imported: ImportedGraph, backend: str | None = None) -> OnnxModel:
        return cls(imported.graph, imported.state, source=imported.source,
                   producer=imported.producer, opset=imported.opset, backend=backend)

    @classmethod
    def from_artifact(cls, artifact: Artifact, backend: str | None = None) -> OnnxModel:
        config = artifact.model_config.get("config", {})
        entry = artifact.entries["predict"]
        model = cls(artifact.graph("predict", "input"),
                    {name: artifact.state[name] for name in entry.state},
                    source=str(config.get("source", "")), producer=str(config.get("producer", "")),
                    opset=int(config.get("opset", 0)), backend=backend or artifact.backend)
        model.compile_options = CompileOptions(int(artifact.compile_options.get("level", 2)))
        return model

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.graph.outputs]

    def config(self) -> dict[str, Any]:
        """What an artifact's model.json holds: where the model came from, no code."""
        return {"class_name": CLASS_NAME,
                "config": {"source": Path(self.source).name, "producer": self.producer,
                           "opset": self.opset}}

    # -- inference ------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int | None = 32, verbose: Any = 0,
                backend: str | None = None) -> Any:
        """The outputs for `x`: an array (one input), a list in input order or a dict by
        input name; in batches of `batch_size` along the first axis when every input's first
        axis is the symbolic batch, else in one call (a time-major model, say). One output
        comes back as an array, more as a list in output order."""
        feed = self._feed(x)
        if batch_size is None:
            batch_size = 32
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise KilnValueError(f"predict: expected batch_size a positive int. Received: "
                                 f"{batch_size!r}")
        executable = self.executable(backend)
        if not all(v.type.rank and isinstance(v.type.shape[0], str) for v in self.graph.inputs):
            out = executable.run("predict", feed)  # no batch axis to split along: one call
            results = [np.array(out[name], copy=True) for name in self.output_names]
            return results[0] if len(results) == 1 else results
        sizes = {len(a) for a in feed.values()}
        if len(sizes) != 1:
            raise KilnValueError("predict: expected inputs with one sample count. Received: "
                                 + ", ".join(f"{k} {len(v)}" for k, v in feed.items()))
        (size,) = sizes
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for start in range(0, size, batch_size):
            out = executable.run("predict", {k: v[start:start + batch_size]
                                             for k, v in feed.items()})
            for name in parts:
                parts[name].append(np.array(out[name], copy=True))
        results = [np.concatenate(parts[name]) for name in self.output_names]
        return results[0] if len(results) == 1 else results

    def _feed(self, x: Any) -> dict[str, np.ndarray]:
        from kiln.frontends.keras.data import structure

        feed = {}
        matched = structure(x, self.input_names, "x")  # NaN and inf allowed (IsNaN exists)
        for value, (_, raw) in zip(self.graph.inputs, matched, strict=True):
            array = np.asarray(raw)
            want = value.type
            if array.ndim != want.rank:
                raise KilnTypeError(f"predict: expected input {value.name!r} of rank "
                                    f"{want.rank} ({want}). Received: shape {array.shape}")
            feed[value.name] = np.ascontiguousarray(array, dtype=np.dtype(
                "bool" if want.dtype == "bool" else want.dtype))
        return feed

    def executable(self, backend: str | None = None) -> Any:
        """The compiled executable predict runs on `backend` (default: the model's), made
        once per backend and pass level; `.run("predict", {input name: array})`."""
        name = check_backend(backend) if backend else (self._backend or get_backend())
        key = (name, self.compile_options.level)
        if key not in self._executables:
            self._executables[key] = create_executable(
                name, {"predict": self.graph}, {k: np.array(v) for k, v in self.state.items()},
                self.compile_options)
        return self._executables[key]

    # -- artifacts ------------------------------------------------------------------------
    def save(self, filepath: str | os.PathLike, backend: str | None = None) -> Artifact:
        """Write the model as a .kiln artifact (atomically) compiled for `backend` (default:
        the model's, else kiln.get_backend())."""
        path = os.fspath(filepath)
        if not path.endswith(SUFFIX):
            raise KilnValueError(f"The filepath provided must end in `{SUFFIX}` (kiln's "
                                 f"artifact format). Received: filepath={path}")
        backend = check_backend(backend) if backend else (self._backend or get_backend())
        return save_compiled(path, backend=backend, model_config=self.config(),
                             graphs={"predict": self.graph}, state=self.state,
                             options=self.compile_options,
                             state_roles={name: "non_trainable" for name in self.state})

    def as_layer(self, name: str | None = None, trainable: bool = True) -> Any:
        """The model as a Keras layer (kiln.layers.GraphLayer) holding copies of its
        weights, to call on layers.Input tensors of its input shapes: a backbone to
        fine-tune or to give a new head. The batch must be its inputs' only symbolic
        dimension."""
        from kiln.frontends.keras.layers.graph import GraphLayer

        return GraphLayer(self.graph, self.state, name=name, trainable=trainable)

    def count_params(self) -> int:
        return int(sum(a.size for a in self.state.values()))

    def __repr__(self) -> str:
        return (f"<OnnxModel {Path(self.source).name or '<ModelProto>'}: inputs "
                f"{self.input_names}, outputs {self.output_names}, "
                f"{self.count_params():,} parameters>")


def import_onnx(model: str | os.PathLike | Any, backend: str | None = None) -> OnnxModel:
    """Import an .onnx file (or an onnx.ModelProto) as an OnnxModel: the ONNX graph as kiln
    IR, its float initializers as parameters. Raises OnnxImportError naming the node and why
    when the model uses what kiln does not import."""
    return OnnxModel.from_import(import_graph(model), backend)
