"""Core layers: Input, Dense, Activation, Dropout, Flatten, Reshape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kiln.frontends.keras import activations, initializers
from kiln.frontends.keras.layer import (
    KERNEL_BIAS_OPTIONS,
    KerasTensor,
    Layer,
    _shape_arg,
    any_true,
    fraction_arg,
    set_weight_options,
    weight_options_config,
)
from kiln.ir import KilnTypeError, KilnValueError
from kiln.ir.types import canonical_dtype


class InputLayer(Layer):
    """The layer behind `Input`: it holds the batch input shape and emits nothing."""

    def __init__(self, shape: Sequence[int | None] | None = None, batch_size: int | None = None,
                 dtype: str | None = None, name: str | None = None,
                 batch_shape: Sequence[int | None] | None = None, **kwargs: Any):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise KilnValueError("Input: expected shape= (without the batch dimension). "
                                     "Received: shape=None")
            batch_shape = (batch_size, *_shape_arg(shape, "shape", self.name))
        self._batch_input_shape = tuple(batch_shape)
        self.built = True
        self.output = KerasTensor(self._batch_input_shape, self.dtype, self.name, (self, 0, 0))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "batch_shape": list(self._batch_input_shape)}


def Input(shape: Sequence[int | None] | None = None, batch_size: int | None = None,  # noqa: N802
          dtype: str | None = None, name: str | None = None,
          batch_shape: Sequence[int | None] | None = None) -> KerasTensor:
    """A symbolic input of `shape` (without the batch dimension), as keras.Input."""
    return InputLayer(shape, batch_size, canonical_dtype(dtype or "float32"), name,
                      batch_shape).output


class Dense(Layer):
    """output = activation(dot(input, kernel) + bias), on the last axis of any rank >= 2.

    Args: units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
    bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
    activity_regularizer=None, kernel_constraint=None, bias_constraint=None.
    Input shape: (batch, ..., input_dim). Output: (batch, ..., units).
    """

    supports_masking = True
    position_wise = True

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        set_weight_options(self, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise KilnValueError(f"Received an invalid value for `units`, expected a positive "
                                 f"integer. Received: units={units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if len(shape) < 2:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected min_ndim=2, found ndim={len(shape)}. "
                                 f"Full shape received: {shape}")
        if shape[-1] is None:
            raise KilnValueError(f"layer {self.name!r}: the last dimension of the input must be "
                                 f"known. Received: shape={shape}")
        if self.built and shape[-1] != self.kernel.shape[0]:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected axis -1 of input shape to have value "
                                 f"{self.kernel.shape[0]}, but received input with shape {shape}")

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                      self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        if not x.type.is_float:  # ints and bools (0/1 features) as Keras's matmul promotes
            x = b.cast(x, dtype=self.kernel.dtype)
        y = b.matmul(x, ctx.value(self.kernel))
        if self.use_bias:
            y = b.add(y, ctx.value(self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **weight_options_config(self, *KERNEL_BIAS_OPTIONS)}


class Activation(Layer):
    """Applies an activation function: `Activation("relu")(x)` is relu(x).

    Args: activation, a name (as Keras spells it) or a callable f(builder, value) -> value.
    Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, activation: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return self.activation(b, x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.name_of(self.activation)}


def inverted_dropout(b: Any, ctx: Any, layer: Layer, x: Any, rate: float, training: Any,
                     shape: tuple, name: str = "mask") -> Any:
    """In training (the call's flag, else the graph's): x where a keep-mask of `shape`
    (drawn with p = 1 - rate on the layer's stream, broadcasting against x) is True, scaled
    by 1 / (1 - rate), and 0 elsewhere; x itself otherwise or at rate 0."""
    training = ctx.training if training is None else bool(training)
    if not training or rate == 0:
        return x
    key, stream = ctx.random_stream(layer)
    keep = 1.0 - rate
    mask = b.bernoulli(key, shape=shape, p=keep, stream=stream, name=name)
    return b.where(mask, b.div(x, keep), 0.0)


class Dropout(Layer):
    """In training, zeroes each element with probability `rate` and scales the others by
    1 / (1 - rate), so the expected sum is unchanged; at inference, the identity.

    Args: rate in [0, 1); noise_shape, the shape of the drawn keep-mask (None entries take the
    input's size; a 1 shares one draw along that axis), None for the input's shape; seed,
    accepted for Keras compatibility: kiln draws every mask from the model's one seed state
    (`kiln.utils.set_random_seed` makes it reproducible), each Dropout layer on its own stream.
    Call argument: training=None (the graph's mode) or a bool that forces the mode.
    Input shape: any. Output shape: the input's.
    """

    supports_masking = True

    def __init__(self, rate: float, noise_shape: Sequence[int | None] | None = None,
                 seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = fraction_arg(rate, "rate", self.name)
        if noise_shape is not None:
            noise_shape = tuple(noise_shape)
            if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                       for d in noise_shape):
                raise KilnValueError(f"layer {self.name!r}: expected noise_shape as a tuple of "
                                     f"positive ints or None. Received: noise_shape={noise_shape}")
        self.noise_shape = noise_shape
        self.seed = seed

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if self.noise_shape is None:
            return
        ok = len(self.noise_shape) == len(shape) and all(
            n is None or n == 1 or n == d for n, d in zip(self.noise_shape, shape))
        if not ok:
            raise KilnValueError(f"layer {self.name!r}: expected a noise_shape that broadcasts "
                                 f"to the input shape {shape}. "
                                 f"Received: noise_shape={self.noise_shape}")

    @property
    def position_wise(self) -> bool:  # type: ignore[override]
        return self.noise_shape is None  # a noise_shape shares draws along axes

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        return inverted_dropout(b, ctx, self, x, self.rate, training, self._mask_shape(x))

    def _mask_shape(self, x: Any) -> tuple:
        """noise_shape with its None entries taken from x (x's shape when there is none)."""
        dims = x.type.shape
        return dims if self.noise_shape is None else tuple(
            d if n is None else n for n, d in zip(self.noise_shape, dims))

    def get_config(self) -> dict[str, Any]:
        noise = None if self.noise_shape is None else list(self.noise_shape)
        return {**super().get_config(), "rate": self.rate, "noise_shape": noise,
                "seed": self.seed}


def _data_format(value: Any, layer: str) -> str:
    """Keras's standardize_data_format: None means channels_last (kiln's image format)."""
    if value is None:
        return "channels_last"
    fmt = str(value).lower()
    if fmt not in ("channels_first", "channels_last"):
        raise KilnValueError(f"layer {layer!r}: the `data_format` argument must be one of "
                             f"'channels_first', 'channels_last'. Received: data_format={value!r}")
    return fmt


class Masking(Layer):
    """Masks the timesteps whose features all equal `mask_value`: the output is the input
    with those steps set to 0, and carries a Keras mask (True at the other steps) that later
    layers take, as Keras's Masking does.

    Args: mask_value=0.0. Input shape: (batch, ..., features). Output shape: the input's;
    its mask (batch, ...).
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise KilnValueError(f"layer {self.name!r}: expected mask_value to be a number. "
                                 f"Received: mask_value={mask_value!r}")
        self.mask_value = float(mask_value)

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes[0]) < 2:
            raise KilnValueError(f"layer {self.name!r}: expected an input of rank >= 2 "
                                 f"(batch, ..., features). Received: shape={shapes[0]}")

    def lower_call(self, b, inputs, masks, ctx, kwargs):  # noqa: ANN001, ANN201
        """The output and its mask from one comparison (lower and lower_mask apart would
        emit it twice)."""
        x = inputs[0]
        differs = b.logical_not(b.equal(x, b.constant(self.mask_value, x.type.dtype)))
        kept = any_true(b, differs, -1, name="mask")
        return [b.where(b.expand_dims(kept, axes=(-1,)), x, 0.0)], [kept]

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return self.lower_call(b, [x], [None], ctx, kwargs)[0][0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}


class Flatten(Layer):
    """Flattens every axis but the batch: (batch, d1, ..., dk) -> (batch, d1 * ... * dk).

    Args: data_format=None ("channels_last"); with "channels_first" the channels axis is moved
    last before flattening, so the order matches a channels_last model's, as Keras does.
    Input shape: (batch, ...). Output shape: (batch, product of the rest); (batch,) -> (batch, 1).
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, self.name)

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes[0]) < 1:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected min_ndim=1, found ndim=0. "
                                 f"Full shape received: {shapes[0]}")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        rank = x.type.rank
        if self.data_format == "channels_first" and rank > 2:
            x = b.transpose(x, perm=(0, *range(2, rank), 1))
        return b.reshape(x, shape=(x.type.shape[0], -1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes the non-batch axes to `target_shape` (a tuple of ints; one may be -1, the
    size that keeps the total unchanged).

    Input shape: (batch, ...). Output shape: (batch, *target_shape).
    """

    def __init__(self, target_shape: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise KilnTypeError(f"layer {self.name!r}: expected target_shape as a tuple of ints. "
                                f"Received: target_shape={target_shape!r}") from None
        if not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1)
                   for d in target):
            raise KilnValueError(f"layer {self.name!r}: expected target_shape of positive ints "
                                 f"or -1. Received: target_shape={target}")
        if target.count(-1) > 1:
            raise KilnValueError(f"layer {self.name!r}: there must be at most one unknown "
                                 f"dimension (-1) in target_shape. Received: "
                                 f"target_shape={target}")
        self.target_shape = target

    def check_input_shapes(self, shapes: list) -> None:
        dims = shapes[0][1:]
        if None in dims:
            return  # the IR's reshape rule decides what an unknown size allows
        size = math.prod(dims)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 not in self.target_shape and size != known:
            raise KilnValueError(f"layer {self.name!r}: the total size of the tensor must be "
                                 f"unchanged. Received: input_shape={tuple(dims)}, "
                                 f"target_shape={self.target_shape}")
        if -1 in self.target_shape and size % known:
            raise KilnValueError(f"layer {self.name!r}: the total size of the tensor must be "
                                 f"unchanged, however, the input size cannot be divided by the "
                                 f"specified dimensions in target_shape. Received: "
                                 f"input_shape={tuple(dims)}, target_shape={self.target_shape}")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.reshape(x, shape=(x.type.shape[0], *self.target_shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}
