"""Reshaping layers, as Keras 3's: Permute, RepeatVector, ZeroPadding1D/2D, Cropping1D/2D,
UpSampling1D/2D.

Each lowers to the IR's movement ops (transpose, pad, slice, broadcast_to, reshape) and, for
bilinear up-sampling, one matmul per spatial axis with a constant interpolation matrix, so
every backend runs and differentiates them. The axes they resize need known sizes: the IR
cannot name a size like "steps + 2".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras.layer import Layer
from kiln.frontends.keras.layers.core import _data_format
from kiln.ir import KilnTypeError, KilnValueError


def _count(value: Any, name: str, layer: str, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            value < (1 if positive else 0):
        kind = "positive" if positive else "non-negative"
        raise KilnValueError(f"layer {layer!r}: expected `{name}` as a {kind} int. "
                             f"Received: {name}={value!r}")
    return int(value)


def _pair(value: Any, name: str, layer: str, positive: bool = False) -> tuple[int, int]:
    """An int v as (v, v), or a pair of ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise KilnValueError(f"layer {layer!r}: the `{name}` argument must be an int or a "
                             f"tuple of 2 ints. Received: {name}={value!r}")
    return (_count(value[0], name, layer, positive), _count(value[1], name, layer, positive))


def _pairs(value: Any, name: str, layer: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's 2-D padding/cropping argument: an int for all four sides, (rows, cols) for
    symmetric amounts, or ((top, bottom), (left, right))."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = _count(value, name, layer)
        return (n, n), (n, n)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise KilnValueError(f"layer {layer!r}: `{name}` should be either an int, a tuple of "
                             f"2 ints (symmetric_height, symmetric_width), or a tuple of 2 "
                             f"tuples of 2 ints ((top, bottom), (left, right)). "
                             f"Received: {name}={value!r}")
    return _pair(value[0], name, layer), _pair(value[1], name, layer)


def _spatial_axes(layer: Layer, rank: int) -> tuple[int, ...]:
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return tuple(range(2, 2 + rank)) if first else tuple(range(1, 1 + rank))


def _check_spatial(layer: Layer, shape: tuple, rank: int) -> tuple[int, ...]:
    """The input's rank is rank + 2 and the sizes of its spatial axes known; returns them."""
    if len(shape) != rank + 2:
        raise KilnValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                             f"expected ndim={rank + 2}, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")
    axes = _spatial_axes(layer, rank)
    sizes = tuple(shape[a] for a in axes)
    if None in sizes:
        what = "a known number of steps" if rank == 1 else "known rows and cols"
        raise KilnValueError(f"layer {layer.name!r}: kiln's {type(layer).__name__} needs "
                             f"{what}; give the Input a fixed shape. Received input "
                             f"shape {shape}")
    return sizes


class Permute(Layer):
    """Permutes the non-batch axes: `dims` lists them (counted from 1) in their new order.

    Args: dims, a permutation of 1..rank-1. Input shape: (batch, ...) of rank len(dims) + 1.
    Output shape: the input's, axes reordered.
    """

    def __init__(self, dims: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        try:
            dims = tuple(dims)
        except TypeError:
            raise KilnTypeError(f"layer {self.name!r}: expected dims as a tuple of ints. "
                                f"Received: dims={dims!r}") from None
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise KilnValueError(f"layer {self.name!r}: invalid permutation argument `dims`: "
                                 f"`dims` should contain consecutive integers starting from "
                                 f"1. Received: dims={dims}")
        self.dims = dims

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes[0]) != len(self.dims) + 1:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected ndim={len(self.dims) + 1}, found "
                                 f"ndim={len(shapes[0])}. Full shape received: {shapes[0]}")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.transpose(x, perm=(0, *self.dims))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """Repeats a batch of vectors n times: (batch, features) -> (batch, n, features).

    Args: n, a positive int.
    """

    def __init__(self, n: int, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise KilnTypeError(f"layer {self.name!r}: expected an integer value for `n`. "
                                f"Received: n={n!r}")
        self.n = _count(n, "n", self.name, positive=True)

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes[0]) != 2:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected ndim=2, found ndim={len(shapes[0])}. "
                                 f"Full shape received: {shapes[0]}")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        batch, features = x.type.shape
        return b.broadcast_to(b.expand_dims(x, axes=(1,)), shape=(batch, self.n, features))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


class _Padding(Layer):
    """ZeroPadding1D/2D: zeros before and after each spatial axis."""

    rank = 2

    def check_input_shapes(self, shapes: list) -> None:
        _check_spatial(self, shapes[0], self.rank)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        pads = [(0, 0)] * x.type.rank
        for axis, amounts in zip(_spatial_axes(self, self.rank), self.padding):
            pads[axis] = amounts
        return b.pad(x, pads=tuple(pads), value=0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding,
                "data_format": self.data_format}


class ZeroPadding1D(_Padding):
    """Adds zero steps at the start and end of a sequence.

    Args: padding=1, an int for both ends or (start, end); data_format=None (channels_last:
    (batch, steps, features); channels_first: (batch, features, steps)).
    Output shape: steps + start + end.
    """

    rank = 1

    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = (_pair(padding, "padding", self.name),)
        self.data_format = _data_format(data_format, self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding[0]}


class ZeroPadding2D(_Padding):
    """Adds rows and columns of zeros around an image.

    Args: padding=(1, 1): an int for every side, (rows, cols) for symmetric amounts, or
    ((top, bottom), (left, right)); data_format=None (channels_last).
    """

    def __init__(self, padding: Any = (1, 1), data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, "padding", self.name)
        self.data_format = _data_format(data_format, self.name)


class _Cropping(Layer):
    """Cropping1D/2D: drops elements from the start and end of each spatial axis."""

    rank = 2

    def check_input_shapes(self, shapes: list) -> None:
        sizes = _check_spatial(self, shapes[0], self.rank)
        for size, (start, end) in zip(sizes, self.cropping):
            if start + end >= size:
                raise KilnValueError(f"layer {self.name!r}: `cropping` {self.cropping} must "
                                     f"leave something of the input. Received: "
                                     f"input_shape={shapes[0]}")

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        begin: list = [None] * x.type.rank
        end: list = [None] * x.type.rank
        for axis, (start, stop) in zip(_spatial_axes(self, self.rank), self.cropping):
            begin[axis], end[axis] = start, x.type.shape[axis] - stop
        return b.slice(x, begin=tuple(begin), end=tuple(end))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping}


class Cropping1D(_Cropping):
    """Drops steps at the start and end of a sequence (batch, steps, features).

    Args: cropping=(1, 1), an int for both ends or (start, end).
    """

    rank = 1

    def __init__(self, cropping: Any = (1, 1), **kwargs: Any):
        super().__init__(**kwargs)
        self.cropping = (_pair(cropping, "cropping", self.name),)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping[0]}


class Cropping2D(_Cropping):
    """Drops rows and columns at the edges of an image.

    Args: cropping=((0, 0), (0, 0)): an int for every side, (rows, cols) for symmetric
    amounts, or ((top, bottom), (left, right)); data_format=None (channels_last).
    """

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, "cropping", self.name)
        self.data_format = _data_format(data_format, self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


def _repeat(b: Any, x: Any, axis: int, times: int) -> Any:
    """Each element along `axis` `times` times in a row (NumPy's repeat): a unit axis after
    it, broadcast to `times`, merged back."""
    if times == 1:
        return x
    shape = x.type.shape
    wide = b.broadcast_to(b.expand_dims(x, axes=(axis + 1,)),
                          shape=(*shape[:axis + 1], times, *shape[axis + 1:]))
    return b.reshape(wide, shape=(*shape[:axis], shape[axis] * times, *shape[axis + 1:]))


def bilinear_matrix(size: int, factor: int) -> np.ndarray:
    """The (size * factor, size) matrix of bilinear up-sampling with half-pixel centres, as
    torch's interpolate (align_corners=False) and jax.image.resize compute it: output i reads
    the input at (i + 0.5) / factor - 0.5, clamped to the first and last elements."""
    out = np.zeros((size * factor, size), np.float64)
    for i in range(size * factor):
        source = max((i + 0.5) / factor - 0.5, 0.0)
        low = min(int(np.floor(source)), size - 1)
        high = min(low + 1, size - 1)
        weight = source - low
        out[i, low] += 1.0 - weight
        out[i, high] += weight
    return out


def _interpolate(b: Any, x: Any, axis: int, factor: int) -> Any:
    """Bilinear up-sampling along `axis`: that axis moved last, times the interpolation
    matrix, moved back."""
    if factor == 1:
        return x
    rank = x.type.rank
    order = (*[i for i in range(rank) if i != axis], axis)
    back = tuple(int(i) for i in np.argsort(order))
    matrix = bilinear_matrix(x.type.shape[axis], factor).T.astype(x.type.dtype)
    moved = b.matmul(b.transpose(x, perm=order), b.constant(matrix))
    return b.transpose(moved, perm=back)


class _UpSampling(Layer):
    """UpSampling1D/2D: every spatial element repeated `size` times along its axis."""

    rank = 2
    interpolation = "nearest"

    def check_input_shapes(self, shapes: list) -> None:
        _check_spatial(self, shapes[0], self.rank)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        grow = _repeat if self.interpolation == "nearest" else _interpolate
        for axis, factor in zip(_spatial_axes(self, self.rank), self.size):
            x = grow(b, x, axis, factor)
        return x


class UpSampling1D(_UpSampling):
    """Repeats each step `size` times: (batch, steps, features) -> (batch, steps * size,
    features).

    Args: size=2, a positive int.
    """

    rank = 1

    def __init__(self, size: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = (_count(size, "size", self.name, positive=True),)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size[0]}


class UpSampling2D(_UpSampling):
    """Scales an image up by integer factors: rows repeated size[0] times, cols size[1] times
    ("nearest"), or interpolated ("bilinear", half-pixel centres, as Keras's resize).

    Args: size=(2, 2), an int or a pair; data_format=None (channels_last);
    interpolation="nearest" or "bilinear".
    """

    def __init__(self, size: Any = (2, 2), data_format: str | None = None,
                 interpolation: str = "nearest", **kwargs: Any):
        super().__init__(**kwargs)
        self.size = _pair(size, "size", self.name, positive=True)
        self.data_format = _data_format(data_format, self.name)
        if interpolation not in ("nearest", "bilinear"):
            raise KilnValueError(f"layer {self.name!r}: kiln's UpSampling2D supports "
                                 f"interpolation='nearest' or 'bilinear'. Received: "
                                 f"interpolation={interpolation!r}")
        self.interpolation = interpolation

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}
