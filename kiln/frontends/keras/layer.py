"""The Layer base class, its weights (Variable), and symbolic Keras tensors.

A layer does two things: when called on KerasTensors it records the call (building its
weights on first use) and returns new KerasTensors; when a model is lowered it emits IR for
each recorded call through `lower(b, inputs, ctx)`. Output shapes are not written by hand: a
call is traced through a scratch GraphBuilder and the IR type rules give the shapes, so a
layer's shape logic and its IR can never disagree.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiln.frontends.keras import constraints, regularizers
from kiln.frontends.keras.operators import Operators
from kiln.ir import GraphBuilder, KilnError, KilnTypeError, KilnValueError, TensorType, Value
from kiln.ir.types import canonical_dtype, numpy_dtype
from kiln.runtimes import residency

Shape = tuple  # Keras shapes: None for the batch (or any unknown) dimension

_NAME_COUNTS: dict[str, int] = defaultdict(int)


def unique_name(base: str) -> str:
    """Keras's automatic names: dense, dense_1, dense_2, ..."""
    count = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if count == 0 else f"{base}_{count}"


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"(\d)_d(?=_|$)", r"\1d", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())


def to_ir_type(shape: Shape, dtype: str) -> TensorType:
    """A Keras shape with None for the batch becomes an IR type with the symbol N."""
    dims = []
    for i, d in enumerate(shape):
        if d is None:
            dims.append("N" if i == 0 else f"D{i}")
        else:
            dims.append(d)
    return TensorType(tuple(dims), dtype)


def to_keras_shape(t: TensorType) -> Shape:
    return tuple(None if isinstance(d, str) else d for d in t.shape)


class Variable(Operators):
    """A layer weight: its value lives here as a NumPy array that runtimes update in place.
    A runtime keeping it on a device (numba-cuda) may hold a newer value: reading `value`
    brings that home first (kiln.runtimes.residency), and tells the frontend the host may
    write the array (the next call sends host writes over)."""

    def __init__(self, layer: Layer, name: str, shape: Shape, dtype: str,
                 initializer: Callable[[Shape, str], np.ndarray], trainable: bool,
                 regularizer: Callable | None = None, constraint: Callable | None = None):
        self.layer = layer
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = canonical_dtype(dtype)
        self.trainable = trainable
        self.regularizer = regularizer  # kiln.regularizers: its penalty joins the loss
        self.constraint = constraint  # kiln.constraints: applied after each update
        value = np.asarray(initializer(self.shape, self.dtype), dtype=numpy_dtype(self.dtype))
        # np.array, not np.ascontiguousarray: that one makes a scalar weight shape (1,).
        self._value = np.array(value.reshape(self.shape), order="C")

    @property
    def value(self) -> np.ndarray:
        """The weight's own array, up to date (write into it, or use assign)."""
        residency.touch()
        return residency.fetch(self._value)

    @value.setter
    def value(self, array: np.ndarray) -> None:
        """Replace the weight's array (an executable holding the old one rebinds)."""
        residency.touch()
        self._value = array

    @property
    def storage(self) -> np.ndarray:
        """The weight's array as the host holds it, without fetching a device's newer value
        (for the frontend's own bookkeeping: which arrays an executable holds, their sizes)."""
        return self._value

    @property
    def path(self) -> str:
        """Keras 3's variable path, e.g. "dense/kernel"."""
        return f"{self.layer.name}/{self.name}"

    @property
    def ir_name(self) -> str:
        return f"{self.layer.name}.{self.name}"

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    def numpy(self) -> np.ndarray:
        return residency.fetch(self._value).copy()

    def assign(self, value: Any) -> None:
        array = np.asarray(value)
        if array.shape != self.shape:
            raise KilnValueError(f"Variable {self.path}: expected shape {self.shape}. "
                                 f"Received: shape={array.shape}")
        self.value[...] = array

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"


@dataclass(eq=False)
class KerasTensor:
    """A symbolic tensor: shape (None for the batch), dtype, and the call that made it."""

    shape: Shape
    dtype: str = "float32"
    name: str = ""
    history: tuple[Any, int, int] | None = None  # (layer, call index, output index)
    #: Keras's mask of this tensor, where the layer that made it gives one: a bool
    #: KerasTensor of the leading axes (batch, timesteps), True at the steps that count.
    _keras_mask: KerasTensor | None = field(default=None, repr=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


@dataclass(eq=False)
class CallRecord:
    """One application of a layer to KerasTensors (Keras calls this a node)."""

    layer: Layer
    inputs: list[KerasTensor]
    outputs: list[KerasTensor]
    kwargs: dict[str, Any] = field(default_factory=dict)


class LoweringContext:
    """What a layer needs while emitting IR: its variables as state values, the training
    flag, state updates (batch-norm statistics) and the key for random draws."""

    #: The state that keys random draws; a training graph advances it by one per call.
    SEED_STATE = "seed_generator.state"

    def __init__(self, b: GraphBuilder, training: bool, state_values: dict[int, Value],
                 penalties: bool = False, tracing: bool = False, augmenting: bool = False):
        self.b = b
        self.training = training
        # A model called on arrays without training= (Keras's `data_augmentation(images)`):
        # the augmentation layers, whose call defaults to training=True in Keras, augment;
        # every other layer runs as at inference. A training= given to a call ends it.
        self.augmenting = augmenting
        self._state = state_values
        # While a call is traced for its output types, a sublayer first built inside a
        # custom layer's call makes its weights then: they become state as they appear.
        self.tracing = tracing
        self.updates: dict[int, Value] = {}
        # With `penalties`, the activity regularizers' penalties, in call order (Model.lower
        # adds them); a step adds them to the loss.
        self.penalties = penalties
        self.losses: list[Value] = []
        self.rng_key: Value | None = None
        self._streams = 0

    @contextmanager
    def mode(self, training: Any) -> Iterator[None]:
        """A call's `training=` (when not None) holds for everything lowered inside it, as
        Keras passes an outer call's flag to the layers it calls."""
        outer = self.training, self.augmenting
        if training is not None:
            self.training, self.augmenting = bool(training), False
        try:
            yield
        finally:
            self.training, self.augmenting = outer

    def value(self, variable: Variable) -> Value:
        """The variable's value: the last update of this lowering when it has one (a layer
        called twice updates its statistics twice, in call order, as Keras assigns them),
        else its state."""
        key = id(variable)
        if key not in self._state:
            if not self.tracing:
                raise KilnValueError(
                    f"weight {variable.path} was made while kiln lowered the model, after the "
                    f"model was built: make a layer's sublayers in __init__ and its weights "
                    f"in build (or its first call)")
            self._state[key] = self.b.state(f"w{len(self._state)}", variable.type)
        return self.updates.get(key, self._state[key])

    def update(self, variable: Variable, value: Value) -> None:
        self.updates[id(variable)] = value

    def random_stream(self, layer: Layer) -> tuple[Value, int]:
        """The key (state made on first use) and a stream number unique to this call, so a
        layer called twice draws twice (streams count calls in lowering order)."""
        if self.rng_key is None:
            self.rng_key = self.b.state(self.SEED_STATE, TensorType((), "int64"))
        self._streams += 1
        return self.rng_key, self._streams - 1

    def add_activity_penalties(self, layer: Layer, outputs: Sequence[Value]) -> None:
        """With `penalties`, the layer's activity regularizer on each of one call's outputs,
        each over its batch size as Keras 3 divides it (0 for an empty batch, Keras's
        divide_no_nan)."""
        if not self.penalties or layer.activity_regularizer is None:
            return
        b, where = self.b, f"activity_regularizer of layer {layer.name!r}"
        with b.scope(f"{layer.name}.activity_regularizer"):
            for output in outputs:
                if not output.type.is_float:
                    raise KilnValueError(f"{where}: expected a float output to penalize. "
                                         f"Received: {output.type}")
                penalty = penalty_of(layer.activity_regularizer, b, output, where)
                if output.type.rank > 0:
                    batch = b.size(output, axes=[0], dtype=penalty.type.dtype)
                    empty = b.equal(batch, 0.0)
                    penalty = b.where(empty, 0.0, b.div(penalty, b.where(empty, 1.0, batch)))
                self.losses.append(penalty)

    def finish(self, state_names: dict[int, str]) -> None:
        """Declare the updates gathered while lowering, and advance the random key."""
        for var_id, value in self.updates.items():
            self.b.update(state_names[var_id], value)
        if self.rng_key is not None:
            self.b.update(self.rng_key, self.b.add(self.rng_key, 1, name="seed_generator.next"))


class Layer:
    """Base of every layer. Subclasses override `build(input_shape)` (create weights with
    `add_weight`) and `lower(b, inputs, ctx)` (emit IR; inputs are IR Values, one per input
    tensor, or a single Value for single-input layers)."""

    #: Single-input layers receive and return one tensor; merge layers take a list.
    multi_input = False
    #: Keras's supports_masking: the layer gives its outputs masks (`lower_mask`, by default
    #: the mask of its first argument). A layer without it drops a mask it receives, with
    #: Keras's warning.
    supports_masking = False
    #: The layer's `lower` takes the inputs' masks as keras_mask=[one per input tensor, or
    #: None] when any input has one (Keras: a call() with a `mask` argument).
    takes_mask = False
    #: The layer maps each position of the leading axes alone, so on an input with more
    #: leading axes than it was built for it computes what it computes on each slice
    #: (Dense, the element-wise activations, dropout and noise): TimeDistributed applies it
    #: to the whole sequence at once.
    position_wise = False
    #: from_config(config, custom_objects) rebuilds the layer: its config names layers or
    #: functions that loading finds there (wrappers, Lambda).
    loads_with_custom_objects = False

    def __init__(self, name: str | None = None, dtype: str | None = None, trainable: bool = True,
                 input_shape: Sequence[int | None] | None = None,
                 batch_input_shape: Sequence[int | None] | None = None,
                 input_dim: int | None = None, activity_regularizer: Any = None,
                 **kwargs: Any):
        if kwargs:
            key = next(iter(kwargs))
            raise KilnTypeError(f"{type(self).__name__}: unrecognized keyword argument "
                                f"{key!r}. Received: {key}={kwargs[key]!r}")
        # An automatic name may become the name of where a custom layer keeps it.
        self._auto_named = name is None
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.activity_regularizer = regularizers.get(activity_regularizer,
                                                     "activity_regularizer")
        self.dtype = canonical_dtype(dtype or "float32")
        self._trainable = bool(trainable)
        self.built = False
        self._variables: list[Variable] = []
        self._calls: list[CallRecord] = []
        self._batch_input_shape: Shape | None = None
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if input_shape is not None:
            self._batch_input_shape = (None, *_shape_arg(input_shape, "input_shape", self.name))
        elif batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)

    # -- weights -------------------------------------------------------------------------
    def add_weight(self, name: Any = None, shape: Shape | None = None, initializer: Any = None,
                   trainable: bool = True, dtype: str | None = None, regularizer: Any = None,
                   constraint: Any = None) -> Variable:
        """A new weight of this layer. Keras 3's keywords (`shape=`, `initializer=`,
        `name=`, ...) or kiln's order (name, shape, initializer); a shape given first, as
        Keras's positional order has it, is taken as the shape. Without an initializer, as
        Keras: glorot_uniform for a float weight, zeros otherwise; without a name,
        "variable", "variable_1", ..."""
        from kiln.frontends.keras import initializers

        if name is not None and not isinstance(name, str) and shape is None:
            name, shape = None, name
        if shape is None:
            raise KilnValueError(f"layer {self.name!r}: add_weight needs a shape")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if name is None:
            taken = {v.name for v in self._variables}
            name, k = "variable", 1
            while name in taken:
                name, k = f"variable_{k}", k + 1
        dtype = canonical_dtype(dtype or self.dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dtype in ("float32", "float64") else "zeros"
        init = initializers.get(initializer)
        variable = Variable(self, name, shape, dtype, init, trainable,
                            regularizers.get(regularizer), constraints.get(constraint))
        self._variables.append(variable)
        return variable

    @property
    def variables(self) -> list[Variable]:
        """Every variable this layer and its sublayers own, without repeats."""
        return unique_variables([*self._variables,
                                 *(v for sub in self.sublayers() for v in sub.variables)])

    @property
    def weights(self) -> list[Variable]:
        """Keras 3's order: the layer's own variables created trainable, then its other
        ones, then each sublayer's weights in turn."""
        return unique_variables([*(v for v in self._variables if v.trainable),
                                 *(v for v in self._variables if not v.trainable),
                                 *(v for sub in self.sublayers() for v in sub.weights)])

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        return [v for v in self.weights if v.trainable and v.layer.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self.weights
        return [v for v in self.weights if not (v.trainable and v.layer.trainable)]

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """As Keras: freezing (or unfreezing) a layer does so to every sublayer."""
        self._trainable = bool(value)
        for sub in self.sublayers():
            sub.trainable = self._trainable

    # -- sublayers -----------------------------------------------------------------------
    #: The layer's config holds its sublayers' configs, names included (models, wrappers).
    #: A custom layer's sublayers are made again by its __init__ when a model loads, so they
    #: are named after where it keeps them (`name_sublayers`).
    saves_sublayers = False

    def __setattr__(self, name: str, value: Any) -> None:
        """As Keras tracks them: a layer kept in an attribute (alone, or in a list, tuple or
        dict) is a sublayer, its weights this layer's weights."""
        super().__setattr__(name, value)
        if _may_hold_layers(name, value):
            tracked = self.__dict__.setdefault("_tracked", {})
            tracked.setdefault(name, None)
            if "name" in self.__dict__:
                self.name_sublayers()

    def children(self) -> list[tuple[str, Layer]]:
        """(where, sublayer) for each sublayer, in the order the attributes were first set:
        an attribute's name, with the index or key for a list or dict ("blocks/0")."""
        found: list[tuple[str, Layer]] = []
        for attr in self.__dict__.get("_tracked", ()):
            value = self.__dict__.get(attr)
            if isinstance(value, Layer):
                found.append((attr, value))
            elif isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                found += [(f"{attr}/{k}", v) for k, v in items if isinstance(v, Layer)]
        seen: set[int] = set()
        return [(k, v) for k, v in found if not (id(v) in seen or seen.add(id(v)))]

    def sublayers(self) -> list[Layer]:
        """The layers this one is made of (Keras's tracked layers), each once."""
        return [sub for _, sub in self.children()]

    def rename(self, name: str) -> None:
        """Take `name` (as given, not automatic), and name the sublayers after it."""
        self.name, self._auto_named = name, False
        self.name_sublayers()

    def name_sublayers(self, below_custom: bool = False) -> None:
        """Give each automatically named sublayer the name of its place, this layer's name
        and the attribute ("encoder/attention", "encoder/dense_proj/0"), at every level
        below. A custom layer's __init__ makes its sublayers again when a model loads, and
        these names come out the same each time (automatic ones count the layers made so
        far), so the weights and graphs saved match the rebuilt layer. Models and wrappers
        keep their sublayers' names: their configs hold them."""
        if self.saves_sublayers and not below_custom:
            return
        for key, sub in self.children():
            if sub._auto_named:
                sub.name = f"{self.name}/{key}"
            sub.name_sublayers(below_custom=True)

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        set_variables(self.weights, weights, f"layer {self.name!r}")

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.weights))

    # -- building and calling ------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of this shape (a list of shapes for merge layers)."""

    def lower(self, b: GraphBuilder, inputs: Any, ctx: LoweringContext, **kwargs: Any) -> Any:
        """Emit the IR of one call; `kwargs` are the call's keyword arguments. A layer that
        gives Keras's `call(inputs, ...)` instead is lowered by running it on kiln.ops
        tensors."""
        if not self._keras_call():
            raise NotImplementedError(f"{type(self).__name__}: a layer gives `call(inputs)` "
                                      f"(computing with kiln.ops) or `lower(b, inputs, ctx)`")
        from kiln.frontends.keras import ops

        values = list(inputs) if self.multi_input else [inputs]
        masks = kwargs.pop("keras_mask", None) or [None] * len(values)
        outs, _ = ops.run_call(self, b, ctx, values, masks, kwargs)
        return outs[0] if len(outs) == 1 else outs

    def _keras_call(self) -> bool:
        return type(self).call is not Layer.call

    def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras's call: override it (computing with kiln.ops on the inputs and the layer's
        weights) or `lower`. A `mask` parameter receives the inputs' masks, a `training`
        parameter the mode."""
        raise NotImplementedError(f"{type(self).__name__}.call")

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """Keras's compute_mask: override it (with kiln.ops) to give the outputs' masks of a
        layer that supports masking; by default the first argument's."""
        return mask

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A Keras-style layer whose `call` has a `mask` parameter takes masks, as Keras
        passes them to such a call; one that gives `compute_mask` supports masking, as
        Keras infers."""
        super().__init_subclass__(**kwargs)
        if "compute_mask" in cls.__dict__ and "supports_masking" not in cls.__dict__:
            cls.supports_masking = True
        if "call" in cls.__dict__ and "takes_mask" not in cls.__dict__:
            import inspect

            try:
                cls.takes_mask = "mask" in inspect.signature(cls.call).parameters
            except (TypeError, ValueError):
                pass

    def lower_mask(self, b: GraphBuilder, inputs: list[Value], masks: list[Value | None],
                   ctx: LoweringContext, **kwargs: Any) -> list[Value | None]:
        """The masks of one call's outputs (Keras's compute_mask), from its inputs and their
        masks; by default the masks of the first argument, in order (one tensor for most
        layers, so the first output gets its mask). Called only with supports_masking."""
        if type(self).compute_mask is not Layer.compute_mask:
            from kiln.frontends.keras import ops

            return ops.run_mask(self.compute_mask, self, b, ctx, inputs, masks,
                                f"layer {self.name!r} ({type(self).__name__}).compute_mask")
        return self.first_argument(masks)

    def first_argument(self, items: list) -> list:
        """Of one item per input tensor, those of the call's first argument (Keras's
        previous_mask): every one for a layer called on a list, else the first."""
        return list(items) if self.multi_input else list(items[:1])

    def lower_call(self, b: GraphBuilder, inputs: list[Value], masks: list[Value | None],
                   ctx: LoweringContext, kwargs: dict[str, Any],
                   ) -> tuple[list[Value], list[Value | None]]:
        """Emit one call: its outputs and their masks (None where an output has none), from
        its input values and their masks."""
        call = dict(kwargs)
        carried: list[Value | None] = []
        if self._keras_call() and type(self).lower is Layer.lower:
            from kiln.frontends.keras import ops

            outs, carried = ops.run_call(self, b, ctx, inputs, masks, call)
        else:
            if self.takes_mask and any(m is not None for m in masks):
                call["keras_mask"] = list(masks)
            out = self.lower(b, inputs if self.multi_input else inputs[0], ctx, **call)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
        # As Keras: a mask an output already carries (a sublayer's output returned by a
        # custom call) stays; compute_mask gives the others.
        out_masks: list[Value | None] = (carried + [None] * len(outs))[:len(outs)]
        if self.supports_masking and not all(m is not None for m in out_masks):
            given = self.lower_mask(b, inputs, masks, ctx, **kwargs)
            for k, m in enumerate(given[:len(outs)]):
                if out_masks[k] is None:
                    out_masks[k] = m
        return outs, out_masks

    def __new__(cls, *args: Any, **kwargs: Any) -> Layer:
        """As Keras: a layer or model class defined outside kiln remembers the arguments it
        was made with when they are plain (numbers, strings, bools, None, lists and dicts
        of them), so one without its own get_config still saves (`get_config`)."""
        instance = super().__new__(cls)
        if not cls.__module__.startswith("kiln."):
            instance.__dict__["_init_args"] = _plain_init_args(cls, args, kwargs)
        return instance

    def get_config(self) -> dict[str, Any]:
        """name, trainable, dtype (and the input shape and activity regularizer where
        given); a class defined outside kiln that gives no get_config of its own adds the
        arguments it was made with, as Keras's automatic config."""
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable,
                                  "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        own = type(self).get_config.__qualname__ not in ("Layer.get_config", "Model.get_config")
        captured = self.__dict__.get("_init_args")
        if not own and captured is not None:
            config.update(captured)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """As Keras: the layer made with its config as arguments."""
        return cls(**config)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if self._keras_call() and type(self).multi_input is Layer.multi_input:
            self.multi_input = isinstance(inputs, (list, tuple))  # as call receives them
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        lowering = _inside_call(tensors)
        for t in tensors:
            if not lowering and not isinstance(t, KerasTensor):
                raise KilnTypeError(
                    f"layer {self.name!r} expected symbolic inputs (from layers.Input or another "
                    f"layer). Received: {type(t).__name__}"
                )
        if self.multi_input and not isinstance(inputs, (list, tuple)):
            raise KilnValueError(f"layer {self.name!r} expects a list of inputs. "
                                 f"Received: {inputs!r}")
        if not self.multi_input and len(tensors) != 1:
            raise KilnValueError(f"layer {self.name!r} expects one input. "
                                 f"Received: {len(tensors)} inputs")
        if lowering:
            return self._call_inside(tensors, kwargs)
        self._build_for(tensors)
        out_types, mask_types = self.trace(tensors, kwargs)
        self._warn_dropped_mask([t._keras_mask is not None for t in tensors])
        record = CallRecord(self, tensors, [], dict(kwargs))
        index = len(self._calls)
        for k, (t, m) in enumerate(zip(out_types, mask_types)):
            name = self.name if len(out_types) == 1 else f"{self.name}_{k}"
            out = KerasTensor(to_keras_shape(t), t.dtype, name, (self, index, k))
            if m is not None:
                out._keras_mask = KerasTensor(to_keras_shape(m), m.dtype, f"{name}_mask")
            record.outputs.append(out)
        self._calls.append(record)
        return self._result(record.outputs)

    def _result(self, outs: list) -> Any:
        return outs[0] if len(outs) == 1 and not self.returns_list else outs

    def _build_for(self, tensors: list) -> None:
        """Check the inputs' shapes and build the layer for them on its first call."""
        shapes = [t.shape for t in tensors]
        self.check_input_shapes(shapes)
        if not self.built:
            self.build(shapes if self.multi_input else shapes[0])
            self.built = True
        self.name_sublayers()

    def _call_inside(self, tensors: list, kwargs: dict[str, Any]) -> Any:
        """A call inside a custom layer's call (on kiln.ops tensors): emit the layer's IR
        into the graph being built, as Keras runs a sublayer. The inputs' masks go with them
        (or `mask=` given), and `training=` given holds for the calls inside it too."""
        from kiln.frontends.keras import ops

        b, ctx = ops.active()
        tensors = [ops.convert_to_tensor(t) for t in tensors]
        kwargs = dict(kwargs)
        mask = kwargs.pop("mask", None)
        if mask is None:
            masks = [t._keras_mask for t in tensors]
        else:
            masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
            if len(masks) != len(tensors):
                raise KilnValueError(f"layer {self.name!r}: expected one mask per input "
                                     f"({len(tensors)}). Received: {len(masks)}")
        masks = [None if m is None else ops.convert_to_tensor(m).value for m in masks]
        training = kwargs.pop("training", None)
        self._build_for(tensors)
        if ctx.tracing:
            self._warn_dropped_mask([m is not None for m in masks])
        with ctx.mode(training), b.scope(self.name.rsplit("/", 1)[-1]):
            outs, out_masks = self.lower_call(b, [t.value for t in tensors], masks, ctx, kwargs)
        ctx.add_activity_penalties(self, outs)
        return self._result([ops.Tensor(v, m) for v, m in zip(outs, out_masks)])

    #: True for layers that return a list even when it has one element (RNNs with state).
    returns_list = False

    def replay(self, inputs: list[KerasTensor], kwargs: dict[str, Any],
               as_list: bool | None = None) -> Any:
        """Call the layer again as a saved call says: its input tensors in order, its keyword
        arguments, and whether they went as a list (a nested model's call saves it; None:
        as multi_input says). Layers whose call takes its tensors apart override this."""
        listed = self.multi_input if as_list is None else as_list
        return self(inputs if listed else inputs[0], **kwargs)

    def check_input_shapes(self, shapes: list[Shape]) -> None:
        """Override to check ranks and sizes before building (Keras's input_spec)."""

    def _warn_dropped_mask(self, masked: list[bool]) -> None:
        """Keras's warning when a layer that gives no masks gets a masked first argument
        (`masked`: whether each input tensor has a mask)."""
        if self.supports_masking or (self.takes_mask and not self._keras_call()):
            return
        if any(self.first_argument(masked)):
            warnings.warn(f"Layer {self.name!r} (of type {type(self).__name__}) was passed an "
                          "input with a mask attached to it. However, this layer does not "
                          "support masking and will therefore destroy the mask information. "
                          "Downstream layers will not see the mask.", stacklevel=3)

    def trace(self, tensors: list[KerasTensor], kwargs: dict[str, Any],
              ) -> tuple[list[TensorType], list[TensorType | None]]:
        """Output types of one call and of their masks (None where an output has none), from
        the IR the layer emits on symbolic inputs."""
        b = GraphBuilder(f"trace_{self.name}")
        values = [b.input(f"in{i}", to_ir_type(t.shape, t.dtype)) for i, t in enumerate(tensors)]
        masks = [None if t._keras_mask is None else
                 b.input(f"mask{i}", to_ir_type(t._keras_mask.shape, t._keras_mask.dtype))
                 for i, t in enumerate(tensors)]
        state = {id(v): b.state(f"w{i}", v.type) for i, v in enumerate(self.variables)}
        ctx = LoweringContext(b, training=False, state_values=state, tracing=True)
        try:
            with b.scope(self.name):
                outs, out_masks = self.lower_call(b, values, masks, ctx, kwargs)
        except KilnError as err:
            raise type(err)(f"layer {self.name!r} ({type(self).__name__}) cannot take inputs of "
                            f"shape {', '.join(str(t.shape) for t in tensors)}: {err}") from None
        return [v.type for v in outs], [None if m is None else m.type for m in out_masks]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


#: The from_config methods that call the constructor with the config (model.py adds Model's).
_DEFAULT_FROM_CONFIGS: set[Any] = {Layer.from_config.__func__}  # type: ignore[attr-defined]


class Wrapper(Layer):
    """A layer made of the layers it wraps, as Keras's wrappers: its weights are theirs, in
    order, and freezing it freezes them. Its config holds theirs, names included."""

    loads_with_custom_objects = True
    saves_sublayers = True


def _plain_init_args(cls: type, args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """The arguments of cls(*args, **kwargs) by name (defaults included, without `name`),
    or None when any is not plain data or cannot be passed back by name."""
    import inspect

    try:
        signature = inspect.signature(cls.__init__)
        bound = signature.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    bound.apply_defaults()
    captured: dict[str, Any] = {}
    for k, (key, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[key].kind
        if k == 0:
            continue  # self
        if kind == inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind == inspect.Parameter.VAR_KEYWORD:
            captured.update(value)
        elif kind == inspect.Parameter.POSITIONAL_ONLY:
            return None
        else:
            captured[key] = value
    captured.pop("name", None)

    def plain(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return v is None or isinstance(v, (str, int, float, bool))

    return captured if plain(captured) else None


def construct(cls: type, config: dict[str, Any]) -> Any:
    """cls from a config as deserialization finds it: cls.from_config(config), or
    cls(**config); for a class whose __init__ takes neither them nor **kwargs, the base
    keys (name, trainable, dtype) are set on the new object instead of passed."""
    import inspect

    config = dict(config)
    later: dict[str, Any] = {}
    if getattr(cls.from_config, "__func__", None) in _DEFAULT_FROM_CONFIGS:
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
            for key in ("name", "trainable", "dtype"):
                if key in config and key not in params:
                    later[key] = config.pop(key)
    obj = cls.from_config(config)
    if "name" in later and isinstance(later["name"], str):
        obj.rename(later["name"])
    if "trainable" in later:
        obj.trainable = bool(later["trainable"])
    return obj


def unique_variables(variables: Sequence[Variable]) -> list[Variable]:
    """The variables in order, each once."""
    seen: set[int] = set()
    return [v for v in variables if not (id(v) in seen or seen.add(id(v)))]


def _may_hold_layers(attr: str, value: Any) -> bool:
    """Whether an attribute is tracked for sublayers: a layer, a list, tuple or dict (a
    public one even while empty, as layers may be appended), a private one holding layers."""
    if isinstance(value, Layer):
        return True
    if not isinstance(value, (list, tuple, dict)):
        return False
    if not attr.startswith("_"):
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, Layer) for v in items)


def _inside_call(tensors: list) -> bool:
    """Whether a layer is called inside a custom layer's call: on a kiln.ops tensor (any
    others are arrays), while kiln builds a graph."""
    from kiln.frontends.keras import ops

    return any(isinstance(t, ops.Tensor) for t in tensors) and ops.lowering_active()


def is_symbolic(x: Any) -> bool:
    """A KerasTensor, or a kiln.ops tensor inside a custom layer's call."""
    from kiln.frontends.keras.ops import Tensor

    return isinstance(x, (KerasTensor, Tensor))


def penalty_of(regularizer: Callable, b: GraphBuilder, value: Value, where: str) -> Value:
    """regularizer(b, value), which must be a float scalar; errors name `where`."""
    try:
        value = regularizer(b, value)
    except KilnError as err:
        raise type(err)(f"{where}: {err}") from None
    if not isinstance(value, Value) or value.type.rank != 0 or not value.type.is_float:
        got = value.type if isinstance(value, Value) else type(value).__name__
        raise KilnValueError(f"{where}: expected the regularizer to return a float scalar. "
                             f"Received: {got}")
    return value


#: The regularizer and constraint arguments of a layer with a kernel and a bias.
KERNEL_BIAS_OPTIONS = ("kernel_regularizer", "bias_regularizer", "kernel_constraint",
                       "bias_constraint")


def as_bool(b: GraphBuilder, mask: Value) -> Value:
    """A mask as bools: nonzero is True."""
    return mask if mask.type.dtype == "bool" else b.logical_not(b.equal(mask, 0))


def spread_mask(b: GraphBuilder, mask: Value, x: Value) -> Value:
    """A mask of x's leading axes spread over all of x's elements (Keras's expand_dims then
    broadcast_to x's shape)."""
    return b.logical_or(b.expand_dims(as_bool(b, mask), axes=(-1,)),
                        b.constant(False, "bool", shape=x.type.shape))


def fraction_arg(value: Any, name: str, layer: str, below_one: bool = True) -> float:
    """A rate or fraction argument checked: a number in [0, 1), or [0, 1] without
    `below_one`."""
    top = "1 excluded" if below_one else "1 included"
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value <= 1 or (below_one and value == 1)):
        raise KilnValueError(f"layer {layer!r}: invalid value received for argument `{name}`. "
                             f"Expected a float value between 0 and 1 ({top}). "
                             f"Received: {name}={value!r}")
    return float(value)


def any_true(b: GraphBuilder, bools: Value, axis: int, name: str | None = None) -> Value:
    """Whether any element along `axis` is True (the axis removed)."""
    return b.greater(b.max(b.cast(bools, dtype="float32"), axes=(axis,)), 0.0, name=name)


def set_weight_options(layer: Layer, **options: Any) -> None:
    """Store each `<weight>_regularizer` / `<weight>_constraint` argument on the layer,
    resolved through kiln.regularizers / kiln.constraints (errors name the argument)."""
    for key, value in options.items():
        module = regularizers if key.endswith("_regularizer") else constraints
        setattr(layer, key, module.get(value, key))


def weight_options_config(layer: Layer, *keys: str) -> dict[str, Any]:
    """The serialized `<weight>_regularizer` / `<weight>_constraint` arguments, for get_config."""
    return {key: (regularizers if key.endswith("_regularizer") else constraints).serialize(
        getattr(layer, key)) for key in keys}


def _shape_arg(shape: Any, what: str, layer: str) -> tuple:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise KilnTypeError(f"layer {layer!r}: expected {what} as a tuple of ints. "
                            f"Received: {what}={shape!r}") from None
    for d in dims:
        if d is not None and (not isinstance(d, (int, np.integer)) or d <= 0):
            raise KilnValueError(f"layer {layer!r}: expected {what} of positive ints. "
                                 f"Received: {what}={shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


def set_variables(variables: Sequence[Variable], weights: Sequence[Any], where: str) -> None:
    """Assign all or nothing: every count and shape is checked before any value changes."""
    weights = list(weights)
    if len(weights) != len(variables):
        raise KilnValueError(f"{where}: set_weights expected {len(variables)} arrays. "
                             f"Received: {len(weights)} arrays")
    arrays = []
    for variable, w in zip(variables, weights):
        array = np.asarray(w)
        if array.shape != variable.shape:
            raise KilnValueError(f"{where}: set_weights expected shape {variable.shape} for "
                                 f"{variable.path}. Received: shape={array.shape}")
        arrays.append(array)
    for variable, array in zip(variables, arrays):
        variable.value[...] = array
