"""Convolution and pooling layers in Keras's default layout, channels_last: images (batch,
rows, cols, channels) for Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D; sequences (batch, steps, channels) for Conv1D, MaxPooling1D,
AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D.

The windowed layers lower to the IR's NHWC conv2d / max_pool2d / avg_pool2d, whose "same"
padding is TensorFlow's (the smaller half of the padding before, the larger after) and whose
average pool divides by the real (unpadded) elements of each window, as Keras does. A 1-D
layer is its 2-D counterpart on a height of one: the input gets a unit axis (batch, 1,
steps, channels), the kernel (1, size, in, out), the window (1, size), and the unit axis is
squeezed away after, so every backend runs the same kernels and gradients. Conv1D's
padding="causal" pads (size - 1) * dilation zeros before the first step, as Keras does, then
convolves with "valid".
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
from kiln.ir.ops.nn import output_size


def _int_tuple(value: Any, n: int, name: str, layer: str,
               allow_zero: bool = False) -> tuple[int, ...]:
    """Keras's standardize_tuple: an int v means (v,) * n; every entry a positive int (or
    non-negative, with `allow_zero`)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * n
    what = f"layer {layer!r}: the `{name}` argument must be a tuple of {n} integers"
    try:
        items = tuple(value)
    except TypeError:
        raise KilnTypeError(f"{what}. Received: {name}={value!r}") from None
    if len(items) != n or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                  for v in items):
        raise KilnValueError(f"{what}. Received: {name}={value!r}")
    items = tuple(int(v) for v in items)
    if not all(v > 0 or (allow_zero and v == 0) for v in items):
        raise KilnValueError(f"{what}. Received: {name}={items} including values that do not "
                             f"satisfy `value {'>=' if allow_zero else '>'} 0`")
    return items


def _padding(value: Any, layer: str, allowed: tuple[str, ...] = ("valid", "same")) -> str:
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise KilnValueError(f"layer {layer!r}: the `padding` argument must be one of "
                             f"{', '.join(repr(a) for a in allowed)}. "
                             f"Received: padding={value!r}")
    return padding


def _channels_last(value: Any, layer: str, kind: str, layout: str) -> str:
    fmt = _data_format(value, layer)
    if fmt == "channels_first":
        raise KilnValueError(f"layer {layer!r}: kiln's {kind} supports only "
                             f"data_format='channels_last' {layout}; transpose the inputs to "
                             f"that layout. Received: data_format='channels_first'")
    return fmt


_LAYOUTS = {1: "(batch, steps, channels)", 2: "(batch, rows, cols, channels)"}


def _expect_rank(layer: Layer, shape: tuple, rank: int) -> None:
    """Keras's input_spec for `rank`-D layers: ndim = rank + 2."""
    if len(shape) != rank + 2:
        raise KilnValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                             f"expected ndim={rank + 2}, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")


def _expect_image(layer: Layer, shape: tuple, rank: int, channels: int | None) -> None:
    """Keras's input_spec for `rank`-D layers with a kernel: ndim = rank + 2 and a known
    channel axis, equal to the kernel's `channels` once built (None: not built yet)."""
    _expect_rank(layer, shape, rank)
    if shape[-1] is None:
        raise KilnValueError(f"layer {layer.name!r}: the channel dimension of the inputs "
                             f"should be defined. The input_shape received is {shape}, "
                             f"where axis -1 is the channel dimension, which found to be "
                             f"`None`")
    if channels is not None and shape[-1] != channels:
        raise KilnValueError(f"Input 0 of layer {layer.name!r} is incompatible with the "
                             f"layer: expected axis -1 of input shape to have value "
                             f"{channels}, but received input with shape {shape}")


def _window_fits(layer: Layer, shape: tuple, window: tuple[int, ...], padding: str,
                 what: str) -> None:
    """Every spatial size known (the IR's windowed ops are compiled for static sizes); with
    'valid' padding each must hold at least one window."""
    spatial = shape[1:1 + len(window)]
    if None in spatial:
        sizes = "a known number of steps" if len(window) == 1 else "known rows and cols"
        raise KilnValueError(f"layer {layer.name!r}: kiln's {type(layer).__name__} needs "
                             f"{sizes}; give the Input a fixed shape. Received input "
                             f"shape {shape}")
    if padding != "valid":
        return
    for size, span in zip(spatial, window):
        if size is not None and size < span:
            raise KilnValueError(f"layer {layer.name!r}: one of the dimensions in the output is "
                                 f"<= 0 due to downsampling in {what}. Consider increasing the "
                                 f"input size. Received input shape {shape}, which with a "
                                 f"window of {window} and padding='valid' gives no output")


def _as_image(b: Any, x: Any, rank: int) -> Any:
    """A sequence (batch, steps, channels) as an image of height one; an image as it is."""
    return b.expand_dims(x, axes=(1,)) if rank == 1 else x


def _from_image(b: Any, y: Any, rank: int) -> Any:
    return b.squeeze(y, axes=(1,)) if rank == 1 else y


class _Conv(Layer):
    """What Conv1D and Conv2D share: arguments, checks, weights, lowering, config."""

    rank = 2
    paddings: tuple[str, ...] = ("valid", "same")
    transposed = False

    def __init__(self, filters: int, kernel_size: Any, strides: Any, padding: str,
                 data_format: str | None, dilation_rate: Any, groups: int, activation: Any,
                 use_bias: bool, kernel_initializer: Any, bias_initializer: Any,
                 kernel_regularizer: Any, bias_regularizer: Any, kernel_constraint: Any,
                 bias_constraint: Any, **kwargs: Any):
        super().__init__(**kwargs)
        kind, n = type(self).__name__, self.rank
        set_weight_options(self, kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        if (isinstance(filters, bool) or not isinstance(filters, (int, np.integer))
                or filters <= 0):
            raise KilnValueError(f"layer {self.name!r}: invalid value for argument `filters`. "
                                 f"Expected a strictly positive value. Received: "
                                 f"filters={filters!r}")
        self.filters = int(filters)
        self.kernel_size = _int_tuple(kernel_size, n, "kernel_size", self.name)
        self.strides = _int_tuple(strides, n, "strides", self.name)
        self.dilation_rate = _int_tuple(dilation_rate, n, "dilation_rate", self.name)
        self.padding = _padding(padding, self.name, self.paddings)
        self.data_format = _channels_last(data_format, self.name, kind, _LAYOUTS[n])
        if max(self.strides) > 1 and max(self.dilation_rate) > 1 and not self.transposed:
            raise KilnValueError(f"layer {self.name!r}: `strides > 1` not supported in "
                                 f"conjunction with `dilation_rate > 1`. Received: "
                                 f"strides={self.strides} and "
                                 f"dilation_rate={self.dilation_rate}")
        if groups != 1:
            raise KilnValueError(f"layer {self.name!r}: kiln's {kind} supports only groups=1. "
                                 f"Received: groups={groups!r}")
        self.groups = groups
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    @property
    def _span(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        _expect_image(self, shape, self.rank, self.kernel.shape[-2] if self.built else None)
        _window_fits(self, shape, self._span, self.padding, f"conv{self.rank}d")

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
        padding, kernel = self.padding, ctx.value(self.kernel)
        if padding == "causal":
            x = b.pad(x, pads=((0, 0), (self._span[0] - 1, 0), (0, 0)), value=0.0,
                      name="causal_pad")
            padding = "valid"
        one = (1,) * (2 - self.rank)
        if self.rank == 1:
            kernel = b.expand_dims(kernel, axes=(0,))
        y = b.conv2d(_as_image(b, x, self.rank), kernel, strides=one + self.strides,
                     padding=padding, dilation=one + self.dilation_rate)
        y = _from_image(b, y, self.rank)
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


class Conv2D(_Conv):
    """2-D convolution: output = activation(conv2d(input, kernel) + bias).

    Args: filters, kernel_size (int or pair), strides=(1, 1), padding="valid" or "same",
    data_format=None (channels_last only), dilation_rate=(1, 1), groups=1 (only 1),
    activation=None, use_bias=True, kernel_initializer="glorot_uniform",
    bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
    activity_regularizer=None, kernel_constraint=None, bias_constraint=None.
    Weights: kernel (kh, kw, in_channels, filters), bias (filters,).
    Input shape: (batch, rows, cols, channels). Output: (batch, new_rows, new_cols, filters).
    """

    rank = 2

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = (1, 1), groups: int = 1, activation: Any = None,
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, kernel_constraint,
                         bias_constraint, **kwargs)


class Conv1D(_Conv):
    """1-D convolution over the steps: output = activation(conv1d(input, kernel) + bias).

    Args: filters, kernel_size (int or tuple of one), strides=1, padding="valid", "same" or
    "causal", data_format=None (channels_last only), dilation_rate=1, groups=1 (only 1),
    activation=None, use_bias=True, kernel_initializer="glorot_uniform",
    bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
    activity_regularizer=None, kernel_constraint=None, bias_constraint=None.
    Weights: kernel (kernel_size, in_channels, filters), bias (filters,).
    Input shape: (batch, steps, channels), a known number of steps.
    Output: (batch, new_steps, filters).
    """

    rank = 1
    paddings = ("valid", "same", "causal")

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = 1, groups: int = 1, activation: Any = None,
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, kernel_constraint,
                         bias_constraint, **kwargs)


def _transposed_geometry(size: int, kernel: int, stride: int, dilation: int, padding: str,
                         output_padding: int | None) -> tuple[int, int]:
    """One axis of Keras's transposed convolution: (output size, the output position of the
    kernel's first tap at input 0, i.e. the padding the forward convolution would have had
    before the first element). Keras (its JAX form) dilates the input by the stride, pads it
    with (left, right) zeros and correlates with the flipped kernel: output j reads
    input i through kernel tap j - i * stride + (span - 1 - left)."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        left, right = span - 1, span - 1 + extra
    else:
        total = (stride + span - 2 if output_padding is None
                 else span + span % 2 - 2 + output_padding)
        left = min(total // 2 + total % 2, span - 1)
        right = total - left
    return (size - 1) * stride + 1 + left + right - (span - 1), span - 1 - left


def _transposed_conv(b: Any, dy: Any, kernel: Any, strides: tuple[int, int],
                     dilation: tuple[int, int], geometry: list[tuple[int, int]],
                     layer: str) -> Any:
    """The transposed convolution of `dy` with output sizes and offsets `geometry` (one
    (size, before) per axis), as the IR's conv2d_grad_input with the forward convolution's
    padding that has this geometry. Every geometry Keras defines (output_padding below the
    stride) is conv2d's "valid" or TensorFlow "same" one: checked over sizes 1-6, kernels
    1-5, strides 1-4, dilations 1-3, both paddings and every output_padding."""
    sizes = tuple(size for size, _ in geometry)
    inputs = dy.type.shape[1:3]
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel.type.shape[:2], dilation))
    for padding in ("valid", "same"):
        fits = True
        for a in (0, 1):
            if padding == "valid" and sizes[a] < span[a]:
                fits = False
                break
            out, (before, _) = output_size(sizes[a], kernel.type.shape[a], strides[a],
                                           dilation[a], padding)
            fits = fits and out == inputs[a] and before == geometry[a][1]
        if fits:
            return b.conv2d_grad_input(dy, kernel, input_size=sizes, strides=strides,
                                       padding=padding, dilation=dilation)
    raise KilnValueError(f"layer {layer!r}: kiln has no conv2d_grad_input geometry for an "
                         f"output of {sizes} offset by {[g[1] for g in geometry]} from an "
                         f"input of {tuple(inputs)}; please report this shape")


class _ConvTranspose(_Conv):
    """What Conv1DTranspose and Conv2DTranspose share: a Conv's arguments and weights with
    the kernel's channel axes swapped, (..., filters, in_channels), and output_padding."""

    transposed = True

    def __init__(self, filters: int, kernel_size: Any, strides: Any, padding: str,
                 output_padding: Any, data_format: str | None, dilation_rate: Any,
                 *args: Any, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         1, *args, **kwargs)
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = _int_tuple(output_padding, self.rank, "output_padding",
                                             self.name, allow_zero=True)
            for op, stride in zip(self.output_padding, self.strides):
                if op >= stride:
                    raise KilnValueError(f"layer {self.name!r}: each `output_padding` must be "
                                         f"smaller than its stride. Received: "
                                         f"output_padding={self.output_padding}, "
                                         f"strides={self.strides}")

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        _expect_image(self, shape, self.rank, self.kernel.shape[-1] if self.built else None)
        _window_fits(self, shape, (1,) * self.rank, "same", f"conv{self.rank}d_transpose")

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight("kernel", (*self.kernel_size, self.filters,
                                                 input_shape[-1]), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        kernel = ctx.value(self.kernel)
        one = (1,) * (2 - self.rank)
        if self.rank == 1:
            kernel = b.expand_dims(kernel, axes=(0,))
        x = _as_image(b, x, self.rank)
        output_padding = self.output_padding or (None,) * self.rank
        geometry = [_transposed_geometry(size, k, s, d, self.padding, op)
                    for size, k, s, d, op in zip(x.type.shape[1 + len(one):3],
                                                 self.kernel_size, self.strides,
                                                 self.dilation_rate, output_padding)]
        y = _transposed_conv(b, x, kernel, one + self.strides, one + self.dilation_rate,
                             [(1, 0)] * len(one) + geometry, self.name)
        y = _from_image(b, y, self.rank)
        if self.use_bias:
            y = b.add(y, ctx.value(self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["groups"]
        return {**config, "output_padding": self.output_padding}


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution (the gradient of Conv2D with respect to its input, often
    called deconvolution): each input pixel spreads its kernel-weighted values over a
    strides-sized step of the output. output = activation(conv2d_transpose(input, kernel) +
    bias).

    Args: filters, kernel_size, strides=(1, 1), padding="valid" or "same",
    output_padding=None (per axis, < stride: extra rows/cols at the end),
    data_format=None (channels_last only), dilation_rate=(1, 1), activation=None,
    use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", and the
    kernel/bias regularizers and constraints and activity_regularizer.
    Weights: kernel (kh, kw, filters, in_channels), bias (filters,).
    Input shape: (batch, rows, cols, channels), known rows and cols. Output: (batch,
    new_rows, new_cols, filters), new_rows = rows * stride ("same") or
    (rows - 1) * stride + max(kernel, stride) ("valid"), plus output_padding when given.
    """

    rank = 2

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", output_padding: Any = None,
                 data_format: str | None = None, dilation_rate: Any = (1, 1),
                 activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution over the steps (Conv2DTranspose's on a height of one).

    Args: filters, kernel_size, strides=1, padding="valid" or "same", output_padding=None,
    data_format=None (channels_last only), dilation_rate=1, activation=None, use_bias=True,
    and Conv1D's initializers, regularizers and constraints.
    Weights: kernel (kernel_size, filters, in_channels), bias (filters,).
    Input shape: (batch, steps, channels), a known number of steps.
    """

    rank = 1

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", output_padding: Any = None,
                 data_format: str | None = None, dilation_rate: Any = 1,
                 activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)


class _Pooling(Layer):
    """A window slid over the spatial axes of each channel; strides=None means pool_size."""

    op = ""
    rank = 2

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        n = self.rank
        self.pool_size = _int_tuple(pool_size, n, "pool_size", self.name)
        self.strides = self.pool_size if strides is None else _int_tuple(strides, n, "strides",
                                                                         self.name)
        self.padding = _padding(padding, self.name)
        self.data_format = _channels_last(data_format, self.name, type(self).__name__,
                                          _LAYOUTS[n])

    def check_input_shapes(self, shapes: list) -> None:
        _expect_rank(self, shapes[0], self.rank)
        _window_fits(self, shapes[0], self.pool_size, self.padding, "pooling")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        one = (1,) * (2 - self.rank)
        y = b.op(self.op, _as_image(b, x, self.rank), pool_size=one + self.pool_size,
                 strides=one + self.strides, padding=self.padding)
        return _from_image(b, y, self.rank)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


class MaxPooling2D(_Pooling):
    """The maximum of each pool_size window (default (2, 2)), moved by strides (None: the
    pool size), padding "valid" or "same".

    Input shape: (batch, rows, cols, channels). Output: (batch, pooled_rows, pooled_cols,
    channels).
    """

    op = "max_pool2d"


class AveragePooling2D(_Pooling):
    """The mean of each pool_size window (default (2, 2)), moved by strides (None: the pool
    size); with padding="same" a border window averages only its real elements.

    Input shape: (batch, rows, cols, channels). Output: (batch, pooled_rows, pooled_cols,
    channels).
    """

    op = "avg_pool2d"


class MaxPooling1D(_Pooling):
    """The maximum of each pool_size window of steps (default 2), moved by strides (None:
    the pool size), padding "valid" or "same".

    Input shape: (batch, steps, channels). Output: (batch, pooled_steps, channels).
    """

    op = "max_pool2d"
    rank = 1


class AveragePooling1D(_Pooling):
    """The mean of each pool_size window of steps (default 2), moved by strides (None: the
    pool size); with padding="same" a border window averages only its real elements.

    Input shape: (batch, steps, channels). Output: (batch, pooled_steps, channels).
    """

    op = "avg_pool2d"
    rank = 1


class _GlobalPooling(Layer):
    op = ""
    rank = 2

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, self.name)
        self.keepdims = bool(keepdims)

    def check_input_shapes(self, shapes: list) -> None:
        _expect_rank(self, shapes[0], self.rank)

    def __call__(self, inputs: Any, mask: Any = None, **kwargs: Any) -> Any:
        if mask is not None:
            raise KilnValueError(f"layer {self.name!r}: kiln takes a mask from the input's "
                                 f"Keras mask (Embedding(mask_zero=True), Masking), not as "
                                 f"mask=. Received: mask={mask!r}")
        return super().__call__(inputs, **kwargs)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        first = 1 if self.data_format == "channels_last" else 2
        return b.op(self.op, x, axes=tuple(range(first, first + self.rank)),
                    keepdims=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling):
    """The mean over rows and cols of each channel.

    Args: data_format=None (channels_last), keepdims=False.
    Input shape: (batch, rows, cols, channels). Output: (batch, channels), or
    (batch, 1, 1, channels) with keepdims.
    """

    op = "mean"


class GlobalMaxPooling2D(_GlobalPooling):
    """The maximum over rows and cols of each channel.

    Args: data_format=None (channels_last), keepdims=False.
    Input shape: (batch, rows, cols, channels). Output: (batch, channels), or
    (batch, 1, 1, channels) with keepdims.
    """

    op = "max"


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over the steps of each channel.

    Args: data_format=None (channels_last: steps on axis 1; channels_first: on axis 2),
    keepdims=False. Input shape: (batch, steps, channels). Output: (batch, channels), or
    (batch, 1, channels) with keepdims. With a Keras mask on its input (batch, steps), the
    mean of the steps that count (NaN where none does, as in Keras).
    """

    op = "mean"
    rank = 1
    supports_masking = True  # its output has no mask: the steps are pooled away
    takes_mask = True

    def lower(self, b, x, ctx, keras_mask=None, **kwargs):  # noqa: ANN001, ANN201
        mask = None if keras_mask is None else keras_mask[0]
        if mask is None:
            return super().lower(b, x, ctx)
        # Keras's masked mean: the sum over the steps that count over their number.
        steps = 1 if self.data_format == "channels_last" else 2
        kept = b.expand_dims(mask, axes=(3 - steps,))
        total = b.sum(b.where(kept, x, 0.0), axes=(steps,), keepdims=self.keepdims)
        count = b.sum(b.cast(kept, dtype=x.type.dtype), axes=(steps,), keepdims=self.keepdims)
        return b.div(total, count)

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        return []


class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum over the steps of each channel.

    Args: data_format=None (channels_last: steps on axis 1; channels_first: on axis 2),
    keepdims=False. Input shape: (batch, steps, channels). Output: (batch, channels), or
    (batch, 1, channels) with keepdims.
    """

    op = "max"
    rank = 1
