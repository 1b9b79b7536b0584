"""Launchers of the ops of kiln.ir.ops.nn for the numba-cuda backend.

Convolutions are im2col + the tiled GEMM (ops/linalg.py's `gemm`, cuBLAS when chosen):
conv2d = patches @ w[KK, O]; conv2d_grad_input = col2im(dy @ w[KK, O]^T), a gather;
conv2d_grad_filter = patches^T @ dy (split-K, since its K is batch x output pixels). A 1x1
kernel with stride 1 and no padding skips the patch matrix. The depthwise convolution and
its gradients run kernels/conv.py's direct loops, one thread per output element.
Transposed operands are strided views, never copies. Pooling and softmax run the kernels
of kernels/pool.py and kernels/softmax.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kiln.ir.graph import Node
from kiln.ir.ops.nn import Window, conv_op_window, window
from kiln.ir.types import normalize_axes
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.kernels import conv as KC
from kiln.runtimes.numba_cuda.kernels import pool as KP
from kiln.runtimes.numba_cuda.kernels import softmax as KS
from kiln.runtimes.numba_cuda.kernels.arrays import element_strides, view
from kiln.runtimes.numba_cuda.kernels.layout import (
    contiguous,
    copy_into,
    launch_1d,
    reshaped,
    scratch,
)
from kiln.runtimes.numba_cuda.ops.linalg import Epilogue, gemm


# -- convolutions --------------------------------------------------------------------------
def _conv_window(node: Node, size: tuple[int, int], kernel: tuple[int, int]) -> Window:
    a = node.attr
    return window(size, kernel, a["strides"], a["padding"], a["dilation"])


def _pointwise(win: Window) -> bool:
    """A 1x1 kernel, stride 1, no padding: the image itself is the patch matrix."""
    return win.kernel == (1, 1) and win.strides == (1, 1) and win.pads == ((0, 0), (0, 0))


def _geometry(win: Window) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.strides, win.dilation
    return kh, kw, sh, sw, win.pads[0][0], win.pads[1][0], dh, dw, *win.out


def _patches(ctx: RunContext, x: Any, win: Window) -> Any:
    """The [N*OH*OW, KH*KW*C] patch matrix of x (x itself, reshaped, for _pointwise)."""
    n, c = x.shape[0], x.shape[3]
    rows = n * win.out[0] * win.out[1]
    if _pointwise(win):
        return reshaped(ctx, x, (rows, c))
    cols = scratch(ctx, "patches", (rows, win.kernel[0] * win.kernel[1] * c),
                   np.dtype(x.dtype).name)
    launch_1d(ctx, KC.im2col, cols.size, x, cols, *_geometry(win))
    return cols


def _transposed(matrix: Any) -> Any:
    """The transpose of a C-contiguous matrix, as a view."""
    rows, cols = matrix.shape
    return view(matrix, (cols, rows), (1, cols))


def launch_conv2d(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    x, w = inputs
    (out,) = outputs
    kh, kw, cin, cout = w.shape
    win = _conv_window(node, tuple(x.shape[1:3]), (kh, kw))
    if out.size == 0:
        return
    gemm(ctx, _patches(ctx, x, win), reshaped(ctx, w, (kh * kw * cin, cout)),
         [out.reshape(out.size // cout, cout), None, None], Epilogue())


def launch_conv2d_grad_input(ctx: RunContext, node: Node, inputs: list[Any],
                             outputs: list[Any]) -> None:
    dy, w = inputs
    (dx,) = outputs
    kh, kw, cin, cout = w.shape
    win = _conv_window(node, tuple(node.attr["input_size"]), (kh, kw))
    if dx.size == 0:
        return
    dy2 = reshaped(ctx, dy, (dy.size // cout, cout))
    w_t = _transposed(reshaped(ctx, w, (kh * kw * cin, cout)))
    if _pointwise(win):
        gemm(ctx, dy2, w_t, [dx.reshape(dx.size // cin, cin), None, None], Epilogue())
        return
    dcols = scratch(ctx, "patches", (dy2.shape[0], kh * kw * cin), np.dtype(dx.dtype).name)
    gemm(ctx, dy2, w_t, [dcols, None, None], Epilogue())
    launch_1d(ctx, KC.col2im, dx.size, dcols, dx, *_geometry(win))


def launch_conv2d_grad_filter(ctx: RunContext, node: Node, inputs: list[Any],
                              outputs: list[Any]) -> None:
    x, dy = inputs
    (dw,) = outputs
    kh, kw, cin, cout = dw.shape
    win = _conv_window(node, tuple(x.shape[1:3]), (kh, kw))
    if dw.size == 0:
        return
    patches = contiguous(ctx, _patches(ctx, x, win))
    dy2 = reshaped(ctx, dy, (dy.size // cout if cout else 0, cout))
    gemm(ctx, _transposed(patches), dy2, [dw.reshape(kh * kw * cin, cout), None, None],
         Epilogue())


def _depthwise(kernel: Any) -> Launcher:
    """A depthwise op's launcher: one thread per output element of kernels/conv.py's direct
    loops, over the op's window."""
    def launch(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
        (out,) = outputs
        if out.size:
            launch_1d(ctx, kernel, out.size, *inputs, out, *_geometry(conv_op_window(node)))

    return launch


# -- pooling -------------------------------------------------------------------------------
def _pool_window(node: Node, size: tuple[int, int]) -> tuple[int, ...]:
    a = node.attr
    pool = tuple(a["pool_size"])
    win = window(size, pool, tuple(a["strides"] or pool), a["padding"])
    return (*win.kernel, *win.strides, win.pads[0][0], win.pads[1][0])


def _pool(kernel: Any, size_from: str) -> Launcher:
    """A pooling launcher: one thread per element of its output; `size_from` says where
    the input image's (H, W) comes from: the first operand or the input_size attribute."""

    def launch(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
        size = (tuple(node.attr["input_size"]) if size_from == "attr"
                else tuple(inputs[0].shape[1:3]))
        (out,) = outputs
        if out.size:
            launch_1d(ctx, kernel, out.size, *inputs, out, *_pool_window(node, size))

    return launch


# -- softmax -------------------------------------------------------------------------------
def _softmax(log: int) -> Launcher:
    def launch(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
        (x,), (out,) = inputs, outputs
        if out.size == 0:
            return
        rank = len(x.shape)
        axes = sorted(normalize_axes(node.attr["axis"], rank, node.op))
        if axes == list(range(axes[0], axes[-1] + 1)):
            lo, hi = axes[0], axes[-1] + 1
            shape3 = (math.prod(x.shape[:lo]), math.prod(x.shape[lo:hi]),
                      math.prod(x.shape[hi:]))
            _launch_softmax(ctx, reshaped(ctx, x, shape3), out.reshape(shape3), log)
            return
        # Axes that are not adjacent: normalize a copy with them moved last, copy back.
        perm = [a for a in range(rank) if a not in axes] + axes
        x_strides, o_strides = element_strides(x), element_strides(out)
        moved_shape = tuple(x.shape[a] for a in perm)
        moved = contiguous(ctx, view(x, moved_shape, [x_strides[a] for a in perm]))
        k = math.prod(x.shape[a] for a in axes)
        result = ctx.empty(moved_shape, np.dtype(out.dtype).name)
        shape3 = (out.size // k, k, 1)
        _launch_softmax(ctx, moved.reshape(shape3), result.reshape(shape3), log)
        copy_into(ctx, result, view(out, moved_shape, [o_strides[a] for a in perm]))

    return launch


def _launch_softmax(ctx: RunContext, x3: Any, out3: Any, log: int) -> None:
    rows = x3.shape[0] * x3.shape[2]
    blocks = min(-(-rows // KS.ROWS), 65535 * 8)
    ctx.launch(KS.softmax, blocks, (KS.LANES, KS.ROWS), x3, out3, log)


LAUNCHERS: dict[str, Launcher] = {
    "conv2d": launch_conv2d,
    "conv2d_grad_input": launch_conv2d_grad_input,
    "conv2d_grad_filter": launch_conv2d_grad_filter,
    "depthwise_conv2d": _depthwise(KC.depthwise_conv2d),
    "depthwise_conv2d_grad_input": _depthwise(KC.depthwise_conv2d_grad_input),
    "depthwise_conv2d_grad_filter": _depthwise(KC.depthwise_conv2d_grad_filter),
    "max_pool2d": _pool(KP.max_pool2d, "x"),
    "max_pool2d_grad": _pool(KP.max_pool2d_grad, "x"),
    "max_pool2d_select": _pool(KP.max_pool2d_select, "x"),
    "avg_pool2d": _pool(KP.avg_pool2d, "x"),
    "avg_pool2d_grad": _pool(KP.avg_pool2d_grad, "attr"),
    "softmax": _softmax(0),
    "log_softmax": _softmax(1),
}
