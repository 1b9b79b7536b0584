"""Depthwise and depthwise-separable convolutions, as Keras 3's: DepthwiseConv1D/2D and
SeparableConv1D/2D (the book's chapter on modern convnet architecture), channels_last.

A depthwise convolution filters each input channel on its own with `depth_multiplier`
kernels: output channel c * multiplier + m is input channel c correlated with kernel
[..., c, m]: the IR's `depthwise_conv2d` (and its two gradient ops), which every backend
runs with a kernel of its own. A separable convolution is a depthwise one followed by a
pointwise (1 x 1) convolution, here a matmul over the channels. The 1-D layers run the 2-D
op on a height of one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.keras import activations, initializers
from kiln.frontends.keras.layer import Layer, set_weight_options, weight_options_config
from kiln.frontends.keras.layers.conv import (
    _LAYOUTS,
    _as_image,
    _channels_last,
    _expect_image,
    _from_image,
    _int_tuple,
    _padding,
    _window_fits,
)
from kiln.ir import KilnValueError


class _DepthwiseBase(Layer):
    """What the depthwise and separable layers share: arguments, checks, the depthwise
    kernel, the lowering of its convolution."""

    rank = 2
    #: The depthwise kernel's weight name: Keras 3 calls DepthwiseConv's "kernel".
    depthwise_name = "kernel"

    def __init__(self, kernel_size: Any, strides: Any, padding: str, depth_multiplier: int,
                 data_format: str | None, dilation_rate: Any, activation: Any, use_bias: bool,
                 depthwise_initializer: Any, bias_initializer: Any, depthwise_regularizer: Any,
                 bias_regularizer: Any, depthwise_constraint: Any, bias_constraint: Any,
                 **kwargs: Any):
        super().__init__(**kwargs)
        n = self.rank
        set_weight_options(self, depthwise_regularizer=depthwise_regularizer,
                           bias_regularizer=bias_regularizer,
                           depthwise_constraint=depthwise_constraint,
                           bias_constraint=bias_constraint)
        if (isinstance(depth_multiplier, bool)
                or not isinstance(depth_multiplier, (int, np.integer)) or depth_multiplier <= 0):
            raise KilnValueError(f"layer {self.name!r}: invalid value for argument "
                                 f"`depth_multiplier`. Expected a strictly positive value. "
                                 f"Received depth_multiplier={depth_multiplier!r}")
        self.depth_multiplier = int(depth_multiplier)
        self.kernel_size = _int_tuple(kernel_size, n, "kernel_size", self.name)
        self.strides = _int_tuple(strides, n, "strides", self.name)
        self.dilation_rate = _int_tuple(dilation_rate, n, "dilation_rate", self.name)
        self.padding = _padding(padding, self.name)
        self.data_format = _channels_last(data_format, self.name, type(self).__name__,
                                          _LAYOUTS[n])
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.depthwise_initializer = depthwise_initializer
        self.bias_initializer = bias_initializer

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        depthwise = getattr(self, self.depthwise_name, None)
        _expect_image(self, shape, self.rank, depthwise.shape[-2] if self.built else None)
        span = tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))
        _window_fits(self, shape, span, self.padding, f"{type(self).__name__}")

    def _build_depthwise(self, channels: int) -> None:
        setattr(self, self.depthwise_name, self.add_weight(
            self.depthwise_name, (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer, regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint))

    def _build_bias(self, size: int) -> None:
        if self.use_bias:
            self.bias = self.add_weight("bias", (size,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def _depthwise(self, b: Any, x: Any, ctx: Any) -> Any:
        kernel = ctx.value(getattr(self, self.depthwise_name))
        one = (1,) * (2 - self.rank)
        if self.rank == 1:
            kernel = b.expand_dims(kernel, axes=(0,))
        y = b.depthwise_conv2d(_as_image(b, x, self.rank), kernel, strides=one + self.strides,
                               padding=self.padding, dilation=one + self.dilation_rate)
        return _from_image(b, y, self.rank)

    def _finish(self, b: Any, y: Any, ctx: Any) -> Any:
        if self.use_bias:
            y = b.add(y, ctx.value(self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **weight_options_config(self, "depthwise_regularizer", "bias_regularizer",
                                        "depthwise_constraint", "bias_constraint")}


class _DepthwiseConv(_DepthwiseBase):
    def build(self, input_shape: tuple) -> None:
        self._build_depthwise(input_shape[-1])
        self._build_bias(input_shape[-1] * self.depth_multiplier)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return self._finish(b, self._depthwise(b, x, ctx), ctx)


class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2-D convolution: each input channel convolved with its own
    `depth_multiplier` kernels; output = activation(depthwise_conv(input, kernel) + bias).

    Args: kernel_size, strides=(1, 1), padding="valid" or "same", depth_multiplier=1,
    data_format=None (channels_last only), dilation_rate=(1, 1), activation=None,
    use_bias=True, depthwise_initializer="glorot_uniform", bias_initializer="zeros",
    depthwise_regularizer, bias_regularizer, activity_regularizer, depthwise_constraint,
    bias_constraint.
    Weights: kernel (kh, kw, channels, depth_multiplier), bias (channels * depth_multiplier,).
    Input shape: (batch, rows, cols, channels), known rows and cols.
    Output: (batch, new_rows, new_cols, channels * depth_multiplier).
    """

    rank = 2

    def __init__(self, kernel_size: Any, strides: Any = (1, 1), padding: str = "valid",
                 depth_multiplier: int = 1, data_format: str | None = None,
                 dilation_rate: Any = (1, 1), activation: Any = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, bias_regularizer: Any = None,
                 depthwise_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         depthwise_constraint, bias_constraint, **kwargs)


class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1-D convolution over the steps (DepthwiseConv2D's on a height of one).

    Args and weights as DepthwiseConv2D's, with 1-D kernel_size, strides and dilation_rate.
    Input shape: (batch, steps, channels), a known number of steps.
    """

    rank = 1

    def __init__(self, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                 depth_multiplier: int = 1, data_format: str | None = None,
                 dilation_rate: Any = 1, activation: Any = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, bias_regularizer: Any = None,
                 depthwise_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         depthwise_constraint, bias_constraint, **kwargs)


class _SeparableConv(_DepthwiseBase):
    depthwise_name = "depthwise_kernel"

    def __init__(self, filters: int, kernel_size: Any, strides: Any, padding: str,
                 data_format: str | None, dilation_rate: Any, depth_multiplier: int,
                 activation: Any, use_bias: bool, depthwise_initializer: Any,
                 pointwise_initializer: Any, bias_initializer: Any, depthwise_regularizer: Any,
                 pointwise_regularizer: Any, bias_regularizer: Any, depthwise_constraint: Any,
                 pointwise_constraint: Any, bias_constraint: Any, **kwargs: Any):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         depthwise_constraint, bias_constraint, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or \
                filters <= 0:
            raise KilnValueError(f"layer {self.name!r}: invalid value for argument `filters`. "
                                 f"Expected a strictly positive value. Received: "
                                 f"filters={filters!r}")
        self.filters = int(filters)
        self.pointwise_initializer = pointwise_initializer
        set_weight_options(self, pointwise_regularizer=pointwise_regularizer,
                           pointwise_constraint=pointwise_constraint)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        self._build_depthwise(channels)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (*(1,) * self.rank, channels * self.depth_multiplier,
                                 self.filters), self.pointwise_initializer,
            regularizer=self.pointwise_regularizer, constraint=self.pointwise_constraint)
        self._build_bias(self.filters)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        y = self._depthwise(b, x, ctx)
        pointwise = ctx.value(self.pointwise_kernel)
        pointwise = b.reshape(pointwise, shape=pointwise.type.shape[-2:])
        return self._finish(b, b.matmul(y, pointwise), ctx)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
                **weight_options_config(self, "pointwise_regularizer", "pointwise_constraint")}


class SeparableConv2D(_SeparableConv):
    """Depthwise-separable 2-D convolution: a depthwise convolution (each channel on its own)
    then a pointwise 1 x 1 convolution mixing the channels into `filters`; far fewer weights
    than Conv2D for the same receptive field.

    Args: filters, kernel_size, strides=(1, 1), padding="valid" or "same",
    data_format=None (channels_last only), dilation_rate=(1, 1), depth_multiplier=1,
    activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
    pointwise_initializer="glorot_uniform", bias_initializer="zeros", and the depthwise /
    pointwise / bias regularizers and constraints, activity_regularizer.
    Weights: depthwise_kernel (kh, kw, channels, depth_multiplier), pointwise_kernel
    (1, 1, channels * depth_multiplier, filters), bias (filters,).
    Input shape: (batch, rows, cols, channels), known rows and cols.
    Output: (batch, new_rows, new_cols, filters).
    """

    rank = 2

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = (1, 1), depth_multiplier: int = 1, activation: Any = None,
                 use_bias: bool = True, depthwise_initializer: Any = "glorot_uniform",
                 pointwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, pointwise_regularizer: Any = None,
                 bias_regularizer: Any = None, depthwise_constraint: Any = None,
                 pointwise_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         pointwise_initializer, bias_initializer, depthwise_regularizer,
                         pointwise_regularizer, bias_regularizer, depthwise_constraint,
                         pointwise_constraint, bias_constraint, **kwargs)


class SeparableConv1D(_SeparableConv):
    """Depthwise-separable 1-D convolution over the steps (SeparableConv2D's on a height of
    one). Args and weights as SeparableConv2D's, with 1-D kernel_size, strides and
    dilation_rate. Input shape: (batch, steps, channels), a known number of steps.
    """

    rank = 1

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = 1, depth_multiplier: int = 1, activation: Any = None,
                 use_bias: bool = True, depthwise_initializer: Any = "glorot_uniform",
                 pointwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, pointwise_regularizer: Any = None,
                 bias_regularizer: Any = None, depthwise_constraint: Any = None,
                 pointwise_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, activation, use_bias, depthwise_initializer,
                         pointwise_initializer, bias_initializer, depthwise_regularizer,
                         pointwise_regularizer, bias_regularizer, depthwise_constraint,
                         pointwise_constraint, bias_constraint, **kwargs)
