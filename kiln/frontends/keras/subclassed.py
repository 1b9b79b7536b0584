"""Subclassed models, as Keras's `class MyModel(keras.Model)` with layers made in `__init__`
and a `call(inputs)` that uses them.

kiln compiles graphs, so a subclassed model becomes a functional one the first time it sees
its inputs (model.build(shape), fit/evaluate/predict on data, or a call on arrays or
symbolic tensors): an Input per input array (a dict's keys name them), one call of the
model's `call` on them, traced as a custom layer's call is, and the outputs the call
returns (one tensor, a tuple or list, or a dict). From then on it trains, saves and
compiles like any model. Its layers are those it keeps in attributes, in that order, and
so are its weights (Keras 3's order for a subclassed model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.keras.layer import Layer
from kiln.ir import KilnTypeError, KilnValueError
from kiln.ir.types import canonical_dtype


class ModelCall(Layer):
    """The one call a subclassed model's graph holds: the model's `call` on the inputs in
    the structure the model was built with. Its sublayers are the model's."""

    multi_input = True
    returns_list = True

    def __init__(self, model: Any, keys: list[str] | None, single: bool):
        super().__init__(name=model.name)
        object.__setattr__(self, "_model", model)  # not a sublayer: the model owns this call
        self.keys, self.single = keys, single
        self.output_keys: list[str] | None = None
        self.single_output = True

    def children(self) -> list[tuple[str, Layer]]:
        return self._model.children()

    def call(self, inputs: list[Any], training: Any = None) -> list[Any]:
        model = self._model
        if self.keys is not None:
            args: Any = dict(zip(self.keys, inputs))
        else:
            args = inputs[0] if self.single else list(inputs)
        from kiln.frontends.keras import ops

        kwargs = {"training": training} if "training" in ops.parameters(model.call) else {}
        out = model.call(args, **kwargs)
        if isinstance(out, dict):
            self.output_keys, self.single_output = [str(k) for k in out], False
            return list(out.values())
        if isinstance(out, (list, tuple)):
            self.output_keys, self.single_output = None, False
            return list(out)
        self.output_keys, self.single_output = None, True
        return [out]


def input_specs(x: Any, where: str) -> tuple[list[tuple[str, tuple, str]], list[str] | None,
                                                bool]:
    """(name, batch shape, dtype) of each input `x` holds (arrays or symbolic tensors: one,
    a list or tuple, or a dict), the dict's keys, and whether it was one."""
    if isinstance(x, dict):
        keys: list[str] | None = [str(k) for k in x]
        items, single = list(x.values()), False
    elif isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x):
        keys, items, single = None, list(x), False
    else:
        keys, items, single = None, [x], True
    specs = []
    for i, item in enumerate(items):
        name = keys[i] if keys is not None else ("input" if single else f"input_{i}")
        specs.append((name, *_spec(item, f"{where} {name!r}")))
    return specs, keys, single


def _spec(item: Any, where: str) -> tuple[tuple, str]:
    if hasattr(item, "shape") and hasattr(item, "dtype") and not isinstance(item, np.ndarray):
        return (None, *tuple(item.shape)[1:]), canonical_dtype(str(item.dtype))  # symbolic
    array = np.asarray(item)
    if array.dtype == object or array.ndim == 0:
        raise KilnValueError(f"{where}: expected an array with a batch axis. "
                             f"Received: {type(item).__name__}")
    if array.dtype.kind == "f":
        dtype = "float32"  # Keras's floatx
    elif array.dtype.kind in "iub":
        dtype = "bool" if array.dtype.kind == "b" else canonical_dtype(
            "int64" if array.dtype.itemsize == 8 else "int32")
    else:
        raise KilnTypeError(f"{where}: expected numbers. Received: dtype {array.dtype}")
    return (None, *array.shape[1:]), dtype


def shape_specs(input_shape: Any) -> tuple[list[tuple[str, tuple, str]], list[str] | None,
                                           bool]:
    """The specs of model.build(input_shape): one batch shape, a list of them, or a dict
    (float32 inputs, as Keras builds)."""
    def is_shape(s: Any) -> bool:
        return isinstance(s, (list, tuple)) and all(d is None or isinstance(d, int) for d in s)

    if isinstance(input_shape, dict):
        return ([(str(k), tuple(s), "float32") for k, s in input_shape.items()],
                [str(k) for k in input_shape], False)
    if is_shape(input_shape):
        return [("input", tuple(input_shape), "float32")], None, True
    if isinstance(input_shape, (list, tuple)) and all(is_shape(s) for s in input_shape):
        return ([(f"input_{i}", tuple(s), "float32") for i, s in enumerate(input_shape)],
                None, False)
    raise KilnValueError(f"build expected a batch shape (None, ...), a list or a dict of "
                         f"them. Received: input_shape={input_shape!r}")


def build(model: Any, specs: list[tuple[str, tuple, str]], keys: list[str] | None,
          single: bool) -> None:
    """Make the model's graph: an Input per spec, the model's call on them, its outputs."""
    from kiln.frontends.keras.layers.core import Input

    inputs = [Input(batch_shape=shape, dtype=dtype, name=name) for name, shape, dtype in specs]
    node = ModelCall(model, keys, single)
    outs = node(inputs)
    if node.output_keys is not None:
        outputs: Any = dict(zip(node.output_keys, outs))
    else:
        outputs = outs[0] if node.single_output else list(outs)
    arg: Any = dict(zip(keys, inputs)) if keys is not None else (
        inputs[0] if single else inputs)
    model._set_graph(arg, outputs)


def build_config(model: Any) -> dict[str, Any]:
    """What loading needs besides the constructor's config: the model's name (a get_config
    that gives only the constructor's arguments leaves it out), its inputs, and how its call
    takes them (the graph's one ModelCall holds that)."""
    node = model._records[0].layer
    return {"name": model.name,
            "inputs": [{"name": n, "shape": list(t.shape), "dtype": t.dtype}
                       for n, t in zip(model.input_names, model._inputs)],
            "keys": node.keys, "single": node.single}


def build_from_config(model: Any, config: Any) -> None:
    """Name a model made from its config as it was saved (and so its sublayers), and build
    it for the inputs it was built for."""
    if isinstance(config, dict) and isinstance(config.get("name"), str):
        model.rename(config["name"])
    try:
        specs = [(str(s["name"]), tuple(None if d is None else int(d) for d in s["shape"]),
                  canonical_dtype(s["dtype"])) for s in config["inputs"]]
        keys = None if config["keys"] is None else [str(k) for k in config["keys"]]
        single = bool(config["single"])
    except (KeyError, TypeError, ValueError) as err:
        raise KilnValueError(f"a subclassed model's build_config is not valid "
                             f"({type(err).__name__}: {err}). Received: {config!r}"[:300]
                             ) from None
    build(model, specs, keys, single)
