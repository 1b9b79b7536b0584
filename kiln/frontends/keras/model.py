"""Functional models: a DAG of layer calls from Input tensors to output tensors, lowered to one
IR forward graph (per mode: training or inference) whose state is every variable.

A model is a layer too: called on new tensors it records the call like any layer, and when
lowered it inlines its own calls, so shared layers and nested models share their weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiln.frontends.keras import subclassed
from kiln.frontends.keras.layer import (
    _DEFAULT_FROM_CONFIGS,
    CallRecord,
    KerasTensor,
    Layer,
    LoweringContext,
    Variable,
    is_symbolic,
    penalty_of,
    set_variables,
    to_ir_type,
)
from kiln.frontends.keras.trainer import Trainer
from kiln.ir import Graph, GraphBuilder, KilnTypeError, KilnValueError, Value


@dataclass
class ForwardGraph:
    """A model lowered for one mode, and how its state names map to the model's variables."""

    graph: Graph
    variables: dict[str, Variable]  # IR state name -> variable
    uses_rng: bool
    penalty: str | None = None  # the output holding the regularizers' total, if any
    #: With masks=True: each masked output's name -> the output holding its Keras mask.
    masks: dict[str, str] = field(default_factory=dict)


def flatten_structure(value: Any, what: str) -> tuple[list[Any], list[str] | None, bool]:
    """(items, names for a dict, whether it was a single item)."""
    if isinstance(value, dict):
        return list(value.values()), list(value.keys()), False
    if isinstance(value, (list, tuple)):
        return list(value), None, False
    if value is None:
        raise KilnValueError(f"Model: expected {what}. Received: {what}=None")
    return [value], None, True


class Model(Trainer, Layer):
    """`Model(inputs=, outputs=)`: inputs and outputs as one tensor, a list or a dict."""

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 **kwargs: Any):
        # A subclass giving `call` is a subclassed model (kiln.frontends.keras.subclassed):
        # its layers are those it keeps in attributes, named after them.
        self._subclassed = self._keras_call() and inputs is None and outputs is None
        self.saves_sublayers = not self._subclassed
        Layer.__init__(self, name=name, **kwargs)
        Trainer.__init__(self)
        self._records: list[CallRecord] = []
        self._inputs: list[KerasTensor] = []
        self._outputs: list[KerasTensor] = []
        self._output_keys: list[str] | None = None
        self._input_keys: list[str] | None = None
        self._single_output = True
        if inputs is not None or outputs is not None:
            self._set_graph(inputs, outputs)

    # -- structure -----------------------------------------------------------------------
    def _set_graph(self, inputs: Any, outputs: Any) -> None:
        ins, self._input_keys, _ = flatten_structure(inputs, "inputs")
        outs, self._output_keys, self._single_output = flatten_structure(outputs, "outputs")
        for t in (*ins, *outs):
            if not isinstance(t, KerasTensor):
                raise KilnTypeError(f"Model {self.name!r}: expected symbolic tensors as inputs "
                                    f"and outputs. Received: {type(t).__name__}")
        for t in ins:
            if t.history is None or type(t.history[0]).__name__ != "InputLayer":
                raise KilnValueError(f"Model {self.name!r}: inputs must come from layers.Input. "
                                     f"Received: {t!r}")
        self._inputs, self._outputs = ins, outs
        self._records = _calls_between(ins, outs, self.name)
        self.built = True

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        return [t.history[0].name for t in self._inputs]

    @property
    def output_names(self) -> list[str]:
        if self._output_keys is not None:
            return list(self._output_keys)
        if self._subclassed:  # its call's outputs, unnamed: by position
            return (["output"] if len(self._outputs) == 1 else
                    [f"output_{i}" for i in range(len(self._outputs))])
        names, seen = [], set()
        for t in self._outputs:
            name = t.history[0].name if t.history else t.name
            while name in seen:
                name += "_1"
            seen.add(name)
            names.append(name)
        return names

    @property
    def layers(self) -> list[Layer]:
        """A subclassed model's: those it keeps in attributes, in order. Else the layers in
        Keras 3's order (so get_weights and set_weights list the weights as
        a Keras model of the same graph does): by decreasing depth (the most calls between a
        layer and an output first, the inputs among them), ties in the order a depth-first
        walk from the outputs first reaches them."""
        if self._subclassed:
            return self.sublayers()
        return _keras_order(self._inputs, self._outputs)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise KilnValueError(f"get_layer: index {index} out of range for "
                                     f"{len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise KilnValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in layers]}")

    #: A model's config holds its layers' configs, names included.
    saves_sublayers = True

    def children(self) -> list[tuple[str, Layer]]:
        """The model's layers (its sublayers), by position; a subclassed model's, by the
        attributes holding them."""
        if self._subclassed:
            return Layer.children(self)
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    # -- a subclassed model's graph (kiln.frontends.keras.subclassed) ---------------------
    def build(self, input_shape: Any) -> None:
        """A subclassed model: make its graph for inputs of `input_shape` (a batch shape, a
        list or a dict of them; float32)."""
        if self._subclassed and not self._inputs and not self.__dict__.get("_in_build"):
            self._build_graph(*subclassed.shape_specs(input_shape))

    def _build_graph(self, specs: list, keys: list[str] | None, single: bool) -> None:
        self._in_build = True
        try:
            if type(self).build is not Model.build:  # the subclass's own build first
                shapes = [s for _, s, _ in specs]
                self.build(dict(zip(keys, shapes)) if keys is not None else (
                    shapes[0] if single else shapes))
            subclassed.build(self, specs, keys, single)
        finally:
            self._in_build = False

    def _build_on(self, x: Any) -> None:
        """Build an unbuilt subclassed model for the inputs x (arrays or symbolic)."""
        if self._subclassed and not self._inputs:
            self._build_graph(*subclassed.input_specs(x, f"model {self.name!r}: input"))

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        set_variables(self.weights, weights, f"model {self.name!r}")

    # -- lowering ------------------------------------------------------------------------
    #: A model passes its inputs' masks on through its own layers (lower_call).
    supports_masking = True

    def lower(self, b: GraphBuilder, inputs: Any, ctx: LoweringContext, **kwargs: Any) -> Any:
        values = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        results, _ = self.lower_call(b, list(values), [None] * len(values), ctx, kwargs)
        return results[0] if len(results) == 1 and self._single_output else results

    def lower_call(self, b: GraphBuilder, inputs: list[Value], masks: list[Value | None],
                   ctx: LoweringContext, kwargs: dict[str, Any],
                   ) -> tuple[list[Value], list[Value | None]]:
        """Inline every call between the inputs and the outputs; each input's mask (None for
        none) flows through the layers as Keras passes masks on. Returns the outputs and
        their masks. A `training=` given to the model's call holds for every layer in it
        (the transfer-learning guide's `base_model(inputs, training=False)` keeps its batch
        normalization at inference while the outer model trains; Keras 3's fit overrides
        such a recorded flag, kiln keeps it, as for a single layer)."""
        if len(inputs) != len(self._inputs):
            raise KilnValueError(f"model {self.name!r} expects {len(self._inputs)} inputs. "
                                 f"Received: {len(inputs)}")
        env = {id(t): v for t, v in zip(self._inputs, inputs)}
        mask_env = {id(t): m for t, m in zip(self._inputs, masks)}
        with ctx.mode(kwargs.get("training")):
            for record in self._records:
                args = [env[id(t)] for t in record.inputs]
                with b.scope(record.layer.name):
                    outs, out_masks = record.layer.lower_call(
                        b, args, [mask_env.get(id(t)) for t in record.inputs], ctx,
                        record.kwargs)
                env.update({id(t): v for t, v in zip(record.outputs, outs)})
                mask_env.update({id(t): m for t, m in zip(record.outputs, out_masks)})
                ctx.add_activity_penalties(record.layer, outs)
        return ([env[id(t)] for t in self._outputs],
                [mask_env.get(id(t)) for t in self._outputs])

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if not _symbolic(inputs):
            return self._eager_call(inputs, **kwargs)
        self._build_on(inputs)
        if isinstance(inputs, dict) and self._input_keys is not None:
            missing = [k for k in self._input_keys if k not in inputs]
            if missing or len(inputs) != len(self._input_keys):
                raise KilnValueError(f"model {self.name!r} expects inputs with the keys "
                                     f"{self._input_keys}. Received keys: {list(inputs)}")
            inputs = [inputs[k] for k in self._input_keys]
        self.multi_input = isinstance(inputs, (list, tuple))
        self.returns_list = not self._single_output
        return Layer.__call__(self, inputs, **kwargs)

    def _eager_call(self, inputs: Any, training: Any = None) -> Any:
        """A model called on arrays (as the book calls a subclassed one before compiling,
        and its chapter 8 its `data_augmentation` on a batch of images): its outputs for
        them as NumPy arrays, in the structure its call returns. Without training=, the
        augmentation layers augment, as in Keras, and the rest run as at inference."""
        if training:
            raise KilnValueError(f"model {self.name!r}: kiln runs a model on arrays in "
                                 f"inference (training=None or False); train it with fit or "
                                 f"train_on_batch")
        self._build_on(inputs)
        if training is None and any(getattr(layer, "augments", False)
                                    for layer in self._all_layers()):
            out = self._augment_on_batch(inputs)
        else:
            out = self.predict_on_batch(inputs)
        return tuple(out) if self._subclassed and isinstance(out, list) else out

    def _all_layers(self) -> list[Layer]:
        """Every layer inside this model, nested models' and sublayers' too, each once."""
        seen: set[int] = set()
        found, todo = [], list(self.layers)
        while todo:
            layer = todo.pop()
            if id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
                todo.extend(layer.layers if isinstance(layer, Model) else layer.sublayers())
        return found

    def state_names(self) -> dict[int, str]:
        """Each variable's IR state name: `layer.weight`, made unique where names collide."""
        names: dict[int, str] = {}
        taken: set[str] = set(self.input_names)
        for v in self.variables:
            name, k = v.ir_name, 1
            while name in taken:
                name = f"{v.ir_name}_{k}"
                k += 1
            taken.add(name)
            names[id(v)] = name
        return names

    def forward_graph(self, training: bool, name: str | None = None,
                      penalties: bool = False, masks: bool = False,
                      augmenting: bool = False) -> ForwardGraph:
        """The model as one IR graph: inputs by input name, every variable as state,
        outputs by output name; in training mode, state updates (batch-norm statistics) and
        the random key's advance. With `penalties`, one more output (ForwardGraph.penalty
        names it, None when the model has no regularizer): the sum of the activity
        regularizers' penalties, in call order, then of the trainable weights' (Keras 3's
        model.losses), which a step adds to its loss. With `masks`, one more output for each
        output that has a Keras mask (ForwardGraph.masks names them), which a step's losses
        and metrics apply as Keras 3 does. With `augmenting` (at inference), the augmentation
        layers augment (see LoweringContext.augmenting)."""
        if not self.built or not self._inputs:
            raise KilnValueError(f"model {self.name!r} has not been built: give the first layer "
                                 "an input_shape, start with layers.Input, call build(), or "
                                 "(a subclassed model) fit, predict or call it on data")
        b = GraphBuilder(name or ("forward" if training else "predict"))
        names = self.state_names()
        inputs = [b.input(n, to_ir_type(t.shape, t.dtype))
                  for n, t in zip(self.input_names, self._inputs)]
        variables = {names[id(v)]: v for v in self.variables}
        state = {id(v): b.state(n, v.type) for n, v in variables.items()}
        ctx = LoweringContext(b, training=training, state_values=state, penalties=penalties,
                              augmenting=augmenting)
        outs, out_masks = self.lower_call(b, inputs, [None] * len(inputs), ctx, {})
        for out_name, value in zip(self.output_names, outs):
            b.output(value, out_name)
        mask_names = {}
        for out_name, mask in zip(self.output_names, out_masks):
            if masks and mask is not None:
                mask_names[out_name] = f"{out_name}._keras_mask"
                b.output(mask, mask_names[out_name])
        penalty = None
        if penalties:
            terms = list(ctx.losses)
            for v in (self.trainable_weights if self.trainable else []):
                if v.regularizer is not None:
                    with b.scope(f"{v.ir_name}.regularizer"):
                        terms.append(penalty_of(v.regularizer, b, state[id(v)],
                                                f"regularizer of {v.path}"))
            if terms:
                penalty = "penalty"
                while penalty in self.output_names:
                    penalty += "_1"
                total = terms[0]
                for term in terms[1:]:
                    total = b.add(total, term, name=f"{penalty}.add")
                b.output(total, penalty)
        ctx.finish(names)
        return ForwardGraph(b.build(), variables, ctx.rng_key is not None, penalty, mask_names)

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.weights))

    # -- saving (kiln.frontends.keras.saving does the work) ------------------------------
    def save(self, filepath: str | os.PathLike, *, backend: str | None = None) -> None:
        """Write the model as a `.kiln` artifact: config, weights, optimizer state, and the
        IR of each entry point as written and as optimized for `backend` (default: the
        compile backend) with `self.compile_options`. Load it with kiln.models.load_model."""
        from kiln.frontends.keras.saving import save_model

        save_model(self, filepath, backend=backend)

    def export(self, filepath: str | os.PathLike, format: str = "onnx") -> None:
        """Write the inference model for other runtimes; format "onnx": a standalone ONNX
        model (weights inside) that onnxruntime runs without kiln."""
        from kiln.frontends.keras.saving import export_model

        export_model(self, filepath, format)

    def get_config(self) -> dict[str, Any]:
        """A subclassed model's: Layer's (name, trainable, dtype); give get_config its
        constructor's arguments, as Keras asks of a subclassed model to save it."""
        if self._subclassed:
            return Layer.get_config(self)
        from kiln.frontends.keras.saving import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None,
                    ) -> Model:
        if cls.call is not Layer.call:  # subclassed: its constructor takes the config
            return cls(**config)
        from kiln.frontends.keras.saving import functional_from_config

        return functional_from_config(config, custom_objects, cls)


_DEFAULT_FROM_CONFIGS.add(Model.from_config.__func__)  # type: ignore[attr-defined]


def _symbolic(inputs: Any) -> bool:
    items = (list(inputs.values()) if isinstance(inputs, dict) else
             list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
    return any(is_symbolic(t) for t in items)


def _calls_between(inputs: list[KerasTensor], outputs: list[KerasTensor],
                   model: str) -> list[CallRecord]:
    """The layer calls from `inputs` to `outputs` in topological order; an output that does
    not depend on the given inputs alone is an error naming the missing input."""
    input_ids = {id(t) for t in inputs}
    order: list[CallRecord] = []
    state: dict[int, str] = {}

    def visit(t: KerasTensor) -> None:
        if id(t) in input_ids:
            return
        if t.history is None:
            raise KilnValueError(f"Model {model!r}: tensor {t.name!r} was not made by a layer")
        layer, index, _ = t.history
        if type(layer).__name__ == "InputLayer":
            raise KilnValueError(f"Model {model!r}: the outputs depend on input {layer.name!r}, "
                                 "which is not among the model's inputs")
        record = layer._calls[index]
        if state.get(id(record)) == "done":
            return
        if state.get(id(record)) == "active":
            raise KilnValueError(f"Model {model!r}: the layer graph has a cycle at {layer.name!r}")
        state[id(record)] = "active"
        for parent in record.inputs:
            visit(parent)
        state[id(record)] = "done"
        order.append(record)

    for t in outputs:
        visit(t)
    return order


def _keras_order(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> list[Layer]:
    """Keras's order of a functional graph's layers (see Model.layers)."""
    input_ids = {id(t) for t in inputs}
    index: dict[int, int] = {}  # layer -> when the walk first reached it
    layers: dict[int, Layer] = {}
    finished: list[tuple[Any, list[Any]]] = []  # (node, its parent nodes), inputs first
    done: set[int] = set()

    def node_of(t: KerasTensor) -> tuple[Any, Layer, list[KerasTensor]]:
        layer, call, _ = t.history
        if id(t) in input_ids or type(layer).__name__ == "InputLayer":
            return ("input", id(layer)), layer, []
        record = layer._calls[call]
        return id(record), layer, record.inputs

    def walk(t: KerasTensor) -> Any:
        key, layer, parents = node_of(t)
        if key in done:
            return key
        index.setdefault(id(layer), len(index))
        layers[id(layer)] = layer
        parent_keys = [walk(p) for p in parents]
        done.add(key)
        finished.append(((key, id(layer)), parent_keys))
        return key

    for t in outputs:
        walk(t)
    node_depth: dict[Any, int] = {}
    layer_depth: dict[int, int] = {}
    for (key, layer), parents in reversed(finished):
        depth = max(node_depth.setdefault(key, 0), layer_depth.get(layer, 0))
        layer_depth[layer] = node_depth[key] = depth
        for parent in parents:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:  # inputs the outputs do not use: depth 0, first among them
        layer = t.history[0]
        if id(layer) not in layer_depth:
            layers[id(layer)], layer_depth[id(layer)], index[id(layer)] = layer, 0, -1
    order = sorted(layers, key=lambda k: (-layer_depth[k], index[k]))
    return [layers[k] for k in order]
