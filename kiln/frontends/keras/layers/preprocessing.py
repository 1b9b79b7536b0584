"""Preprocessing and image augmentation layers, as Keras 3's: Rescaling, Normalization (with
adapt), CenterCrop, Resizing, RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness and RandomCrop.

The geometric layers lower to the IR's affine_transform, whose resampling (bilinear or
nearest; fill modes reflect, wrap, constant, nearest) is Keras 3's, bit for bit on the same
transform. The random layers are the identity at inference and draw, in training, from the
model's one seed state, each call on streams of its own (as Dropout does): the same
distributions as Keras's, other numbers. A factor range of one value, (f, f), draws exactly
f, so such a layer computes what Keras computes.

Images are NHWC (channels_last) or NCHW (channels_first) with a batch axis and a static
height and width. Where Keras 3.15 differs from its own documentation, kiln does what the
documentation says: RandomCrop at inference crops the centre and resizes to its target (Keras
3.15 returns the input uncropped, of another shape than its own output shape), and an unknown
RandomFlip mode is an error (Keras flips nothing). Integer images come out float in every
layer here (Keras keeps uint8 in Resizing, RandomBrightness and at inference in RandomContrast
and RandomCrop).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from kiln.frontends.keras.layer import Layer
from kiln.frontends.keras.layers.core import _data_format
from kiln.ir import KilnValueError

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")
_EPSILON = 1e-7  # Keras's backend.epsilon(): Normalization's floor on the deviation


def _training(ctx: Any, training: Any) -> bool:
    """Whether an augmentation layer augments: training= given, else the graph's mode, or a
    model called on arrays without training= (Keras's augmentation layers default to
    training=True there)."""
    if training is not None:
        return bool(training)
    return ctx.training or ctx.augmenting


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def _base_factor(layer: str, value: Any, name: str = "factor",
                 bounds: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, float]:
    """Keras's BaseImagePreprocessingLayer._set_factor: a number f gives (max(-|f|, lo), |f|),
    a pair is sorted (rejected only when it lies wholly outside the bounds)."""
    lo, hi = bounds
    message = (f"layer {layer!r}: expected {name} as a number in [{lo}, {hi}] or a tuple of "
               f"two numbers. Received: {name}={value!r}")
    if isinstance(value, tuple | list):
        if len(value) != 2 or not all(_number(v) for v in value):
            raise KilnValueError(message)
        if value[0] > hi or value[1] < lo:
            raise KilnValueError(message)
        low, high = sorted(float(v) for v in value)
        return low, high
    if not _number(value) or not lo <= value <= hi:
        raise KilnValueError(message)
    value = abs(float(value))
    return max(-value, lo), value


def _span_factor(layer: str, value: Any, name: str, open_below: bool) -> tuple[float, float]:
    """RandomZoom's and RandomTranslation's factors: every value in (-1, 1] (zoom) or
    [-1, 1] (translation); a number f gives (-|f|, |f|), a pair is sorted."""
    below = "(-1, 1]" if open_below else "[-1, 1]"
    values = list(value) if isinstance(value, tuple | list) else [value]
    ok = (len(values) == (2 if isinstance(value, tuple | list) else 1)
          and all(_number(v) and v <= 1 and (v > -1 if open_below else v >= -1)
                  for v in values))
    if not ok:
        raise KilnValueError(f"layer {layer!r}: expected {name} as a number in {below} or a "
                             f"tuple of two. Received: {name}={value!r}")
    if len(values) == 2:
        low, high = sorted(float(v) for v in values)
        return low, high
    return -abs(float(values[0])), abs(float(values[0]))


def _choice(layer: str, value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise KilnValueError(f"layer {layer!r}: expected {name} in {allowed}. "
                             f"Received: {name}={value!r}")
    return value


def _size_arg(layer: str, height: Any, width: Any) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
            raise KilnValueError(f"layer {layer!r}: expected {name} as a positive int. "
                                 f"Received: {name}={v!r}")
    return int(height), int(width)


def aspect_window(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred window of `size` with the target's aspect ratio (Keras's
    smart_resize and crop_to_aspect_ratio): (top, left, height, width)."""
    (h, w), (th, tw) = size, target
    crop_h = max(min(h, int(w * th / tw)), 1)
    crop_w = max(min(w, int(h * tw / th)), 1)
    return int((h - crop_h) / 2), int((w - crop_w) / 2), crop_h, crop_w


def aspect_padding(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The rows and columns added on each side of an image of `size` to give it the
    target's aspect ratio (Keras's pad_to_aspect_ratio: the padding split evenly, an odd
    surplus dropped)."""
    (h, w), (th, tw) = size, target
    pad_h, pad_w = max(h, int(w * th / tw)), max(w, int(h * tw / th))
    return int((pad_h - h) / 2), int((pad_w - w) / 2)


class _ImageLayer(Layer):
    """What the image layers share: the data format, the images' check, the cast to the
    layer's dtype, and resampling through affine_transform (in NHWC)."""

    #: A random augmentation: it augments in a model called on arrays without training=,
    #: as Keras's call(training=True) default makes it (LoweringContext.augmenting).
    augments = False
    #: The rank of a per-image draw (_draw): (N, 1) for an affine row's entry.
    draw_rank = 2

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, self.name)

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if len(shape) != 4:
            raise KilnValueError(f"layer {self.name!r}: expected images of rank 4 (batch, "
                                 f"height, width, channels). Received: input shape {shape}")
        if any(d is None for d in self._hw(shape)):
            raise KilnValueError(f"layer {self.name!r}: expected a static height and width. "
                                 f"Received: input shape {shape}")

    def _hw(self, shape: Any) -> tuple[Any, Any]:
        return (shape[1], shape[2]) if self.data_format == "channels_last" else (shape[2],
                                                                                 shape[3])

    def _float(self, b: Any, x: Any) -> Any:
        return x if x.type.dtype == self.dtype else b.cast(x, dtype=self.dtype)

    def _uniform(self, b: Any, ctx: Any, shape: tuple, low: float, high: float) -> Any:
        """A uniform draw of `shape` in [low, high), on a stream of its own."""
        key, stream = ctx.random_stream(self)
        return b.uniform(key, shape=shape, low=low, high=high, dtype=self.dtype, stream=stream)

    def _draw(self, b: Any, ctx: Any, x: Any, low: float, high: float) -> Any:
        """One uniform draw per image of x, shaped (N, 1, ...) to draw_rank."""
        shape = (x.type.shape[0],) + (1,) * (self.draw_rank - 1)
        return self._uniform(b, ctx, shape, low, high)

    def _nhwc(self, b: Any, x: Any) -> Any:
        return x if self.data_format == "channels_last" else b.transpose(x, perm=(0, 2, 3, 1))

    def _back(self, b: Any, y: Any) -> Any:
        return y if self.data_format == "channels_last" else b.transpose(y, perm=(0, 3, 1, 2))

    def _resample(self, b: Any, x: Any, rows: list, out_size: tuple[int, int] | None = None,
                  interpolation: str = "bilinear", fill_mode: str = "nearest",
                  fill_value: float = 0.0) -> Any:
        """affine_transform of x (in the layer's format) by per-image rows [a0 .. b2], each
        an (N, 1) value or a number."""
        images = self._nhwc(b, x)
        batch = images.type.shape[0]
        columns = [b.broadcast_to(b.constant(float(r), dtype=images.type.dtype),
                                  shape=(batch, 1)) if isinstance(r, float | int) else r
                   for r in rows]
        transform = b.concat(*columns, axis=1, name="transform")
        out = b.affine_transform(images, transform, interpolation=interpolation,
                                 fill_mode=fill_mode, fill_value=float(fill_value),
                                 output_size=out_size)
        return self._back(b, out)

    def _resize(self, b: Any, x: Any, size: tuple[int, int], interpolation: str = "bilinear",
                ) -> Any:
        """x resized to `size` with half-pixel centres, as torch's interpolate
        (align_corners=False, no antialias), clamped at the edges."""
        h, w = self._hw(x.type.shape)
        if interpolation == "nearest":  # torch's nearest-exact: floor((i + 0.5) * scale)
            rows = np.minimum(((np.arange(size[0]) + 0.5) * (h / size[0])).astype(np.int64),
                              h - 1)
            cols = np.minimum(((np.arange(size[1]) + 0.5) * (w / size[1])).astype(np.int64),
                              w - 1)
            h_axis, w_axis = (1, 2) if self.data_format == "channels_last" else (2, 3)
            x = b.gather(x, b.constant(rows.astype(np.int32)), axis=h_axis)
            return b.gather(x, b.constant(cols.astype(np.int32)), axis=w_axis)
        sh, sw = h / size[0], w / size[1]
        return self._resample(b, x, [sw, 0.0, 0.5 * sw - 0.5, 0.0, sh, 0.5 * sh - 0.5],
                              out_size=size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class _RandomAffine(_ImageLayer):
    """RandomRotation, RandomZoom and RandomTranslation: per-image affine maps, drawn."""

    augments = True

    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.fill_mode = _choice(self.name, fill_mode, "fill_mode", _FILL_MODES)
        self.interpolation = _choice(self.name, interpolation, "interpolation",
                                     _INTERPOLATIONS)
        if not _number(fill_value):
            raise KilnValueError(f"layer {self.name!r}: expected a number as fill_value. "
                                 f"Received: fill_value={fill_value!r}")
        self.seed = seed
        self.fill_value = float(fill_value)

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        x = self._float(b, x)
        if not _training(ctx, training):
            return x
        return self._resample(b, x, self._rows(b, ctx, x), interpolation=self.interpolation,
                              fill_mode=self.fill_mode, fill_value=self.fill_value)

    def _rows(self, b: Any, ctx: Any, x: Any) -> list:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "seed": self.seed,
                "fill_value": self.fill_value}


class RandomRotation(_RandomAffine):
    """In training, turns each image about its centre by an angle drawn uniformly from
    [factor[0], factor[1]] x 360 degrees (counter-clockwise for a positive angle).

    Args: factor, a fraction of a full turn: a number f for (-f, f) or a (low, high) pair;
    fill_mode "reflect" (default), "wrap", "constant" or "nearest"; interpolation "bilinear"
    or "nearest"; seed (accepted: kiln draws from the model's seed state); fill_value for
    "constant"; data_format. Output: float images of the input's shape.
    """

    def __init__(self, factor: Any, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _base_factor(self.name, factor)

    def _rows(self, b: Any, ctx: Any, x: Any) -> list:
        h, w = self._hw(x.type.shape)
        angle = self._draw(b, ctx, x, self.factor[0] * 360.0, self.factor[1] * 360.0)
        theta = b.mul(angle, math.pi / 180.0)
        cos, sin = b.cos(theta), b.sin(theta)
        cx, cy = (w - 1) * 0.5, (h - 1) * 0.5
        a0, a1 = cos, b.neg(sin)
        # Keras's order: tx + cx - cx * a0 - cy * a1 (tx = 0), and the same for the rows.
        a2 = b.sub(b.sub(cx, b.mul(a0, cx)), b.mul(a1, cy))
        b2 = b.sub(b.sub(cy, b.mul(sin, cx)), b.mul(cos, cy))
        return [a0, a1, a2, sin, cos, b2]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_RandomAffine):
    """In training, zooms each image about its centre by 1 + a draw from height_factor's
    range (a positive factor zooms out), the width by width_factor's (None: the height's
    draw, keeping the aspect ratio).

    Args: height_factor, width_factor=None: a number f for (-f, f) or a (low, high) pair, each
    value in (-1, 1]; fill_mode, interpolation, seed, fill_value, data_format as
    RandomRotation's.
    """

    def __init__(self, height_factor: Any, width_factor: Any = None,
                 fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height = _span_factor(self.name, height_factor, "height_factor", True)
        self._width = (None if width_factor is None
                       else _span_factor(self.name, width_factor, "width_factor", True))

    def _rows(self, b: Any, ctx: Any, x: Any) -> list:
        h, w = self._hw(x.type.shape)
        zy = self._draw(b, ctx, x, 1.0 + self._height[0], 1.0 + self._height[1])
        zx = zy if self._width is None else self._draw(b, ctx, x, 1.0 + self._width[0],
                                                        1.0 + self._width[1])
        zero = b.mul(zx, 0.0)
        return [zx, zero, b.mul(b.sub(1.0, zx), (w - 1) / 2.0),
                zero, zy, b.mul(b.sub(1.0, zy), (h - 1) / 2.0)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": _plain(self.height_factor),
                "width_factor": _plain(self.width_factor)}


class RandomTranslation(_RandomAffine):
    """In training, shifts each image by a draw from height_factor's range times its height
    (down for a positive draw) and width_factor's times its width (right), unrounded.

    Args: height_factor, width_factor: a number f for (-f, f) or a (low, high) pair, each value
    in [-1, 1]; fill_mode, interpolation, seed, fill_value, data_format as RandomRotation's.
    """

    def __init__(self, height_factor: Any, width_factor: Any, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, data_format: str | None = None, **kwargs: Any):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height = _span_factor(self.name, height_factor, "height_factor", False)
        self._width = _span_factor(self.name, width_factor, "width_factor", False)

    def _rows(self, b: Any, ctx: Any, x: Any) -> list:
        h, w = self._hw(x.type.shape)
        dy = b.mul(self._draw(b, ctx, x, *self._height), float(h))
        dx = b.mul(self._draw(b, ctx, x, *self._width), float(w))
        zero = b.mul(dx, 0.0)
        one = b.add(zero, 1.0)
        return [one, zero, b.neg(dx), zero, one, b.neg(dy)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": _plain(self.height_factor),
                "width_factor": _plain(self.width_factor)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class RandomFlip(_ImageLayer):
    """In training, flips each image with probability 1/2: left-right ("horizontal"),
    upside down ("vertical"), or, with "horizontal_and_vertical" (the default), both on the
    one draw, as Keras (each image unchanged or turned half a turn).

    Args: mode; seed (accepted); data_format. Output: float images of the input's shape.
    """

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")
    augments = True

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.mode = _choice(self.name, mode, "mode", self._MODES)
        self.seed = seed

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        x = self._float(b, x)
        if not _training(ctx, training):
            return x
        key, stream = ctx.random_stream(self)
        flips = b.bernoulli(key, shape=(x.type.shape[0], 1, 1, 1), p=0.5, stream=stream,
                            name="flips")
        h_axis, w_axis = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, flip in ((w_axis, "horizontal"), (h_axis, "vertical")):
            if flip in self.mode:
                size = x.type.shape[axis]
                reverse = b.constant(np.arange(size - 1, -1, -1, dtype=np.int32))
                x = b.where(flips, b.gather(x, reverse, axis=axis), x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "seed": self.seed}


class _RandomColor(_ImageLayer):
    """RandomContrast and RandomBrightness: one draw per image, clipped to value_range."""

    augments = True
    draw_rank = 4  # a draw per image broadcasts over its pixels and channels

    def __init__(self, factor: Any, value_range: Any = (0, 255), seed: int | None = None,
                 data_format: str | None = None, bounds: tuple[float, float] = (-1.0, 1.0),
                 **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.factor = _base_factor(self.name, factor, bounds=bounds)
        if (not isinstance(value_range, tuple | list) or len(value_range) != 2
                or not all(_number(v) for v in value_range)):
            raise KilnValueError(f"layer {self.name!r}: expected value_range as (low, high). "
                                 f"Received: value_range={value_range!r}")
        self.value_range = [float(v) for v in value_range]
        self.seed = seed

    def _clip(self, b: Any, x: Any) -> Any:
        low, high = self.value_range
        return b.clip(x, min=low, max=high)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor,
                "value_range": list(self.value_range), "seed": self.seed}


class RandomContrast(_RandomColor):
    """In training, scales each image's deviation from its per-channel mean by a draw from
    [1 - factor[0], 1 + factor[1]], then clips to value_range. As Keras, a number f means
    (0, f): contrast only rises; (f, f) gives [1 - f, 1 + f].

    Args: factor in [0, 1] or a pair; value_range=(0, 255); seed (accepted).
    """

    def __init__(self, factor: Any, value_range: Any = (0, 255), seed: int | None = None,
                 **kwargs: Any):
        super().__init__(factor, value_range, seed, bounds=(0.0, 1.0), **kwargs)

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        if not _training(ctx, training):
            return x
        x = self._float(b, x)
        h_axis, w_axis = (1, 2) if self.data_format == "channels_last" else (2, 3)
        mean = b.mean(b.mean(x, axes=(h_axis,), keepdims=True), axes=(w_axis,), keepdims=True)
        factor = self._draw(b, ctx, x, 1.0 - self.factor[0], 1.0 + self.factor[1])
        return self._clip(b, b.add(b.mul(b.sub(x, mean), factor), mean))



class RandomBrightness(_RandomColor):
    """In training, adds to each image a draw from [factor[0], factor[1]] times the width of
    value_range, then clips to value_range.

    Args: factor in [-1, 1] (a number f for (-f, f)) or a pair; value_range=(0, 255), stored
    sorted; seed (accepted).
    """

    def __init__(self, factor: Any, value_range: Any = (0, 255), seed: int | None = None,
                 **kwargs: Any):
        super().__init__(factor, value_range, seed, **kwargs)
        self.value_range = sorted(self.value_range)

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        if not _training(ctx, training):
            return x
        x = self._float(b, x)
        low, high = self.value_range
        delta = b.mul(self._draw(b, ctx, x, *self.factor), high - low)
        return self._clip(b, b.add(x, delta))


class RandomCrop(_ImageLayer):
    """In training, crops each batch at one offset drawn uniformly (integers in [0, H - height]
    and [0, W - width]) when the images are larger than the target in both dimensions;
    otherwise, and at inference, takes the largest centred window of the target's aspect
    ratio and resizes it (bilinear) to height x width.

    Args: height, width; seed (accepted); data_format. Output: float (N, height, width, C).
    """

    augments = True

    def __init__(self, height: int, width: int, seed: int | None = None,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _size_arg(self.name, height, width)
        self.seed = seed

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        x = self._float(b, x)
        size = self._hw(x.type.shape)
        target = (self.height, self.width)
        if not (_training(ctx, training) and size[0] > target[0] and size[1] > target[1]):
            return _window_then_resize(self, b, x, aspect_window(size, target), target)
        offsets = []
        for extent, want in zip(size, target, strict=True):
            # One offset for the whole batch, as Keras: an integer, the draw truncated.
            draw = self._uniform(b, ctx, (1, 1), 0.0, float(extent - want + 1))
            offsets.append(b.cast(b.cast(draw, dtype="int32"), dtype=self.dtype))
        top, left = (b.broadcast_to(o, shape=(x.type.shape[0], 1)) for o in offsets)
        return self._resample(b, x, [1.0, 0.0, left, 0.0, 1.0, top], out_size=target,
                              interpolation="nearest")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "seed": self.seed}


def _window_then_resize(layer: _ImageLayer, b: Any, x: Any, window: tuple[int, int, int, int],
                        target: tuple[int, int], interpolation: str = "bilinear") -> Any:
    """The window of x (top, left, height, width), resized to target when it is not that
    size already."""
    top, left, wh, ww = window
    if (top, left, wh, ww) != (0, 0, *layer._hw(x.type.shape)):
        h_axis = 1 if layer.data_format == "channels_last" else 2
        begin, end = [0, 0, 0, 0], [None, None, None, None]
        begin[h_axis], end[h_axis] = top, top + wh
        begin[h_axis + 1], end[h_axis + 1] = left, left + ww
        x = b.slice(x, begin=tuple(begin), end=tuple(end))
    return x if (wh, ww) == target else layer._resize(b, x, target, interpolation)


class CenterCrop(_ImageLayer):
    """Crops the centre height x width of each image (an odd surplus leaves its extra row or
    column at the bottom or right); an image smaller than that in a dimension is instead
    resized (bilinear) from its largest centred window of the target's aspect ratio, as
    Keras's smart_resize. The same in training and at inference.

    Args: height, width; data_format. Output: float (N, height, width, C).
    """

    def __init__(self, height: int, width: int, data_format: str | None = None,
                 **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _size_arg(self.name, height, width)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        x = self._float(b, x)
        (h, w), target = self._hw(x.type.shape), (self.height, self.width)
        if h >= target[0] and w >= target[1]:
            window = ((h - target[0]) // 2, (w - target[1]) // 2, *target)
        else:
            window = aspect_window((h, w), target)
        return _window_then_resize(self, b, x, window, target)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}


class Resizing(_ImageLayer):
    """Resizes images to height x width with half-pixel centres, as Keras 3 on torch
    (interpolate with align_corners=False; "nearest" is nearest-exact). The same in training
    and at inference.

    Args: height, width; interpolation "bilinear" (default) or "nearest"; crop_to_aspect_ratio
    (resize the largest centred window of the target's aspect ratio); pad_to_aspect_ratio (pad
    with fill_value to it first, the padding split evenly); fill_mode "constant" (the only
    mode Keras allows); fill_value; antialias (False only: kiln has no antialiased
    resampling); data_format. Output: float (N, height, width, C).
    """

    def __init__(self, height: int, width: int, interpolation: str = "bilinear",
                 crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                 fill_mode: str = "constant", fill_value: float = 0.0, antialias: bool = False,
                 data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _size_arg(self.name, height, width)
        self.interpolation = _choice(self.name, interpolation, "interpolation",
                                     _INTERPOLATIONS)
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise KilnValueError(f"layer {self.name!r}: expected at most one of "
                                 f"crop_to_aspect_ratio and pad_to_aspect_ratio. Received: both")
        self.fill_mode = _choice(self.name, fill_mode, "fill_mode", ("constant",))
        if antialias:
            raise KilnValueError(f"layer {self.name!r}: antialias=True is not supported by "
                                 f"kiln; expected antialias=False")
        if not _number(fill_value):
            raise KilnValueError(f"layer {self.name!r}: expected a number as fill_value. "
                                 f"Received: fill_value={fill_value!r}")
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.fill_value = float(fill_value)
        self.antialias = False

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        x = self._float(b, x)
        (h, w), target = self._hw(x.type.shape), (self.height, self.width)
        window = (0, 0, h, w)
        if self.crop_to_aspect_ratio:
            window = aspect_window((h, w), target)
        elif self.pad_to_aspect_ratio:
            rows, cols = aspect_padding((h, w), target)
            h_axis = 1 if self.data_format == "channels_last" else 2
            pads = [(0, 0)] * 4
            pads[h_axis], pads[h_axis + 1] = (rows, rows), (cols, cols)
            x = b.pad(x, pads=tuple(pads), value=self.fill_value)
            window = (0, 0, h + 2 * rows, w + 2 * cols)
        return _window_then_resize(self, b, x, window, target, self.interpolation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias}


class Rescaling(Layer):
    """output = input * scale + offset, in the layer's dtype (integer input is cast).

    Args: scale, offset: numbers, or arrays that broadcast against the input.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        for name, value in (("scale", scale), ("offset", offset)):
            if not _number(value) and np.asarray(value).dtype.kind not in "fiu":
                raise KilnValueError(f"layer {self.name!r}: expected a number or an array of "
                                     f"numbers as {name}. Received: {name}={value!r}")
        self.scale, self.offset = _plain_number(scale), _plain_number(offset)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        if x.type.dtype != self.dtype:
            x = b.cast(x, dtype=self.dtype)
        return b.add(b.mul(x, self._operand(b, self.scale)), self._operand(b, self.offset))

    def _operand(self, b: Any, value: Any) -> Any:
        if isinstance(value, float):
            return value
        return b.constant(np.asarray(value, dtype=self.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _plain_number(value: Any) -> Any:
    """A number as a float, an array of them as nested lists (for the config)."""
    return float(value) if _number(value) else np.asarray(value, dtype=np.float64).tolist()


class Normalization(Layer):
    """output = (input - mean) / max(sqrt(variance), 1e-7) along the kept `axis` (invert:
    mean + input * max(sqrt(variance), 1e-7)), with mean and variance given, or learned from
    data by `adapt` (population variance); before adapt, mean 0 and variance 1.

    Args: axis: the axis or axes kept (one statistic per position along them), -1 by default,
    None for one statistic over everything; mean, variance: numbers or arrays (both or
    neither), which then are constants instead of weights; invert.
    Weights (without mean and variance given), non-trainable: mean, variance, count (count is
    Keras's, kept and never updated).
    """

    supports_masking = True

    def __init__(self, axis: Any = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int) and not isinstance(axis, bool):
            axis = (axis,)
        if not isinstance(axis, tuple | list) or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in axis):
            raise KilnValueError(f"layer {self.name!r}: expected axis as an int, a tuple of "
                                 f"ints or None. Received: axis={axis!r}")
        self.axis = tuple(axis)
        if (mean is None) != (variance is None):
            raise KilnValueError(f"layer {self.name!r}: expected both mean and variance, or "
                                 f"neither. Received: mean={mean!r}, variance={variance!r}")
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise KilnValueError(f"layer {self.name!r}: expected mean and variance of one "
                                     f"shape. Received: {np.shape(mean)} and "
                                     f"{np.shape(variance)}")
            if np.ndim(mean) > len(self.axis):
                raise KilnValueError(f"layer {self.name!r}: expected mean of at most "
                                     f"{len(self.axis)} dims (one per kept axis). Received: "
                                     f"shape {np.shape(mean)}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)

    def _keep(self, rank: int) -> tuple[int, ...]:
        if any(not -rank <= a < rank for a in self.axis):
            raise KilnValueError(f"layer {self.name!r}: expected axis in [{-rank}, {rank}) for "
                                 f"inputs of rank {rank}. Received: axis={self.axis}")
        return tuple(sorted(a % rank for a in self.axis))

    def build(self, input_shape: tuple) -> None:
        keep = self._keep(len(input_shape))
        if any(input_shape[a] is None for a in keep):
            raise KilnValueError(f"layer {self.name!r}: expected a known size on every kept "
                                 f"axis {keep}. Received: input shape {input_shape}")
        self._rank = len(input_shape)
        self._stat_shape = tuple(input_shape[a] for a in keep)
        if self.input_mean is None:
            self.mean = self.add_weight("mean", self._stat_shape, "zeros", trainable=False)
            self.variance = self.add_weight("variance", self._stat_shape, "ones",
                                            trainable=False)
            self.count = self.add_weight("count", (), "zeros", trainable=False, dtype="int32")

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if not self.built:
            return  # build checks the first shape
        if len(shape) != self._rank or tuple(shape[a] for a in self._keep(
                len(shape))) != self._stat_shape:
            raise KilnValueError(f"layer {self.name!r}: expected inputs of rank {self._rank} "
                                 f"with {self._stat_shape} on the kept axes. Received: input "
                                 f"shape {shape}")

    def _broadcast(self, rank: int) -> tuple[int, ...]:
        keep = self._keep(rank)
        sizes = dict(zip(keep, self._stat_shape, strict=True))
        return tuple(sizes.get(a, 1) for a in range(rank))

    def _constants(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """The given mean and variance aligned right to left onto the kept axes."""
        shape = self._broadcast(rank)
        keep = self._keep(rank)
        out = []
        for value in (self.input_mean, self.input_variance):
            array = np.asarray(value, dtype=np.float64)
            expanded = [1] * rank
            for i in range(1, array.ndim + 1):
                expanded[keep[-i]] = array.shape[-i]
            out.append(np.broadcast_to(array.reshape(expanded), shape).astype(self.dtype))
        return out[0], out[1]

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        if x.type.dtype != self.dtype:
            x = b.cast(x, dtype=self.dtype)
        rank = x.type.rank
        if self.input_mean is None:
            shape = self._broadcast(rank)
            mean = b.reshape(ctx.value(self.mean), shape=shape)
            variance = b.reshape(ctx.value(self.variance), shape=shape)
        else:
            mean, variance = (b.constant(a) for a in self._constants(rank))
        deviation = b.maximum(b.sqrt(variance), _EPSILON)
        if self.invert:
            return b.add(mean, b.mul(x, deviation))
        return b.div(b.sub(x, mean), deviation)

    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> None:
        """Set mean and variance from data: an array, or an iterable of batches (arrays or
        (x, y[, w]) tuples, of which x is used), the statistics over every axis but the kept
        ones. Each adapt replaces what an earlier one learned."""
        if self.input_mean is not None:
            raise KilnValueError(f"layer {self.name!r}: was given mean and variance; adapt "
                                 f"has nothing to learn")
        if hasattr(data, "shape") and hasattr(data, "dtype"):
            batches: Iterable[Any] = [np.asarray(data)]
        elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
            batches = data
        else:
            raise KilnValueError(f"layer {self.name!r}: adapt expects an array or an iterable "
                                 f"of batches. Received: {type(data).__name__}")
        total, mean, var = 0, None, None
        for k, batch in enumerate(batches):
            if steps is not None and k >= steps:
                break
            if isinstance(batch, tuple | list):
                batch = batch[0]
            array = np.asarray(batch, dtype=np.float64)
            if not self.built:
                self._build_from_data(array.shape)
            keep = self._keep(array.ndim)
            if array.ndim != self._rank or tuple(array.shape[a] for a in keep) != self._stat_shape:
                raise KilnValueError(f"layer {self.name!r}: adapt expects data of rank "
                                     f"{self._rank} with {self._stat_shape} on the kept axes. "
                                     f"Received: shape {array.shape}")
            axes = tuple(a for a in range(array.ndim) if a not in keep)
            n = math.prod(array.shape[a] for a in axes)
            if n == 0:
                continue
            b_mean, b_var = array.mean(axis=axes), array.var(axis=axes)
            if mean is None:
                total, mean, var = n, b_mean, b_var
                continue
            weight = n / (total + n)
            new_mean = mean * (1 - weight) + b_mean * weight
            var = ((var + (mean - new_mean) ** 2) * (1 - weight)
                   + (b_var + (b_mean - new_mean) ** 2) * weight)
            total, mean = total + n, new_mean
        if mean is None:
            raise KilnValueError(f"layer {self.name!r}: adapt was given no data")
        self.mean.assign(mean)
        self.variance.assign(var)

    def _build_from_data(self, shape: tuple) -> None:
        self.build((None, *shape[1:]))
        self.built = True

    def get_config(self) -> dict[str, Any]:
        def listed(v: Any) -> Any:
            return None if v is None else np.asarray(v).tolist()

        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": listed(self.input_mean), "variance": listed(self.input_variance)}
