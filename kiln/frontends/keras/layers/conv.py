"""Image layers in Keras's default layout, channels_last (batch, rows, cols, channels): Conv2D,
MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D.

Conv2D and the windowed pools lower to the IR's NHWC conv2d / max_pool2d / avg_pool2d, whose
"same" padding is TensorFlow's (the smaller half of the padding before, the larger after) and
whose average pool divides by the real (unpadded) elements of each window, as Keras does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.keras import activations, initializers
from kiln.frontends.keras.layer import (
    KERNEL_BIAS_OPTIONS,
    Layer,
    set_weight_options,
    weight_options_config,
)
from kiln.frontends.keras.layers.core import _data_format
from kiln.ir import KilnTypeError, KilnValueError


def _int_pair(value: Any, name: str, layer: str) -> tuple[int, int]:
    """Keras's standardize_tuple for two spatial axes: an int n means (n, n)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise KilnTypeError(f"layer {layer!r}: the `{name}` argument must be a tuple of 2 "
                            f"integers. Received: {name}={value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise KilnValueError(f"layer {layer!r}: the `{name}` argument must be a tuple of 2 "
                             f"integers. Received: {name}={value!r}")
    pair = tuple(int(v) for v in pair)
    if not all(v > 0 for v in pair):
        raise KilnValueError(f"layer {layer!r}: the `{name}` argument must be a tuple of 2 "
                             f"integers. Received: {name}={pair} including values that do "
                             f"not satisfy `value > 0`")
    return pair  # type: ignore[return-value]


def _padding(value: Any, layer: str) -> str:
    padding = value.lower() if isinstance(value, str) else value
    if padding not in ("valid", "same"):
        raise KilnValueError(f"layer {layer!r}: the `padding` argument must be one of 'valid', "
                             f"'same'. Received: padding={value!r}")
    return padding


def _channels_last(value: Any, layer: str, kind: str) -> str:
    fmt = _data_format(value, layer)
    if fmt == "channels_first":
        raise KilnValueError(f"layer {layer!r}: kiln's {kind} supports only "
                             f"data_format='channels_last' (batch, rows, cols, channels); "
                             f"transpose the images to that layout. "
                             f"Received: data_format='channels_first'")
    return fmt


def _expect_image(layer: Layer, shape: tuple) -> None:
    """Keras's input_spec for 2-D image layers: rank 4."""
    if len(shape) != 4:
        raise KilnValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                             f"expected ndim=4, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")


def _window_fits(layer: Layer, shape: tuple, window: tuple[int, int], padding: str,
                 what: str) -> None:
    """With 'valid' padding each known spatial size must hold at least one window."""
    if padding != "valid":
        return
    for size, span in zip(shape[1:3], window):
        if size is not None and size < span:
            raise KilnValueError(f"layer {layer.name!r}: one of the dimensions in the output is "
                                 f"<= 0 due to downsampling in {what}. Consider increasing the "
                                 f"input size. Received input shape {shape}, which with a "
                                 f"window of {window} and padding='valid' gives no output")


class Conv2D(Layer):
    """2-D convolution: output = activation(conv2d(input, kernel) + bias).

    Args: filters, kernel_size (int or pair), strides=(1, 1), padding="valid" or "same",
    data_format=None (channels_last only), dilation_rate=(1, 1), groups=1 (only 1),
    activation=None, use_bias=True, kernel_initializer="glorot_uniform",
    bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
    activity_regularizer=None, kernel_constraint=None, bias_constraint=None.
    Weights: kernel (kh, kw, in_channels, filters), bias (filters,).
    Input shape: (batch, rows, cols, channels). Output: (batch, new_rows, new_cols, filters).
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = (1, 1), groups: int = 1, activation: Any = None,
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        set_weight_options(self, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        if (isinstance(filters, bool) or not isinstance(filters, (int, np.integer))
                or filters <= 0):
            raise KilnValueError(f"layer {self.name!r}: invalid value for argument `filters`. "
                                 f"Expected a strictly positive value. Received: "
                                 f"filters={filters!r}")
        self.filters = int(filters)
        self.kernel_size = _int_pair(kernel_size, "kernel_size", self.name)
        self.strides = _int_pair(strides, "strides", self.name)
        self.dilation_rate = _int_pair(dilation_rate, "dilation_rate", self.name)
        self.padding = _padding(padding, self.name)
        self.data_format = _channels_last(data_format, self.name, "Conv2D")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise KilnValueError(f"layer {self.name!r}: `strides > 1` not supported in "
                                 f"conjunction with `dilation_rate > 1`. Received: "
                                 f"strides={self.strides} and "
                                 f"dilation_rate={self.dilation_rate}")
        if groups != 1:
            raise KilnValueError(f"layer {self.name!r}: kiln's Conv2D supports only groups=1. "
                                 f"Received: groups={groups!r}")
        self.groups = groups
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        _expect_image(self, shape)
        if shape[-1] is None:
            raise KilnValueError(f"layer {self.name!r}: the channel dimension of the inputs "
                                 f"should be defined. The input_shape received is {shape}, "
                                 f"where axis -1 is the channel dimension, which found to be "
                                 f"`None`")
        if self.built and shape[-1] != self.kernel.shape[2]:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected axis -1 of input shape to have value "
                                 f"{self.kernel.shape[2]}, but received input with shape {shape}")
        span = tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))
        _window_fits(self, shape, span, self.padding, "conv2d")

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight("kernel", (*self.kernel_size, input_shape[-1],
                                                 self.filters), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        y = b.conv2d(x, ctx.value(self.kernel), strides=self.strides, padding=self.padding,
                     dilation=self.dilation_rate)
        if self.use_bias:
            y = b.add(y, ctx.value(self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **weight_options_config(self, *KERNEL_BIAS_OPTIONS)}


class _Pooling2D(Layer):
    """A window slid over the rows and cols of each channel; strides=None means pool_size."""

    op = ""

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pool_size = _int_pair(pool_size, "pool_size", self.name)
        self.strides = self.pool_size if strides is None else _int_pair(strides, "strides",
                                                                        self.name)
        self.padding = _padding(padding, self.name)
        self.data_format = _channels_last(data_format, self.name, type(self).__name__)

    def check_input_shapes(self, shapes: list) -> None:
        _expect_image(self, shapes[0])
        _window_fits(self, shapes[0], self.pool_size, self.padding, "pooling")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.op(self.op, x, pool_size=self.pool_size, strides=self.strides,
                    padding=self.padding)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    """The maximum of each pool_size window (default (2, 2)), moved by strides (None: the
    pool size), padding "valid" or "same".

    Input shape: (batch, rows, cols, channels). Output: (batch, pooled_rows, pooled_cols,
    channels).
    """

    op = "max_pool2d"


class AveragePooling2D(_Pooling2D):
    """The mean of each pool_size window (default (2, 2)), moved by strides (None: the pool
    size); with padding="same" a border window averages only its real elements.

    Input shape: (batch, rows, cols, channels). Output: (batch, pooled_rows, pooled_cols,
    channels).
    """

    op = "avg_pool2d"


class _GlobalPooling2D(Layer):
    op = ""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, self.name)
        self.keepdims = bool(keepdims)

    def check_input_shapes(self, shapes: list) -> None:
        _expect_image(self, shapes[0])

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        return b.op(self.op, x, axes=axes, keepdims=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over rows and cols of each channel.

    Args: data_format=None (channels_last), keepdims=False.
    Input shape: (batch, rows, cols, channels). Output: (batch, channels), or
    (batch, 1, 1, channels) with keepdims.
    """

    op = "mean"


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum over rows and cols of each channel.

    Args: data_format=None (channels_last), keepdims=False.
    Input shape: (batch, rows, cols, channels). Output: (batch, channels), or
    (batch, 1, 1, channels) with keepdims.
    """

    op = "max"
