"""ONNX lowerings of matmul and the neural-network ops: conv2d and depthwise_conv2d and their
gradients, pooling and its gradients, softmax and log_softmax.

kiln's images are NHWC with HWIO kernels; ONNX's Conv and pools are NCHW with OIHW kernels,
so float32 convolutions transpose around ONNX Conv. onnxruntime has no float64 Conv or
AveragePool kernels, so other dtypes take an explicit form: the window's strided slices
concatenated along channels (patches, [N, oh, ow, kh*kw*C]) times the reshaped kernel.

The gradients:
    conv2d_grad_input  a stride-1 convolution, dilated like the forward one, of dy spread by
                       the strides (zeros between rows) and padded, with the kernel flipped
                       and its channel axes swapped; the padding puts the result exactly on
                       the input's rows, so nothing is cropped.
    conv2d_grad_filter a convolution with the channels as batch and the batch as channels:
                       x^T (cin, N, H, W) correlated with dy^T (cout, N, oh, ow) as a kernel,
                       stride and dilation exchanged, gives dw^T (cin, cout, kh, kw).
    max_pool2d_grad    MaxPool's Indices (flat NCHW positions of each window's first maximum,
                       ties as the reference) and ScatterElements(reduction="add").
    max_pool2d_select  a Gather of g at those same indices.
    avg_pool2d_grad    dy over each window's real-element count (a compile-time constant),
                       spread back by conv2d_grad_input with a ones kernel per channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from kiln.compiler.codegen.onnx.emitter import Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.ops.nn import Window, window
from kiln.ir.types import TensorType, normalize_axes, numpy_dtype

NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@lowering("matmul")
def _matmul(em: Emitter, node: Node, ins: list[str]) -> str:
    return em.add("MatMul", ins)


# -- convolution -----------------------------------------------------------------------------
def _onnx_pads(win: Window) -> list[int]:
    (top, bottom), (left, right) = win.pads
    return [top, left, bottom, right]


def pad_or_crop(em: Emitter, x: str, rows: tuple[int, int], cols: tuple[int, int]) -> str:
    """Pad (positive) or crop (negative) the H and W axes of an NHWC image."""
    grow = [max(v, 0) for v in (*rows, *cols)]
    if any(grow):
        x = em.add("Pad", [x, em.ints([0, grow[0], grow[2], 0, 0, grow[1], grow[3], 0])],
                   mode="constant")
    cut = [max(-v, 0) for v in (*rows, *cols)]
    if any(cut):
        ends = [-cut[1] if cut[1] else INT64_MAX, -cut[3] if cut[3] else INT64_MAX]
        x = em.add("Slice", [x, em.ints([cut[0], cut[2]]), em.ints(ends), em.ints([1, 2])])
    return x


def patches(em: Emitter, xp: str, win: Window) -> str:
    """[N, oh, ow, kh*kw*C]: for each output position, its window of the padded image,
    in the order of a reshaped HWIO kernel's rows."""
    (sh, sw), (dh, dw), (oh, ow) = win.strides, win.dilation, win.out
    pieces = []
    for i in range(win.kernel[0]):
        for j in range(win.kernel[1]):
            starts = [i * dh, j * dw]
            ends = [i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1]
            pieces.append(em.add("Slice", [xp, em.ints(starts), em.ints(ends), em.ints([1, 2]),
                                           em.ints([sh, sw])]))
    return pieces[0] if len(pieces) == 1 else em.add("Concat", pieces, axis=3)


def conv_nhwc(em: Emitter, x: str, w: str, kernel: tuple[int, int, int, int], win: Window,
              dtype: str, group: int = 1) -> str:
    """conv2d of an NHWC image with an HWIO kernel over the window geometry `win`; with
    `group` > 1 (float32 only) ONNX's grouped Conv, the kernel's I its channels per group."""
    kh, kw, cin, cout = kernel
    if dtype == "float32":
        y = em.add("Conv", [em.add("Transpose", [x], perm=NHWC_TO_NCHW),
                            em.add("Transpose", [w], perm=[3, 2, 0, 1])],
                   kernel_shape=[kh, kw], strides=list(win.strides),
                   dilations=list(win.dilation), pads=_onnx_pads(win),
                   **({"group": group} if group > 1 else {}))
        return em.add("Transpose", [y], perm=NCHW_TO_NHWC)
    xp = pad_or_crop(em, x, *win.pads)
    matrix = em.add("Reshape", [w, em.ints([kh * kw * cin, cout])])
    return em.add("MatMul", [patches(em, xp, win), matrix])


def _conv_window(node: Node, size: tuple[int, int], kernel: tuple[int, int]) -> Window:
    a = node.attr
    return window(size, kernel, a["strides"], a["padding"], a["dilation"])


@lowering("conv2d")
def _conv2d(em: Emitter, node: Node, ins: list[str]) -> str:
    x, w = node.inputs
    win = _conv_window(node, x.type.shape[1:3], w.type.shape[:2])
    return conv_nhwc(em, ins[0], ins[1], w.type.shape, win, x.type.dtype)


def spread(em: Emitter, dy: str, t: TensorType, strides: tuple[int, int]) -> str:
    """Insert strides - 1 zeros between the rows and between the columns of an NHWC image."""
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return dy
    _, oh, ow, c = t.shape
    y = em.add("Reshape", [dy, em.ints([-1, oh, 1, ow, 1, c])])
    y = em.add("Pad", [y, em.ints([0] * 6 + [0, 0, sh - 1, 0, sw - 1, 0])], mode="constant")
    y = em.add("Reshape", [y, em.ints([-1, oh * sh, ow * sw, c])])
    return em.add("Slice", [y, em.ints([0, 0]), em.ints([(oh - 1) * sh + 1, (ow - 1) * sw + 1]),
                            em.ints([1, 2])])


def conv_grad_input(em: Emitter, dy: str, dy_type: TensorType, w: str,
                    kernel: tuple[int, int, int, int], win: Window, size: tuple[int, int],
                    dtype: str, group: int = 1) -> str:
    """The cotangent of conv2d's input (module docstring): [N, H, W, cin]. With `group`
    (float32 only), of a grouped conv2d whose kernel is (kh, kw, groups, outputs per
    group), a depthwise one's: the flipped kernel is then the grouped HWIO kernel."""
    kh, kw, cin, cout = kernel
    (dh, dw), (oh, ow) = win.dilation, win.out
    (top, _), (left, _) = win.pads
    spread_rows = (oh - 1) * win.strides[0] + 1
    spread_cols = (ow - 1) * win.strides[1] + 1
    before = ((kh - 1) * dh - top, (kw - 1) * dw - left)
    after = (size[0] + top - spread_rows, size[1] + left - spread_cols)
    y = spread(em, dy, dy_type, win.strides)
    y = pad_or_crop(em, y, (before[0], after[0]), (before[1], after[1]))
    flipped = em.add("Slice", [w, em.ints([-1, -1]), em.ints([INT64_MIN, INT64_MIN]),
                               em.ints([0, 1]), em.ints([-1, -1])])
    flipped = em.add("Transpose", [flipped], perm=[0, 1, 3, 2])
    unit = Window((kh, kw), (1, 1), win.dilation, size, ((0, 0), (0, 0)))
    return conv_nhwc(em, y, flipped, (kh, kw, cout, cin), unit, dtype, group)


@lowering("conv2d_grad_input")
def _conv2d_grad_input(em: Emitter, node: Node, ins: list[str]) -> str:
    dy, w = node.inputs
    size = node.attr["input_size"]
    win = _conv_window(node, size, w.type.shape[:2])
    return conv_grad_input(em, ins[0], dy.type, ins[1], w.type.shape, win, size, dy.type.dtype)


@lowering("conv2d_grad_filter")
def _conv2d_grad_filter(em: Emitter, node: Node, ins: list[str]) -> str:
    x, dy = node.inputs
    kh, kw = node.attr["kernel_size"]
    cin, cout = x.type.shape[3], dy.type.shape[3]
    win = _conv_window(node, x.type.shape[1:3], (kh, kw))
    if x.type.dtype == "float32":
        xt = em.add("Transpose", [ins[0]], perm=[3, 0, 1, 2])  # (cin, N, H, W)
        dyt = em.add("Transpose", [ins[1]], perm=[3, 0, 1, 2])  # (cout, N, oh, ow)
        dwt = em.add("Conv", [xt, dyt], strides=list(win.dilation),
                     dilations=list(win.strides), pads=_onnx_pads(win))
        # The correlation may run past the kernel where 'valid' leaves rows unread.
        dwt = em.add("Slice", [dwt, em.ints([0, 0]), em.ints([kh, kw]), em.ints([2, 3])])
        return em.add("Transpose", [dwt], perm=[2, 3, 0, 1])
    xp = pad_or_crop(em, ins[0], *win.pads)
    cols = em.add("Reshape", [patches(em, xp, win), em.ints([-1, kh * kw * cin])])
    rows = em.add("Reshape", [ins[1], em.ints([-1, cout])])
    dw = em.add("MatMul", [em.add("Transpose", [cols], perm=[1, 0]), rows])
    return em.add("Reshape", [dw, em.ints([kh, kw, cin, cout])])


# -- depthwise convolution -------------------------------------------------------------------
# float32: the forms of conv2d and its gradients with ONNX's grouped Conv, one group per
# channel. onnxruntime has no float64 Conv: other dtypes take an explicit form, the window's
# taps (strided slices of the padded image) times the kernel's entries, summed.
def _depthwise_taps(em: Emitter, xp: str, win: Window, channels: int) -> str:
    """[N, oh, ow, kh*kw, C, 1]: the padded image's taps, one per kernel position."""
    (oh, ow), taps = win.out, win.kernel[0] * win.kernel[1]
    return em.add("Reshape", [patches(em, xp, win), em.ints([-1, oh, ow, taps, channels, 1])])


@lowering("depthwise_conv2d")
def _depthwise_conv2d(em: Emitter, node: Node, ins: list[str]) -> str:
    x, w = node.inputs
    kh, kw, channels, multiplier = w.type.shape
    win = _conv_window(node, x.type.shape[1:3], (kh, kw))
    if x.type.dtype == "float32":  # grouped Conv: one group per channel, HWIO (kh, kw, 1, C*M)
        kernel = em.add("Reshape", [ins[1], em.ints([kh, kw, 1, channels * multiplier])])
        return conv_nhwc(em, ins[0], kernel, (kh, kw, 1, channels * multiplier), win,
                         "float32", group=channels)
    taps = _depthwise_taps(em, pad_or_crop(em, ins[0], *win.pads), win, channels)
    kernel = em.add("Reshape", [ins[1], em.ints([kh * kw, channels, multiplier])])
    y = em.add("ReduceSum", [em.add("Mul", [taps, kernel]), em.ints([3])], keepdims=0)
    return em.add("Reshape", [y, em.ints([-1, *win.out, channels * multiplier])])


@lowering("depthwise_conv2d_grad_input")
def _depthwise_conv2d_grad_input(em: Emitter, node: Node, ins: list[str]) -> str:
    """Each tap's share, dy times the tap's kernel entries summed over the multiplier,
    spread by the strides and padded into place in the padded image; summed; cropped."""
    dy, w = node.inputs
    kh, kw, channels, multiplier = w.type.shape
    size = node.attr["input_size"]
    win = _conv_window(node, size, (kh, kw))
    if dy.type.dtype == "float32":  # conv2d_grad_input's form, grouped: (kh, kw, M, C) per group
        return conv_grad_input(em, ins[0], dy.type, ins[1], w.type.shape, win, size,
                               "float32", group=channels)
    (oh, ow), (sh, sw), (dh, dw) = win.out, win.strides, win.dilation
    padded = (size[0] + sum(win.pads[0]), size[1] + sum(win.pads[1]))
    dy5 = em.add("Reshape", [ins[0], em.ints([-1, oh, ow, channels, multiplier])])
    share_type = TensorType((dy.type.shape[0], oh, ow, channels), dy.type.dtype)
    parts = []
    for i in range(kh):
        for j in range(kw):
            tap = em.add("Slice", [ins[1], em.ints([i, j]), em.ints([i + 1, j + 1]),
                                   em.ints([0, 1])])
            tap = em.add("Reshape", [tap, em.ints([channels, multiplier])])
            share = em.add("ReduceSum", [em.add("Mul", [dy5, tap]), em.ints([4])], keepdims=0)
            share = spread(em, share, share_type, (sh, sw))
            rows = (i * dh, padded[0] - i * dh - (oh - 1) * sh - 1)
            cols = (j * dw, padded[1] - j * dw - (ow - 1) * sw - 1)
            parts.append(pad_or_crop(em, share, rows, cols))
    total = parts[0] if len(parts) == 1 else em.add("Sum", parts)
    (top, bottom), (left, right) = win.pads
    return pad_or_crop(em, total, (-top, -bottom), (-left, -right))


@lowering("depthwise_conv2d_grad_filter")
def _depthwise_conv2d_grad_filter(em: Emitter, node: Node, ins: list[str]) -> str:
    x, dy = node.inputs
    kh, kw = node.attr["kernel_size"]
    channels = x.type.shape[3]
    multiplier = dy.type.shape[3] // channels
    win = _conv_window(node, x.type.shape[1:3], (kh, kw))
    if x.type.dtype == "float32":
        # conv2d_grad_filter's form, grouped: the images of channel c (1, C*N, H, W) as group
        # c, correlated with dy's channels c*M..c*M+M-1 (C*M, N, oh, ow) as its kernels.
        height, width = x.type.shape[1:3]
        xt = em.add("Reshape", [em.add("Transpose", [ins[0]], perm=[3, 0, 1, 2]),
                                em.ints([1, -1, height, width])])
        dyt = em.add("Transpose", [ins[1]], perm=[3, 0, 1, 2])
        dwt = em.add("Conv", [xt, dyt], strides=list(win.dilation),
                     dilations=list(win.strides), pads=_onnx_pads(win), group=channels)
        dwt = em.add("Slice", [dwt, em.ints([0, 0]), em.ints([kh, kw]), em.ints([2, 3])])
        dwt = em.add("Reshape", [dwt, em.ints([channels, multiplier, kh, kw])])
        return em.add("Transpose", [dwt], perm=[2, 3, 0, 1])
    taps = _depthwise_taps(em, pad_or_crop(em, ins[0], *win.pads), win, channels)
    dy6 = em.add("Reshape", [ins[1], em.ints([-1, *win.out, 1, channels, multiplier])])
    dw = em.add("ReduceSum", [em.add("Mul", [taps, dy6]), em.ints([0, 1, 2])], keepdims=0)
    return em.add("Reshape", [dw, em.ints([kh, kw, channels, multiplier])])


# -- pooling ---------------------------------------------------------------------------------
def _pool_window(node: Node, size: tuple[int, int]) -> Window:
    pool = node.attr["pool_size"]
    return window(size, pool, node.attr["strides"] or pool, node.attr["padding"])


def _max_pool(em: Emitter, x: str, win: Window, outputs: int = 1) -> Any:
    """MaxPool over NCHW: the pooled image, and with outputs=2 the flat NCHW index of each
    window's first maximum too."""
    return em.add("MaxPool", [x], outputs, kernel_shape=list(win.kernel),
                  strides=list(win.strides), pads=_onnx_pads(win))


@lowering("max_pool2d")
def _max_pool2d(em: Emitter, node: Node, ins: list[str]) -> str:
    win = _pool_window(node, node.inputs[0].type.shape[1:3])
    y = _max_pool(em, em.add("Transpose", ins, perm=NHWC_TO_NCHW), win)
    return em.add("Transpose", [y], perm=NCHW_TO_NHWC)


@lowering("max_pool2d_grad")
def _max_pool2d_grad(em: Emitter, node: Node, ins: list[str]) -> str:
    x = node.inputs[0].type
    win = _pool_window(node, x.shape[1:3])
    xn = em.add("Transpose", [ins[0]], perm=NHWC_TO_NCHW)
    _, indices = _max_pool(em, xn, win, outputs=2)
    flat_dy = em.add("Reshape", [em.add("Transpose", [ins[1]], perm=NHWC_TO_NCHW),
                                 em.ints([-1])])
    flat_x = em.add("Reshape", [xn, em.ints([-1])])
    zeros = em.add("ConstantOfShape", [em.add("Shape", [flat_x])],
                   value=numpy_helper.from_array(np.zeros(1, numpy_dtype(x.dtype))))
    dx = em.add("ScatterElements", [zeros, em.add("Reshape", [indices, em.ints([-1])]), flat_dy],
                axis=0, reduction="add")
    dx = em.add("Reshape", [dx, em.add("Shape", [xn])])
    return em.add("Transpose", [dx], perm=NCHW_TO_NHWC)


@lowering("max_pool2d_select")
def _max_pool2d_select(em: Emitter, node: Node, ins: list[str]) -> str:
    win = _pool_window(node, node.inputs[0].type.shape[1:3])
    _, indices = _max_pool(em, em.add("Transpose", [ins[0]], perm=NHWC_TO_NCHW), win, 2)
    flat_g = em.add("Reshape", [em.add("Transpose", [ins[1]], perm=NHWC_TO_NCHW),
                                em.ints([-1])])
    return em.add("Transpose", [em.add("Gather", [flat_g, indices], axis=0)], perm=NCHW_TO_NHWC)


def window_counts(win: Window, size: tuple[int, int], dtype: str) -> np.ndarray:
    """How many real (unpadded) elements each window covers, [1, oh, ow, 1]."""
    ones = win.pad(np.ones((1, *size, 1), numpy_dtype(dtype)))
    counts = np.zeros((1, *win.out, 1), numpy_dtype(dtype))
    for _, _, rows, cols in win.offsets():
        counts += ones[:, rows, cols, :]
    return counts


@lowering("avg_pool2d")
def _avg_pool2d(em: Emitter, node: Node, ins: list[str]) -> str:
    x = node.inputs[0].type
    win = _pool_window(node, x.shape[1:3])
    if x.dtype == "float32":
        y = em.add("AveragePool", [em.add("Transpose", ins, perm=NHWC_TO_NCHW)],
                   kernel_shape=list(win.kernel), strides=list(win.strides),
                   pads=_onnx_pads(win), count_include_pad=0)
        return em.add("Transpose", [y], perm=NCHW_TO_NHWC)
    xp = pad_or_crop(em, ins[0], *win.pads)
    total = None
    for _, _, rows, cols in win.offsets():
        piece = em.add("Slice", [xp, em.ints([rows.start, cols.start]),
                                 em.ints([rows.stop, cols.stop]), em.ints([1, 2]),
                                 em.ints([rows.step, cols.step])])
        total = piece if total is None else em.add("Add", [total, piece])
    return em.add("Div", [total, em.const(window_counts(win, x.shape[1:3], x.dtype))])


@lowering("avg_pool2d_grad")
def _avg_pool2d_grad(em: Emitter, node: Node, ins: list[str]) -> str:
    dy = node.inputs[0].type
    size = node.attr["input_size"]
    win = _pool_window(node, size)
    _, oh, ow, c = dy.shape
    share = em.add("Div", [ins[0], em.const(window_counts(win, size, dy.dtype))])
    # Each channel alone, as a batch of one-channel images: [N*C, oh, ow, 1].
    images = em.add("Reshape", [em.add("Transpose", [share], perm=NHWC_TO_NCHW),
                                em.ints([-1, oh, ow, 1])])
    ones = em.const(np.ones((*win.kernel, 1, 1), numpy_dtype(dy.dtype)))
    one_channel = TensorType((dy.shape[0], oh, ow, 1), dy.dtype)
    dx = conv_grad_input(em, images, one_channel, ones, (*win.kernel, 1, 1), win, size,
                         dy.dtype)
    dx = em.add("Reshape", [dx, em.ints([-1, c, *size])])
    return em.add("Transpose", [dx], perm=NCHW_TO_NHWC)


# -- softmax ---------------------------------------------------------------------------------
@lowering("softmax", "log_softmax")
def _softmax(em: Emitter, node: Node, ins: list[str]) -> str:
    x = node.inputs[0].type
    axes = normalize_axes(node.attr["axis"], x.rank, node.op)
    if len(axes) == 1:
        return em.add("Softmax" if node.op == "softmax" else "LogSoftmax", ins, axis=axes[0])
    # Over several axes jointly: x - max, then exp and its sum, as the reference.
    shifted = em.add("Sub", [ins[0], em.add("ReduceMax", [ins[0], em.ints(axes)], keepdims=1)])
    e = em.add("Exp", [shifted])
    total = em.add("ReduceSum", [e, em.ints(axes)], keepdims=1)
    if node.op == "softmax":
        return em.add("Div", [e, total])
    return em.add("Sub", [shifted, em.add("Log", [total])])
