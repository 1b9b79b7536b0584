"""GraphLayer: a kiln IR graph used as a Keras layer.

The graph's inputs are the layer's inputs (in order), its outputs the layer's outputs, its
state the layer's weights (float ones trainable). Calling the layer inlines the graph into
the model's, so it is compiled, differentiated and fused with the rest: an imported ONNX
network (`OnnxModel.as_layer()`) becomes a backbone to fine-tune or to put a new head on,
as Keras's TFSMLayer wraps a SavedModel. Its config holds the graph's IR text, which loading
parses (data, never code); its weights travel as every layer's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kiln.frontends.keras.layer import Layer, to_keras_shape
from kiln.ir import KilnValueError
from kiln.ir.graph import Graph


class GraphLayer(Layer):
    """A layer computing `graph` (a kiln Graph, or its IR text) with `weights` (state name ->
    initial array; zeros where not given, as when a saved model is rebuilt before its
    weights are loaded).

    Input shapes: the graph's inputs', with the batch (the symbol N on the first axis) as
    None. A graph whose inputs have other symbolic dimensions is refused.
    """

    def __init__(self, graph: Graph | str, weights: Mapping[str, np.ndarray] | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(graph, str):
            from kiln.ir import parse

            graph = parse(graph)
        if not isinstance(graph, Graph):
            raise KilnValueError(f"GraphLayer: expected a kiln Graph or its IR text. "
                                 f"Received: {type(graph).__name__}")
        if graph.updates:
            raise KilnValueError(f"GraphLayer: expected a graph without state updates. "
                                 f"Received: @{graph.name} updating "
                                 f"{', '.join(name for name, _ in graph.updates)}")
        for v in graph.inputs:
            extra = [d for k, d in enumerate(v.type.shape)
                     if isinstance(d, str) and not (k == 0 and d == "N")]
            if extra:
                raise KilnValueError(f"GraphLayer: expected inputs whose only symbolic "
                                     f"dimension is the batch N on axis 0. Received: "
                                     f"%{v.name}: {v.type}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - {v.name for v in graph.state})
        if unknown:
            raise KilnValueError(f"GraphLayer: weights given for names the graph has no state "
                                 f"of: {unknown}")
        self.graph = graph
        self._initial = weights
        self.multi_input = len(graph.inputs) > 1
        self.returns_list = len(graph.outputs) > 1

    def check_input_shapes(self, shapes: list) -> None:
        shapes = shapes if self.multi_input else [shapes[0]]
        if len(shapes) != len(self.graph.inputs):
            raise KilnValueError(f"layer {self.name!r} expects {len(self.graph.inputs)} "
                                 f"inputs. Received: {len(shapes)}")
        for v, shape in zip(self.graph.inputs, shapes, strict=True):
            want = to_keras_shape(v.type)
            if tuple(shape) != want:
                raise KilnValueError(f"Input {v.name!r} of layer {self.name!r} is "
                                     f"incompatible with the layer: expected shape {want}, "
                                     f"found shape={tuple(shape)}")

    def build(self, input_shape: Any) -> None:
        self._graph_weights = []
        for v in self.graph.state:
            given = self._initial.get(v.name)
            if given is not None and tuple(np.shape(given)) != tuple(v.type.shape):
                raise KilnValueError(f"layer {self.name!r}: weight {v.name!r} expected shape "
                                     f"{tuple(v.type.shape)}. Received: {np.shape(given)}")

            def initial(shape: Any, dtype: Any = None, given: Any = given) -> np.ndarray:
                return np.zeros(shape, dtype) if given is None else np.array(given)

            self._graph_weights.append(self.add_weight(
                v.name, tuple(v.type.shape), initial, dtype=v.type.dtype,
                trainable=v.type.dtype in ("float32", "float64")))
        self._initial = {}  # the variables hold them now

    def lower(self, b, inputs, ctx, **kwargs):  # noqa: ANN001, ANN201
        values = list(inputs) if self.multi_input else [inputs]
        state = {v.name: ctx.value(w) for v, w in zip(self.graph.state, self._graph_weights,
                                                      strict=True)}
        outs, _ = b.call(self.graph, values, state)
        results = [outs[name] for name, _ in self.graph.outputs]
        return results if self.returns_list else results[0]

    def get_config(self) -> dict[str, Any]:
        from kiln.ir import print_graph

        return {**super().get_config(), "graph": print_graph(self.graph)}
