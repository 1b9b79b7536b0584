"""Saving and loading whole models: the model config (layers, their calls, compile arguments)
as JSON, `.kiln` artifacts (model.save / kiln.models.load_model), and ONNX export.

A config is Keras's shape: {"class_name": ..., "config": ...} per layer, a functional model's
calls as references [layer name, call index, output index]. Loading builds the layers again
from kiln's own classes (or `custom_objects`), never from code in the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from kiln.compiler.artifact import SUFFIX, Artifact, ArtifactError, read_artifact
from kiln.compiler.package import save_compiled
from kiln.compiler.pass_manager import CompileOptions
from kiln.frontends.keras import initializers, subclassed
from kiln.frontends.keras import layers as layers_mod
from kiln.frontends.keras import losses as losses_mod
from kiln.frontends.keras import metrics as metrics_mod
from kiln.frontends.keras import optimizers as optimizers_mod
from kiln.frontends.keras.data import Dataset
from kiln.frontends.keras.layer import KerasTensor, Layer, construct
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.frontends.keras.trainer import SEED_STATE
from kiln.ir import Graph, KilnError, KilnTypeError, KilnValueError
from kiln.ir.training import LEARNING_RATE
from kiln.runtimes import check_backend, get_backend

CustomObjects = Mapping[str, Any] | None


# -- plain JSON values -----------------------------------------------------------------------
def _jsonable(value: Any, where: str) -> Any:
    """`value` as JSON (tuples become lists); anything else is refused, naming where it is."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, initializers.Initializer):
        return _jsonable(initializers.serialize(value), where)
    raise KilnValueError(f"{where}: {value!r} cannot be saved: a model config holds names, "
                         f"numbers and kiln's own objects only. Pass a name or a kiln object "
                         f"instead of {type(value).__name__}")


def _object(kind: str, obj: Any, where: str) -> dict[str, Any]:
    """A loss, metric or optimizer instance as {"module", "class_name", "config"}."""
    cls = type(obj).__name__
    if cls in ("LossFunctionWrapper", "MeanMetricWrapper"):
        raise KilnValueError(f"{where}: a {cls} made from a function cannot be saved; use a "
                             f"kiln.{kind} class or name, or subclass one")
    return {"module": kind, "class_name": cls, "config": _jsonable(obj.get_config(), where)}


def _is_object(value: Any, kind: str) -> bool:
    return (isinstance(value, dict) and value.get("module") == kind
            and isinstance(value.get("class_name"), str))


_LOSSES = {cls.__name__: cls for cls in losses_mod._CLASSES.values()}
_METRICS = {cls.__name__: cls for cls in (*metrics_mod._CLASSES.values(),
                                          *metrics_mod.NEEDS_ARGUMENTS, *metrics_mod.OBJECTS_ONLY)}
_OPTIMIZERS = {cls.__name__: cls for cls in optimizers_mod._BY_NAME.values()}


def _rebuild_object(value: dict, registry: dict[str, type], kind: str,
                    custom_objects: CustomObjects) -> Any:
    name = value["class_name"]
    cls = (custom_objects or {}).get(name) or registry.get(name)
    if cls is None:
        raise KilnValueError(f"Unknown {kind} class {name!r} in the saved model; kiln's are "
                             f"{sorted(registry)}. For your own class pass "
                             f"custom_objects={{{name!r}: {name}}} to load_model")
    config = dict(value.get("config") or {})
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)


def _structure(value: Any, one: Any) -> Any:
    """Map `one` over a compile argument: one value, a list (of lists), or a dict."""
    if isinstance(value, dict) and not any(_is_object(value, k)
                                           for k in ("losses", "metrics")):
        return {k: _structure(v, one) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v, one) for v in value]
    return one(value)


# -- layers ----------------------------------------------------------------------------------
def _layer_classes() -> dict[str, type]:
    classes = {name: getattr(layers_mod, name) for name in layers_mod.__all__}
    classes = {n: c for n, c in classes.items() if isinstance(c, type) and issubclass(c, Layer)}
    classes.update({"Functional": Model, "Model": Model, "Sequential": Sequential})
    return classes


def serialize_layer(layer: Layer) -> dict[str, Any]:
    """{"class_name", "config"}: a model as "Functional" or "Sequential", a layer by class."""
    if isinstance(layer, Model) and layer._subclassed:
        if not layer._inputs:
            raise KilnValueError(f"model {layer.name!r} ({type(layer).__name__}) has not been "
                                 f"built: call it, fit it or build() it before saving")
        where = f"model {layer.name!r} ({type(layer).__name__})"
        return {"class_name": type(layer).__name__,
                "config": _jsonable(layer.get_config(), where),
                "build_config": subclassed.build_config(layer)}
    if isinstance(layer, Model):
        kind = "Sequential" if isinstance(layer, Sequential) else "Functional"
        return {"class_name": kind, "config": layer.get_config()}
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    config = _jsonable(layer.get_config(), where)
    for key, value in config.items():
        if key.endswith("activation") and value == "<lambda>":
            raise KilnValueError(f"{where}: a lambda as {key} cannot be saved; use an "
                                 f"activation name or a named function")
    return {"class_name": type(layer).__name__, "config": config}


def deserialize_layer(item: Mapping[str, Any], custom_objects: CustomObjects = None) -> Layer:
    """A new layer (or model) from serialize_layer's dict."""
    if not isinstance(item, Mapping) or not isinstance(item.get("class_name"), str) \
            or not isinstance(item.get("config"), Mapping):
        raise KilnValueError(f"Expected a layer as {{'class_name': ..., 'config': {{...}}}}. "
                             f"Received: {item!r}"[:300])
    name, config = item["class_name"], dict(item["config"])
    custom = dict(custom_objects or {})
    cls = custom.get(name) or _layer_classes().get(name)
    if cls is None:
        raise KilnValueError(f"Unknown layer class {name!r} in the saved model. For your own "
                             f"layer pass custom_objects={{{name!r}: {name}}} to load_model")
    subclassed_model = isinstance(cls, type) and issubclass(cls, Model) and \
        cls.call is not Layer.call
    if subclassed_model and "build_config" not in item:
        raise KilnValueError(f"the saved subclassed model {name!r} lacks its build_config")
    if not subclassed_model and isinstance(cls, type) and (
            issubclass(cls, Model) or getattr(cls, "loads_with_custom_objects", False)):
        return cls.from_config(config, custom_objects=custom_objects)
    for key, value in config.items():  # custom activations are found by their name
        if key.endswith("activation") and isinstance(value, str) and value in custom:
            config[key] = custom[value]
    try:
        if isinstance(cls, type) and issubclass(cls, Layer):
            layer = construct(cls, config)
        else:
            layer = cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    except TypeError as err:
        hint = ("" if getattr(cls, "__module__", "").startswith("kiln.") else
                f". Give {name}.get_config the arguments its __init__ takes")
        raise KilnTypeError(f"Could not rebuild layer {config.get('name')!r} of class {name} "
                            f"from its config: {err}{hint}") from None
    if subclassed_model:
        subclassed.build_from_config(layer, item["build_config"])
    return layer


# -- models ----------------------------------------------------------------------------------
def functional_config(model: Model) -> dict[str, Any]:
    """A functional model: its layers (Input layers first), its layer calls in topological
    order with their inputs as [layer, call, output] references, its inputs and outputs."""
    layers = model.layers
    names: dict[str, Layer] = {}
    for layer in layers:
        if names.setdefault(layer.name, layer) is not layer:
            raise KilnValueError(f"model {model.name!r}: two layers are named {layer.name!r}; "
                                 f"a saved model needs unique layer names")
    refs: dict[int, list[Any]] = {id(t): [t.history[0].name, 0, 0] for t in model.inputs}
    counts: dict[str, int] = {}
    calls = []
    for record in model._records:
        layer = record.layer
        index = counts.get(layer.name, 0)
        counts[layer.name] = index + 1
        call = {"layer": layer.name, "inputs": [refs[id(t)] for t in record.inputs],
                "kwargs": _jsonable(record.kwargs, f"the call of layer {layer.name!r}")}
        call["list"] = bool(layer.multi_input)
        calls.append(call)
        for k, t in enumerate(record.outputs):
            refs[id(t)] = [layer.name, index, k]
    return {"name": model.name, "trainable": model.trainable,
            "layers": [serialize_layer(layer) for layer in layers], "calls": calls,
            "inputs": [refs[id(t)] for t in model.inputs], "input_keys": model._input_keys,
            "outputs": [refs[id(t)] for t in model.outputs], "output_keys": model._output_keys,
            "single_output": model._single_output}


def functional_from_config(config: Mapping[str, Any], custom_objects: CustomObjects = None,
                           cls: type[Model] = Model) -> Model:
    layers = {}
    for item in config["layers"]:
        layer = deserialize_layer(item, custom_objects)
        layers[layer.name] = layer
    tensors: dict[tuple[str, int, int], KerasTensor] = {}
    for layer in layers.values():
        if isinstance(layer, layers_mod.InputLayer):
            tensors[layer.name, 0, 0] = layer.output

    def tensor(ref: Any) -> KerasTensor:
        key = tuple(ref)
        if key not in tensors:
            raise KilnValueError(f"model {config.get('name')!r}: the saved config refers to "
                                 f"an unknown tensor {list(ref)}")
        return tensors[key]

    counts: dict[str, int] = {}
    for call in config["calls"]:
        layer = layers.get(call["layer"])
        if layer is None:
            raise KilnValueError(f"model {config.get('name')!r}: the saved config calls an "
                                 f"unknown layer {call['layer']!r}")
        inputs = [tensor(ref) for ref in call["inputs"]]
        kwargs = dict(call.get("kwargs") or {})
        out = layer.replay(inputs, kwargs, call.get("list"))
        outs = out if isinstance(out, list) else [out]
        index = counts.get(layer.name, 0)
        counts[layer.name] = index + 1
        for k, t in enumerate(outs):
            tensors[layer.name, index, k] = t
    ins = [tensor(ref) for ref in config["inputs"]]
    outs = [tensor(ref) for ref in config["outputs"]]
    inputs: Any = dict(zip(config["input_keys"], ins)) if config.get("input_keys") else ins
    outputs: Any = (dict(zip(config["output_keys"], outs)) if config.get("output_keys")
                    else outs[0] if config.get("single_output") and len(outs) == 1 else outs)
    return cls(inputs=inputs, outputs=outputs, name=config.get("name"),
               trainable=config.get("trainable", True))


def sequential_config(model: Sequential) -> dict[str, Any]:
    """A Sequential model: its Input layer (once built) and its stack of layers."""
    stack = ([model._input_layer] if model._input_layer is not None else []) + model._stack
    return {"name": model.name, "trainable": model.trainable,
            "layers": [serialize_layer(layer) for layer in stack]}


def sequential_from_config(config: Mapping[str, Any], custom_objects: CustomObjects = None,
                           cls: type[Sequential] = Sequential) -> Sequential:
    layers = [deserialize_layer(item, custom_objects) for item in config["layers"]]
    return cls(layers, name=config.get("name"), trainable=config.get("trainable", True))


def compile_config(model: Model) -> dict[str, Any] | None:
    """compile()'s arguments as JSON (None for a model that was not compiled)."""
    if not model.compiled:
        return None
    args = model._compile_args

    def loss(value: Any) -> Any:
        return None if value is None else _object("losses", value, "compile(loss=...)")

    def metric(value: Any) -> Any:
        return value if isinstance(value, str) else _object("metrics", value,
                                                             "compile(metrics=...)")

    return {"optimizer": _object("optimizers", model.optimizer, "compile(optimizer=...)"),
            "loss": _structure(args["loss"], loss),
            "metrics": None if args["metrics"] is None else _structure(args["metrics"], metric),
            "loss_weights": _jsonable(args["loss_weights"], "compile(loss_weights=...)")}


def compile_from_config(model: Model, config: Mapping[str, Any], backend: str | None,
                        custom_objects: CustomObjects = None) -> None:
    def loss(value: Any) -> Any:
        return None if value is None else _rebuild_object(value, _LOSSES, "loss",
                                                          custom_objects)

    def metric(value: Any) -> Any:
        return value if isinstance(value, str) else _rebuild_object(value, _METRICS, "metric",
                                                                    custom_objects)

    optimizer = _rebuild_object(config["optimizer"], _OPTIMIZERS, "optimizer", custom_objects)
    metrics = config.get("metrics")
    model.compile(optimizer=optimizer, loss=_structure(config.get("loss"), loss),
                  metrics=None if metrics is None else _structure(metrics, metric),
                  loss_weights=config.get("loss_weights"), backend=backend)


def model_config(model: Model) -> dict[str, Any]:
    """model.json: the model (serialize_layer's form) and its compile arguments."""
    return {**serialize_layer(model), "compile_config": compile_config(model)}


def model_from_config(config: Mapping[str, Any], custom_objects: CustomObjects = None) -> Model:
    model = deserialize_layer(config, custom_objects)
    if not isinstance(model, Model):
        raise KilnValueError(f"Expected a model config. Received: a {type(model).__name__}")
    return model


# -- entry points ----------------------------------------------------------------------------
def _dummy_dataset(model: Model) -> Dataset:
    """One sample shaped like the data fit would see: inputs as declared, and per output
    with a loss a float32 target of its shape, or int32 labels for a sparse loss."""
    feed = {name: np.zeros((1, *(d or 1 for d in t.shape[1:])), t.dtype)
            for name, t in zip(model.input_names, model.inputs)}
    outputs = model._outputs_spec()
    for out in outputs:
        if out.loss is None:
            continue
        dims = tuple(d or 1 for d in out.shape[1:])
        target = (np.zeros((1, *dims[:-1]), np.int32) if out.loss.sparse
                  else np.zeros((1, *dims), np.float32))
        feed["y" if len(outputs) == 1 else f"y.{out.name}"] = target
    return Dataset(feed, 1)


def _trainable(model: Model) -> bool:
    if not model.compiled:
        return False
    loss = model.loss
    given = list(loss.values()) if isinstance(loss, dict) else \
        loss if isinstance(loss, list) else [loss]
    return any(item is not None for item in given)


def entry_points(model: Model) -> tuple[dict[str, Graph], dict[str, np.ndarray]]:
    """The graphs save() stores and the state they read. Steps fit or evaluate already built
    are reused; missing ones are built here without touching the model's optimizer."""
    built = model.compiled_graphs() if model._graph_structure is model._records else {}
    graphs: dict[str, Graph] = {}
    graphs["predict"] = built.get("predict") or model.forward_graph(
        training=False, name="predict").graph
    initial: dict[str, np.ndarray] = {}
    if _trainable(model):
        data = None
        directions = dict(model.metric_directions), dict(model.metric_finish)
        try:
            for entry in ("train_step", "test_step"):
                if entry not in built:
                    data = data or _dummy_dataset(model)
                    losses, metrics = model._specs(data)
                    graph, entry_initial = model._step_graph(entry, losses, metrics, False)
                    built = {**built, entry: graph}
                    initial.update(entry_initial)
        finally:
            # _specs recomputes them as a side effect
            model.metric_directions, model.metric_finish = directions
        graphs["train_step"], graphs["test_step"] = built["train_step"], built["test_step"]
    arrays = model._state_arrays()
    state: dict[str, np.ndarray] = {}
    for graph in graphs.values():
        for value in graph.state:
            if value.name in arrays:
                state[value.name] = arrays[value.name]
            elif value.name in initial:  # optimizer state a first fit would start from
                array = np.array(initial[value.name], copy=True)
                if value.name == LEARNING_RATE:
                    array[...] = model.optimizer.learning_rate
                state[value.name] = array
            else:
                raise KilnValueError(f"model {model.name!r}: no array for the graph state "
                                     f"{value.name!r}")
    return graphs, state


def build_entry_points(model: Model) -> dict[str, Graph]:
    """The graphs save() would store: predict; train_step and test_step when compiled."""
    return entry_points(model)[0]


# -- save / load / export --------------------------------------------------------------------
def save_model(model: Model, filepath: str | os.PathLike, *,
               backend: str | None = None) -> Artifact:
    """Write `model` as a .kiln artifact (atomically) compiled for `backend` (default: the
    model's compile backend, else kiln.get_backend()) with model.compile_options."""
    path = os.fspath(filepath)
    if not path.endswith(SUFFIX):
        raise KilnValueError(f"The filepath provided must end in `{SUFFIX}` (kiln's artifact "
                             f"format). Received: filepath={path}")
    backend = check_backend(backend) if backend else (model._backend or get_backend())
    config = model_config(model)
    graphs, state = entry_points(model)
    names = model.state_names()
    trainable = {id(v) for v in model.trainable_weights} if model.trainable else set()
    roles = {**{n: "optimizer" for n in state}, SEED_STATE: "seed",
             **{names[id(v)]: "trainable" if id(v) in trainable else "non_trainable"
                for v in model.variables}}
    return save_compiled(path, backend=backend, model_config=config, graphs=graphs,
                         state=state, options=model.compile_options, state_roles=roles)


def export_model(model: Model, filepath: str | os.PathLike, format: str = "onnx") -> None:
    """Write the inference model (predict) in `format`: "onnx", a standalone model with the
    weights inside that a bare onnxruntime.InferenceSession runs."""
    if format != "onnx":
        raise KilnValueError(f"Unrecognized format={format!r}. Expected one of: 'onnx'. "
                             f"(For kiln's own artifact use model.save(path.kiln).)")
    from kiln.compiler.codegen.onnx import export_onnx

    graph = model.forward_graph(training=False, name="predict").graph
    arrays = model._state_arrays()
    export_onnx(graph, {v.name: arrays[v.name] for v in graph.state}, filepath,
                level=model.compile_options.level)


def load_model(filepath: str | os.PathLike, *, backend: str | None = None, compile: bool = True,
               custom_objects: CustomObjects = None) -> Model:
    """The model saved in a .kiln artifact, with its weights, and (if it was compiled and
    `compile`) compiled as it was, with its optimizer state and random key: fit() continues
    exactly where training stopped. `backend` overrides the stored one. An artifact of an
    imported ONNX model loads as a kiln.frontends.onnx.OnnxModel (predict and save only)."""
    artifact = read_artifact(filepath)
    if backend is not None:
        check_backend(backend)
    backend = backend or artifact.backend
    if artifact.model_config.get("class_name") == "OnnxModel":  # imported: inference only
        from kiln.frontends.onnx.model import OnnxModel

        return OnnxModel.from_artifact(artifact, backend)  # type: ignore[return-value]
    try:
        model = model_from_config(artifact.model_config, custom_objects)
    except KilnError as err:  # e.g. an unknown class: the message says what to do
        raise ArtifactError(artifact.path, f"model.json: {err}") from None
    except (KeyError, IndexError, TypeError, AttributeError, RecursionError) as err:
        raise ArtifactError(artifact.path, f"model.json does not describe a model "
                                           f"({type(err).__name__}: {err})") from None
    rebuilt = model.forward_graph(training=False, name="predict").graph
    if rebuilt != artifact.graph("predict", "input"):
        raise ArtifactError(artifact.path, "model.json rebuilds a model whose predict graph "
                                           "differs from the stored IR (saved by an "
                                           "incompatible kiln, or a custom object changed)")
    names = model.state_names()
    for variable in model.variables:
        variable.assign(artifact.state[names[id(variable)]])
    model.compile_options = CompileOptions(level=int(artifact.compile_options.get("level", 2)))
    compiled = artifact.model_config.get("compile_config")
    if compile and compiled:
        compile_from_config(model, compiled, backend, custom_objects)
        own = {*names.values(), SEED_STATE}
        model.optimizer.restore_state({n: a for n, a in artifact.state.items()
                                       if n not in own})
    else:
        model._backend = backend
    if SEED_STATE in artifact.state:
        model._seed = np.array(artifact.state[SEED_STATE], copy=True)
    return model
