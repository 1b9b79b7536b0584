"""Neural-network ops in Keras's layouts: conv2d and its two gradients, depthwise_conv2d and
its two gradients, max and average pooling and their gradients, softmax and log_softmax.
Images are NHWC, kernels HWIO ([kh, kw, cin, cout], Keras's Conv2D kernel; a depthwise
kernel is [kh, kw, channels, multiplier], output channel c * multiplier + m). The batch may
be a symbol; spatial sizes are static.

Attributes (all pairs are tuples of two positive ints, (rows, cols)):
    strides, dilation: the window step and the kernel's dilation; pooling's strides=None
        means pool_size, as in Keras.
    padding: "valid" (no padding) or "same" (output = ceil(input / stride), the total padding
        split with the smaller half before, as TensorFlow does).
    input_size: (H, W) of the input a gradient op rebuilds (conv2d_grad_input, avg_pool2d_grad).
    kernel_size: (kh, kw) of the kernel conv2d_grad_filter (depthwise_...) rebuilds.
    pool_size: the pooling window.
    axis: softmax's axis (an int, or a tuple of ints normalized over jointly).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.ir.registry import REQUIRED, define, expect_float, expect_same_dtype, fail
from kiln.ir.types import TensorType, normalize_axes

Pair = tuple[int, int]


# -- window geometry -----------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Where a sliding window (a kernel or a pool) goes over an H x W image.

    out: the output's (rows, cols); pads: ((top, bottom), (left, right)).
    """

    kernel: Pair
    strides: Pair
    dilation: Pair
    out: Pair
    pads: tuple[Pair, Pair]

    def offsets(self) -> Iterator[tuple[int, int, slice, slice]]:
        """Per kernel position (i, j): the rows and cols of the padded input it reads."""
        (sh, sw), (dh, dw), (oh, ow) = self.strides, self.dilation, self.out
        for i in range(self.kernel[0]):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            for j in range(self.kernel[1]):
                yield i, j, rows, slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)

    def pad(self, x: np.ndarray, value: float = 0.0) -> np.ndarray:
        return np.pad(x, ((0, 0), *self.pads, (0, 0)), constant_values=value)

    def crop(self, xp: np.ndarray) -> np.ndarray:
        (top, bottom), (left, right) = self.pads
        return np.ascontiguousarray(xp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right])

    def padded_zeros(self, batch: int, size: Pair, channels: int, dtype: Any) -> np.ndarray:
        (top, bottom), (left, right) = self.pads
        return np.zeros((batch, size[0] + top + bottom, size[1] + left + right, channels), dtype)


def output_size(size: int, kernel: int, stride: int, dilation: int, padding: str,
                ) -> tuple[int, Pair]:
    """One spatial axis: (output size, (padding before, padding after)), as TF/Keras."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        if size < span:
            fail(f"expected a spatial size of at least the (dilated) window {span} with "
                 f"padding='valid'. Received: size {size}")
        return (size - span) // stride + 1, (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, (total // 2, total - total // 2)


def window(size: Pair, kernel: Pair, strides: Pair, padding: str,
           dilation: Pair = (1, 1)) -> Window:
    (oh, rows), (ow, cols) = (output_size(size[a], kernel[a], strides[a], dilation[a], padding)
                              for a in (0, 1))
    return Window(kernel, strides, dilation, (oh, ow), (rows, cols))


def conv_op_window(node: Any) -> Window:
    """The window of a convolution-family node (conv2d, depthwise_conv2d or a gradient op):
    over operand 0's image with operand 1's kernel; a *_grad_input's over its input_size; a
    *_grad_filter's with its kernel_size."""
    a, b, attrs = node.inputs[0].type, node.inputs[1].type, node.attr
    if node.op.endswith("_grad_input"):
        size, kernel = attrs["input_size"], b.shape[:2]
    elif node.op.endswith("_grad_filter"):
        size, kernel = a.shape[1:3], attrs["kernel_size"]
    else:
        size, kernel = a.shape[1:3], b.shape[:2]
    return window(tuple(size), tuple(kernel), attrs["strides"], attrs["padding"],
                  attrs["dilation"])


# -- attribute and operand checks ----------------------------------------------------------
def _pair(attrs: Any, name: str) -> Pair:
    value = attrs[name]
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        fail(f"expected {name}=(rows, cols) of positive ints. Received: {name}={value!r}")
    return value


def _padding(attrs: Any) -> str:
    if attrs["padding"] not in ("valid", "same"):
        fail(f"expected padding='valid' or 'same'. Received: padding={attrs['padding']!r}")
    return attrs["padding"]


def _image(name: str, t: TensorType) -> Pair:
    """Check an NHWC operand; returns its static (H, W)."""
    if t.rank != 4:
        fail(f"expected {name} of rank 4 (batch, height, width, channels). Received: {name}: {t}")
    expect_float(name, t)
    h, w = t.shape[1:3]
    if not isinstance(h, int) or not isinstance(w, int):
        fail(f"expected static height and width of {name}. Received: {name}: {t}")
    return h, w


def _kernel(name: str, t: TensorType) -> tuple[int, int, int, int]:
    if t.rank != 4 or not t.is_static:
        fail(f"expected a static kernel {name} of rank 4 (kh, kw, cin, cout). "
             f"Received: {name}: {t}")
    return t.shape  # type: ignore[return-value]


def _conv_window(attrs: Any, size: Pair, kernel: Pair) -> Window:
    return window(size, kernel, _pair(attrs, "strides"), _padding(attrs),
                  _pair(attrs, "dilation"))


def _pool_window(attrs: Any, size: Pair) -> Window:
    pool = _pair(attrs, "pool_size")
    strides = pool if attrs["strides"] is None else _pair(attrs, "strides")
    return window(size, pool, strides, _padding(attrs))


def _expect_dims(name: str, t: TensorType, dims: Sequence[Any], why: str) -> None:
    if tuple(t.shape) != tuple(dims):
        expected = ",".join(str(d) for d in dims)
        fail(f"expected {name} of shape [{expected}] ({why}). Received: {name}: {t}")


# -- conv2d --------------------------------------------------------------------------------
_CONV_ATTRS = {"strides": (1, 1), "padding": "valid", "dilation": (1, 1)}


def _conv2d_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, w = types
    size = _image("x", x)
    kh, kw, cin, cout = _kernel("w", w)
    dtype = expect_same_dtype(types, ("x", "w"))
    if x.shape[3] != cin:
        fail(f"expected x's channels to equal the kernel's input channels (w.shape[2]). "
             f"Received: x: {x}, w: {w}")
    win = _conv_window(attrs, size, (kh, kw))
    return [TensorType((x.shape[0], *win.out, cout), dtype)]


def _conv2d_reference(ctx: Any, x: np.ndarray, w: np.ndarray, **attrs: Any) -> np.ndarray:
    win = window(x.shape[1:3], w.shape[:2], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    xp = win.pad(x)
    out = np.zeros(ctx.out_shapes[0], x.dtype)
    for i, j, rows, cols in win.offsets():
        out += xp[:, rows, cols, :] @ w[i, j]
    return out


def _conv2d_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    x, w = node.inputs
    return [b.conv2d_grad_input(g, w, input_size=x.type.shape[1:3], **node.attr),
            b.conv2d_grad_filter(x, g, kernel_size=w.type.shape[:2], **node.attr)]


define("conv2d", family="nn", inputs=("x", "w"), infer=_conv2d_rule,
       reference=_conv2d_reference, vjp=_conv2d_vjp, attrs=_CONV_ATTRS)


# conv2d_grad_input(dy, w): the input's cotangent of y = conv2d(x, w), a transposed conv.
def _grad_input_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    dy, w = types
    _image("dy", dy)
    kh, kw, cin, cout = _kernel("w", w)
    dtype = expect_same_dtype(types, ("dy", "w"))
    size = _pair(attrs, "input_size")
    win = _conv_window(attrs, size, (kh, kw))
    _expect_dims("dy", dy, (dy.shape[0], *win.out, cout), "conv2d's output for input_size")
    return [TensorType((dy.shape[0], *size, cin), dtype)]


def _grad_input_reference(ctx: Any, dy: np.ndarray, w: np.ndarray, **attrs: Any) -> np.ndarray:
    win = window(attrs["input_size"], w.shape[:2], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    dxp = win.padded_zeros(dy.shape[0], attrs["input_size"], w.shape[2], dy.dtype)
    for i, j, rows, cols in win.offsets():
        dxp[:, rows, cols, :] += dy @ w[i, j].T
    return win.crop(dxp)


def _grad_input_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # Bilinear in (dy, w): <conv2d_grad_input(dy, w), g> = <dy, conv2d(g, w)>.
    (g,) = cots
    dy, w = node.inputs
    conv = {k: node.attr[k] for k in _CONV_ATTRS}
    return [b.conv2d(g, w, **conv),
            b.conv2d_grad_filter(g, dy, kernel_size=w.type.shape[:2], **conv)]


define("conv2d_grad_input", family="nn", inputs=("dy", "w"), infer=_grad_input_rule,
       reference=_grad_input_reference, vjp=_grad_input_vjp,
       attrs={"input_size": REQUIRED, **_CONV_ATTRS})


# conv2d_grad_filter(x, dy): the kernel's cotangent of y = conv2d(x, w).
def _grad_filter_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, dy = types
    size = _image("x", x)
    _image("dy", dy)
    dtype = expect_same_dtype(types, ("x", "dy"))
    kernel = _pair(attrs, "kernel_size")
    win = _conv_window(attrs, size, kernel)
    _expect_dims("dy", dy, (x.shape[0], *win.out, dy.shape[3]), "conv2d's output for x")
    if not isinstance(x.shape[3], int) or not isinstance(dy.shape[3], int):
        fail(f"expected static channels. Received: x: {x}, dy: {dy}")
    return [TensorType((*kernel, x.shape[3], dy.shape[3]), dtype)]


def _grad_filter_reference(ctx: Any, x: np.ndarray, dy: np.ndarray, **attrs: Any,
                           ) -> np.ndarray:
    win = window(x.shape[1:3], attrs["kernel_size"], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    xp = win.pad(x)
    dw = np.zeros(ctx.out_shapes[0], x.dtype)
    for i, j, rows, cols in win.offsets():
        dw[i, j] = np.tensordot(xp[:, rows, cols, :], dy, axes=([0, 1, 2], [0, 1, 2]))
    return dw


def _grad_filter_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # Bilinear in (x, dy): <conv2d_grad_filter(x, dy), g> = <conv2d(x, g), dy>.
    (g,) = cots
    x, dy = node.inputs
    conv = {k: node.attr[k] for k in _CONV_ATTRS}
    return [b.conv2d_grad_input(dy, g, input_size=x.type.shape[1:3], **conv),
            b.conv2d(x, g, **conv)]


define("conv2d_grad_filter", family="nn", inputs=("x", "dy"), infer=_grad_filter_rule,
       reference=_grad_filter_reference, vjp=_grad_filter_vjp,
       attrs={"kernel_size": REQUIRED, **_CONV_ATTRS})


# -- depthwise convolution -----------------------------------------------------------------
# depthwise_conv2d(x, w): each input channel c correlated with its own M kernels w[..., c, m];
# output channel c * M + m (TensorFlow's and Keras's order). x (N, H, W, C), w (kh, kw, C, M).
def _depthwise_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, w = types
    size = _image("x", x)
    kh, kw, channels, multiplier = _kernel("w", w)
    dtype = expect_same_dtype(types, ("x", "w"))
    if x.shape[3] != channels:
        fail(f"expected x's channels to equal the kernel's channels (w.shape[2]). "
             f"Received: x: {x}, w: {w}")
    if not isinstance(channels, int) or not isinstance(multiplier, int):
        fail(f"expected a static kernel shape. Received: w: {w}")
    win = _conv_window(attrs, size, (kh, kw))
    return [TensorType((x.shape[0], *win.out, channels * multiplier), dtype)]


def _depthwise_reference(ctx: Any, x: np.ndarray, w: np.ndarray, **attrs: Any) -> np.ndarray:
    win = window(x.shape[1:3], w.shape[:2], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    xp = win.pad(x)
    out = np.zeros((*ctx.out_shapes[0][:3], *w.shape[2:]), x.dtype)
    for i, j, rows, cols in win.offsets():
        out += xp[:, rows, cols, :, None] * w[i, j]
    return out.reshape(ctx.out_shapes[0])


def _depthwise_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    x, w = node.inputs
    return [b.depthwise_conv2d_grad_input(g, w, input_size=x.type.shape[1:3], **node.attr),
            b.depthwise_conv2d_grad_filter(x, g, kernel_size=w.type.shape[:2], **node.attr)]


define("depthwise_conv2d", family="nn", inputs=("x", "w"), infer=_depthwise_rule,
       reference=_depthwise_reference, vjp=_depthwise_vjp, attrs=_CONV_ATTRS)


# depthwise_conv2d_grad_input(dy, w): the input's cotangent of y = depthwise_conv2d(x, w).
def _depthwise_grad_input_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    dy, w = types
    _image("dy", dy)
    kh, kw, channels, multiplier = _kernel("w", w)
    dtype = expect_same_dtype(types, ("dy", "w"))
    size = _pair(attrs, "input_size")
    win = _conv_window(attrs, size, (kh, kw))
    _expect_dims("dy", dy, (dy.shape[0], *win.out, channels * multiplier),
                 "depthwise_conv2d's output for input_size")
    return [TensorType((dy.shape[0], *size, channels), dtype)]


def _depthwise_grad_input_reference(ctx: Any, dy: np.ndarray, w: np.ndarray,
                                    **attrs: Any) -> np.ndarray:
    win = window(attrs["input_size"], w.shape[:2], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    dxp = win.padded_zeros(dy.shape[0], attrs["input_size"], w.shape[2], dy.dtype)
    dy5 = dy.reshape(*dy.shape[:3], *w.shape[2:])
    for i, j, rows, cols in win.offsets():
        dxp[:, rows, cols, :] += (dy5 * w[i, j]).sum(axis=-1)
    return win.crop(dxp)


def _depthwise_grad_input_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # Bilinear in (dy, w): <grad_input(dy, w), g> = <dy, depthwise_conv2d(g, w)>.
    (g,) = cots
    dy, w = node.inputs
    conv = {k: node.attr[k] for k in _CONV_ATTRS}
    return [b.depthwise_conv2d(g, w, **conv),
            b.depthwise_conv2d_grad_filter(g, dy, kernel_size=w.type.shape[:2], **conv)]


define("depthwise_conv2d_grad_input", family="nn", inputs=("dy", "w"),
       infer=_depthwise_grad_input_rule, reference=_depthwise_grad_input_reference,
       vjp=_depthwise_grad_input_vjp, attrs={"input_size": REQUIRED, **_CONV_ATTRS})


# depthwise_conv2d_grad_filter(x, dy): the kernel's cotangent of y = depthwise_conv2d(x, w).
def _depthwise_grad_filter_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    x, dy = types
    size = _image("x", x)
    _image("dy", dy)
    dtype = expect_same_dtype(types, ("x", "dy"))
    kernel = _pair(attrs, "kernel_size")
    win = _conv_window(attrs, size, kernel)
    _expect_dims("dy", dy, (x.shape[0], *win.out, dy.shape[3]),
                 "depthwise_conv2d's output for x")
    channels, outputs = x.shape[3], dy.shape[3]
    if not isinstance(channels, int) or not isinstance(outputs, int) or channels == 0 \
            or outputs % channels:
        fail(f"expected static channels, dy's a multiple of x's. Received: x: {x}, dy: {dy}")
    return [TensorType((*kernel, channels, outputs // channels), dtype)]


def _depthwise_grad_filter_reference(ctx: Any, x: np.ndarray, dy: np.ndarray,
                                     **attrs: Any) -> np.ndarray:
    win = window(x.shape[1:3], attrs["kernel_size"], attrs["strides"], attrs["padding"],
                 attrs["dilation"])
    xp = win.pad(x)
    dw = np.zeros(ctx.out_shapes[0], x.dtype)
    dy5 = dy.reshape(*dy.shape[:3], *dw.shape[2:])
    for i, j, rows, cols in win.offsets():
        dw[i, j] = np.einsum("nrqc,nrqcm->cm", xp[:, rows, cols, :], dy5)
    return dw


def _depthwise_grad_filter_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    # Bilinear in (x, dy): <grad_filter(x, dy), g> = <depthwise_conv2d(x, g), dy>.
    (g,) = cots
    x, dy = node.inputs
    conv = {k: node.attr[k] for k in _CONV_ATTRS}
    return [b.depthwise_conv2d_grad_input(dy, g, input_size=x.type.shape[1:3], **conv),
            b.depthwise_conv2d(x, g, **conv)]


define("depthwise_conv2d_grad_filter", family="nn", inputs=("x", "dy"),
       infer=_depthwise_grad_filter_rule, reference=_depthwise_grad_filter_reference,
       vjp=_depthwise_grad_filter_vjp, attrs={"kernel_size": REQUIRED, **_CONV_ATTRS})


# -- pooling -------------------------------------------------------------------------------
_POOL_ATTRS = {"pool_size": (2, 2), "strides": None, "padding": "valid"}


def _pool_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    win = _pool_window(attrs, _image("x", x))
    return [x.with_shape((x.shape[0], *win.out, x.shape[3]))]


def _pool_geometry(size: Sequence[int], attrs: Any) -> Window:
    pool = attrs["pool_size"]
    return window(tuple(size), pool, attrs["strides"] or pool, attrs["padding"])


def _window_argmax(x: np.ndarray, win: Window) -> np.ndarray:
    """Per output element, the index (i * kw + j) of its window's first maximum."""
    xp = win.pad(x, -np.inf)
    best = arg = None
    for k, (_, _, rows, cols) in enumerate(win.offsets()):
        values = xp[:, rows, cols, :]
        if best is None:
            best, arg = values.copy(), np.zeros(values.shape, np.int64)
            continue
        better = values > best
        best[better] = values[better]
        arg[better] = k
    return arg  # type: ignore[return-value]


def _max_pool_reference(ctx: Any, x: np.ndarray, **attrs: Any) -> np.ndarray:
    win = _pool_geometry(x.shape[1:3], attrs)
    xp = win.pad(x, -np.inf)
    out = np.full(ctx.out_shapes[0], -np.inf, x.dtype)
    for _, _, rows, cols in win.offsets():
        np.maximum(out, xp[:, rows, cols, :], out=out)
    return out


define("max_pool2d", family="nn", inputs=("x",), infer=_pool_rule,
       reference=_max_pool_reference,
       vjp=lambda b, node, cots: [b.max_pool2d_grad(node.inputs[0], cots[0], **node.attr)],
       attrs=_POOL_ATTRS)


# max_pool2d_grad(x, dy) routes each dy element to its window's maximum in x; on ties, to the
# first maximum in row-major window order. max_pool2d_select(x, g) is its transpose: each
# window's value of g at that same position. Both are locally constant in x.
def _max_pool_pair_rule(second: str) -> Any:
    def infer(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
        x, other = types
        win = _pool_window(attrs, _image("x", x))
        expect_same_dtype(types, ("x", second))
        pooled = (x.shape[0], *win.out, x.shape[3])
        if second == "dy":
            _expect_dims("dy", other, pooled, "max_pool2d's output for x")
            return [x]
        _expect_dims("g", other, x.shape, "the shape of x")
        return [x.with_shape(pooled)]

    return infer


def _max_pool_grad_reference(ctx: Any, x: np.ndarray, dy: np.ndarray, **attrs: Any,
                             ) -> np.ndarray:
    win = _pool_geometry(x.shape[1:3], attrs)
    arg = _window_argmax(x, win)
    dxp = win.padded_zeros(x.shape[0], x.shape[1:3], x.shape[3], x.dtype)
    for k, (_, _, rows, cols) in enumerate(win.offsets()):
        dxp[:, rows, cols, :] += np.where(arg == k, dy, 0)
    return win.crop(dxp)


def _max_pool_select_reference(ctx: Any, x: np.ndarray, g: np.ndarray, **attrs: Any,
                               ) -> np.ndarray:
    win = _pool_geometry(x.shape[1:3], attrs)
    arg = _window_argmax(x, win)
    gp = win.pad(g)
    out = np.zeros(ctx.out_shapes[0], g.dtype)
    for k, (_, _, rows, cols) in enumerate(win.offsets()):
        out = np.where(arg == k, gp[:, rows, cols, :], out)
    return out


define("max_pool2d_grad", family="nn", inputs=("x", "dy"), infer=_max_pool_pair_rule("dy"),
       reference=_max_pool_grad_reference,
       vjp=lambda b, node, cots: [None, b.max_pool2d_select(node.inputs[0], cots[0],
                                                            **node.attr)],
       attrs=_POOL_ATTRS)
define("max_pool2d_select", family="nn", inputs=("x", "g"), infer=_max_pool_pair_rule("g"),
       reference=_max_pool_select_reference,
       vjp=lambda b, node, cots: [None, b.max_pool2d_grad(node.inputs[0], cots[0],
                                                          **node.attr)],
       attrs=_POOL_ATTRS)


def _window_counts(win: Window, size: Sequence[int], dtype: Any) -> np.ndarray:
    """How many real (unpadded) elements each window covers, shaped to broadcast over NHWC."""
    ones = win.pad(np.ones((1, *size, 1), dtype))
    counts = np.zeros((1, *win.out, 1), dtype)
    for _, _, rows, cols in win.offsets():
        counts += ones[:, rows, cols, :]
    return counts


def _avg_pool_reference(ctx: Any, x: np.ndarray, **attrs: Any) -> np.ndarray:
    win = _pool_geometry(x.shape[1:3], attrs)
    xp = win.pad(x)
    total = np.zeros(ctx.out_shapes[0], x.dtype)
    for _, _, rows, cols in win.offsets():
        total += xp[:, rows, cols, :]
    return total / _window_counts(win, x.shape[1:3], x.dtype)


define("avg_pool2d", family="nn", inputs=("x",), infer=_pool_rule,
       reference=_avg_pool_reference,
       vjp=lambda b, node, cots: [b.avg_pool2d_grad(
           cots[0], input_size=node.inputs[0].type.shape[1:3], **node.attr)],
       attrs=_POOL_ATTRS)


# avg_pool2d_grad(dy) spreads each dy element evenly over its window's real elements.
def _avg_pool_grad_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (dy,) = types
    _image("dy", dy)
    size = _pair(attrs, "input_size")
    win = _pool_window(attrs, size)
    _expect_dims("dy", dy, (dy.shape[0], *win.out, dy.shape[3]),
                 "avg_pool2d's output for input_size")
    return [dy.with_shape((dy.shape[0], *size, dy.shape[3]))]


def _avg_pool_grad_reference(ctx: Any, dy: np.ndarray, **attrs: Any) -> np.ndarray:
    size = attrs["input_size"]
    win = _pool_geometry(size, attrs)
    share = dy / _window_counts(win, size, dy.dtype)
    dxp = win.padded_zeros(dy.shape[0], size, dy.shape[3], dy.dtype)
    for _, _, rows, cols in win.offsets():
        dxp[:, rows, cols, :] += share
    return win.crop(dxp)


define("avg_pool2d_grad", family="nn", inputs=("dy",), infer=_avg_pool_grad_rule,
       reference=_avg_pool_grad_reference,
       vjp=lambda b, node, cots: [b.avg_pool2d(
           cots[0], **{k: node.attr[k] for k in _POOL_ATTRS})],
       attrs={"input_size": REQUIRED, **_POOL_ATTRS})


# -- softmax, log_softmax ------------------------------------------------------------------
def _softmax_rule(types: Sequence[TensorType], attrs: Any) -> list[TensorType]:
    (x,) = types
    expect_float("x", x)
    normalize_axes(attrs["axis"], x.rank, "softmax")
    return [x]


def _shifted(x: np.ndarray, axis: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """x minus its max along the axes (so exp cannot overflow), and the axes."""
    axes = normalize_axes(axis, x.ndim, "softmax")
    return x - np.max(x, axis=axes, keepdims=True), axes


def _softmax_reference(ctx: Any, x: np.ndarray, axis: Any) -> np.ndarray:
    shifted, axes = _shifted(x, axis)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axes, keepdims=True)


def _log_softmax_reference(ctx: Any, x: np.ndarray, axis: Any) -> np.ndarray:
    shifted, axes = _shifted(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True))


def _node_axes(node: Any) -> tuple[int, ...]:
    return normalize_axes(node.attr["axis"], node.inputs[0].type.rank, node.op)


def _softmax_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    y = node.output
    inner = b.sum(b.mul(g, y), axes=_node_axes(node), keepdims=True)
    return [b.mul(y, b.sub(g, inner))]


def _log_softmax_vjp(b: Any, node: Any, cots: Sequence[Any]) -> list[Any]:
    (g,) = cots
    total = b.sum(g, axes=_node_axes(node), keepdims=True)
    return [b.sub(g, b.mul(b.exp(node.output), total))]


define("softmax", family="nn", inputs=("x",), infer=_softmax_rule,
       reference=_softmax_reference, vjp=_softmax_vjp, attrs={"axis": -1})
define("log_softmax", family="nn", inputs=("x",), infer=_softmax_rule,
       reference=_log_softmax_reference, vjp=_log_softmax_vjp, attrs={"axis": -1})
