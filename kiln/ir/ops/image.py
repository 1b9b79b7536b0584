"""Image ops: affine_transform (resampling NHWC images through a per-image affine map, what
Keras's RandomRotation, RandomZoom, RandomTranslation, RandomCrop and Resizing compute) and its
adjoint affine_transform_grad. Each op's type rule, NumPy reference and VJP sit together below.

affine_transform(images[N, H, W, C], transform[N, 6]) {interpolation, fill_mode, fill_value,
output_size}: output pixel (n, y, x, c), for y < OH and x < OW, reads the input at

    xs = a0 * x + a1 * y + a2,    ys = b0 * x + b1 * y + b2,    [a0 a1 a2 b0 b1 b2] = transform[n]

(Keras's 8-number transform without its projective pair). "bilinear" weighs the four pixels
around (ys, xs) by (1 - dy, dy) x (1 - dx, dx), dy = ys - floor(ys); "nearest" takes the pixel
at (round(ys), round(xs)), halves to even. A pixel index outside the image is mapped back in by
fill_mode, as Keras 3's map_coordinates does:

    constant  (k k | a b c d | k k)  the pixel reads fill_value instead
    nearest   (a a | a b c d | d d)  clamped
    reflect   (b a | a b c d | d c)  mirrored about the image's edge, period 2 * size
    mirror    (c b | a b c d | c b)  mirrored about the edge pixel, period 2 * (size - 1)
    wrap      (c d | a b c d | a b)  periodic

The transform carries no gradient: the layers that use the op draw it (or fix it) and autodiff
treats it as a constant. affine_transform_grad(g, transform) {the same attrs, input_size} is the
adjoint in the images: every output's cotangent added back to the pixels it read, by the same
weights (fill_value reads take none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.registry import REQUIRED, define, expect_float, expect_same_dtype, fail
from kiln.ir.types import TensorType

INTERPOLATIONS = ("bilinear", "nearest")
FILL_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")
_ATTRS = {"interpolation": "bilinear", "fill_mode": "constant", "fill_value": 0.0,
          "output_size": None}


def _size(value: Any, name: str) -> tuple[int, int]:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        fail(f"expected {name}=(height, width) of positive ints. Received: {name}={value!r}")
    return value


def _check(images: TensorType, transform: TensorType, attrs: Any, name: str
           ) -> tuple[int, int]:
    """Check the operands and attrs; returns the static (H, W) of `name`."""
    if images.rank != 4:
        fail(f"expected {name} of rank 4 (batch, height, width, channels). "
             f"Received: {name}: {images}")
    expect_float(name, images)
    expect_same_dtype((images, transform), (name, "transform"))
    if transform.rank != 2 or transform.shape[1] != 6 or transform.shape[0] != images.shape[0]:
        fail(f"expected transform of shape [{images.shape[0]},6] (one affine row per image). "
             f"Received: transform: {transform}")
    if attrs["interpolation"] not in INTERPOLATIONS:
        fail(f"expected interpolation in {INTERPOLATIONS}. "
             f"Received: interpolation={attrs['interpolation']!r}")
    if attrs["fill_mode"] not in FILL_MODES:
        fail(f"expected fill_mode in {FILL_MODES}. Received: fill_mode={attrs['fill_mode']!r}")
    if isinstance(attrs["fill_value"], bool) or not isinstance(attrs["fill_value"], int | float):
        fail(f"expected a number for fill_value. Received: fill_value={attrs['fill_value']!r}")
    h, w = images.shape[1:3]
    if not isinstance(h, int) or not isinstance(w, int):
        fail(f"expected static height and width of {name}. Received: {name}: {images}")
    return h, w


def _affine_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    images, transform = types
    size = _check(images, transform, attrs, "images")
    out = size if attrs["output_size"] is None else _size(attrs["output_size"], "output_size")
    return [images.with_shape((images.shape[0], *out, images.shape[3]))]


def _grad_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    g, transform = types
    out = _check(g, transform, attrs, "g")
    if attrs["output_size"] is not None and _size(attrs["output_size"], "output_size") != out:
        fail(f"expected g of the forward's output_size {attrs['output_size']}. Received: g: {g}")
    size = _size(attrs["input_size"], "input_size")
    return [g.with_shape((g.shape[0], *size, g.shape[3]))]


def fix_index(index: np.ndarray, size: int, fill_mode: str) -> np.ndarray:
    """Map integer pixel indices into [0, size) by fill_mode (constant clamps: its reads of
    outside pixels are replaced by fill_value separately)."""
    if fill_mode in ("constant", "nearest"):
        return np.clip(index, 0, size - 1)
    if fill_mode == "wrap":
        return np.mod(index, size)
    if fill_mode == "mirror":
        if size == 1:
            return np.zeros_like(index)
        period = 2 * (size - 1)
        m = np.mod(index, period)
        return np.where(m >= size, period - m, m)
    m = np.mod(index, 2 * size)  # reflect
    return np.where(m >= size, 2 * size - 1 - m, m)


def fix_scalar_index(i: int, size: int, mode: int) -> int:
    """fix_index for one index, fill_mode as its index in FILL_MODES: the kernels' version
    (the numba and CUDA kernel modules compile this function for their targets; Numba's disk
    cache checks only the kernel module's file, so clear its __pycache__ after changing
    this)."""
    if mode <= 1:  # constant (whose outside reads take fill_value instead), nearest
        return min(max(i, 0), size - 1)
    if mode == 4:  # wrap
        return i % size
    if mode == 3:  # mirror
        if size == 1:
            return 0
        period = 2 * (size - 1)
        m = i % period
        return period - m if m >= size else m
    m = i % (2 * size)  # reflect
    return 2 * size - 1 - m if m >= size else m


def sample_points(transform: np.ndarray, out_size: tuple[int, int], size: tuple[int, int],
                  interpolation: str, fill_mode: str) -> list[tuple[Any, ...]]:
    """The pixels each output reads: a list of (rows, cols, weight, inside), each [N, OH, OW]:
    the fixed indices, the weight, and whether the unfixed pixel lies in the image."""
    t = transform[:, :, None, None]
    y = np.arange(out_size[0], dtype=transform.dtype)[None, :, None]
    x = np.arange(out_size[1], dtype=transform.dtype)[None, None, :]
    xs = t[:, 0] * x + t[:, 1] * y + t[:, 2]
    ys = t[:, 3] * x + t[:, 4] * y + t[:, 5]
    if interpolation == "nearest":
        axes = [[(np.round(ys).astype(np.int64), np.ones_like(ys))],
                [(np.round(xs).astype(np.int64), np.ones_like(xs))]]
    else:
        axes = []
        for coord in (ys, xs):
            low = np.floor(coord)
            up = coord - low
            axes.append([(low.astype(np.int64), 1 - up), (low.astype(np.int64) + 1, up)])
    points = []
    for rows, wy in axes[0]:
        for cols, wx in axes[1]:
            inside = (rows >= 0) & (rows < size[0]) & (cols >= 0) & (cols < size[1])
            points.append((fix_index(rows, size[0], fill_mode), fix_index(cols, size[1], fill_mode),
                           wy * wx, inside))
    return points


def _affine_reference(ctx: Any, images: np.ndarray, transform: np.ndarray, interpolation: str,
                      fill_mode: str, fill_value: float, output_size: Any) -> np.ndarray:
    n, h, w, _ = images.shape
    out_size = (h, w) if output_size is None else output_size
    batch = np.arange(n)[:, None, None]
    out = np.zeros(ctx.out_shapes[0], images.dtype)
    for rows, cols, weight, inside in sample_points(transform, out_size, (h, w),
                                                    interpolation, fill_mode):
        values = images[batch, rows, cols]
        if fill_mode == "constant":
            values = np.where(inside[..., None], values, images.dtype.type(fill_value))
        out += weight[..., None] * values
    return out


def _grad_reference(ctx: Any, g: np.ndarray, transform: np.ndarray, interpolation: str,
                    fill_mode: str, fill_value: float, output_size: Any,
                    input_size: tuple[int, int]) -> np.ndarray:
    n, oh, ow, _ = g.shape
    batch = np.broadcast_to(np.arange(n)[:, None, None], (n, oh, ow))
    dx = np.zeros(ctx.out_shapes[0], g.dtype)
    for rows, cols, weight, inside in sample_points(transform, (oh, ow), input_size,
                                                    interpolation, fill_mode):
        if fill_mode == "constant":
            weight = np.where(inside, weight, 0)
        np.add.at(dx, (batch, rows, cols), weight[..., None] * g)
    return dx


def _affine_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    images, transform = node.inputs
    grad = b.affine_transform_grad(cots[0], transform, input_size=images.type.shape[1:3],
                                   **{**node.attr, "output_size": cots[0].type.shape[1:3]})
    return [grad, None]


def _grad_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    g, transform = node.inputs
    attrs = {**{k: node.attr[k] for k in _ATTRS}, "output_size": g.type.shape[1:3]}
    # The grad is linear in g: its adjoint is the forward's linear part (no fill_value).
    return [b.affine_transform(cots[0], transform, **{**attrs, "fill_value": 0.0}), None]


define("affine_transform", family="image", inputs=("images", "transform"), infer=_affine_rule,
       reference=_affine_reference, vjp=_affine_vjp, attrs=_ATTRS)
define("affine_transform_grad", family="image", inputs=("g", "transform"), infer=_grad_rule,
       reference=_grad_reference, vjp=_grad_vjp, attrs={**_ATTRS, "input_size": REQUIRED})
