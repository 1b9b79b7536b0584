"""Max and average pooling over NHWC images for CUDA, and their gradients as gathers (each
input element sums what the windows covering it send it: no atomics, a fixed order).

Geometry arguments, in order: pool_h, pool_w, stride_h, stride_w, pad_top, pad_left (the
caller computes TF's 'same' split). Padded cells never count; a max ties to the first
maximum in row-major window order, padded cells reading -inf, as kiln.ir.ops.nn's
references. One thread per output (or input, for the gradients) element, grid-striding.
"""

from __future__ import annotations

import math

from numba import cuda


@cuda.jit(device=True)
def window_argmax(x, n, oh, ow, c, ph, pw, sh, sw, pt, pl):
    """The window position k = i * pw + j of the first maximum (padded cells -inf)."""
    height, width = x.shape[1], x.shape[2]
    h0, w0 = oh * sh - pt, ow * sw - pl
    best, arg = -math.inf, 0
    for i in range(ph):
        for j in range(pw):
            h, w = h0 + i, w0 + j
            v = -math.inf
            if 0 <= h < height and 0 <= w < width:
                v = x[n, h, w, c]
            if (i == 0 and j == 0) or v > best:
                best, arg = v, i * pw + j
    return arg


@cuda.jit(device=True)
def covering(pos, pad, pool, stride, size_out):
    """The first and one-past-last output positions whose window covers input `pos`."""
    r = pos + pad - pool + 1
    first = 0 if r <= 0 else (r + stride - 1) // stride
    return first, min(size_out, (pos + pad) // stride + 1)


@cuda.jit
def max_pool2d(x, out, ph, pw, sh, sw, pt, pl):
    height, width = x.shape[1], x.shape[2]
    o_h, o_w, chans = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = t % chans
        ow = (t // chans) % o_w
        oh = (t // (chans * o_w)) % o_h
        n = t // (chans * o_w * o_h)
        best = -math.inf
        for i in range(ph):
            h = oh * sh - pt + i
            for j in range(pw):
                w = ow * sw - pl + j
                if 0 <= h < height and 0 <= w < width:
                    v = x[n, h, w, c]
                    if v > best or v != v:  # NaN wins and stays, as np.maximum
                        best = v
        out[n, oh, ow, c] = best


@cuda.jit
def max_pool2d_grad(x, dy, dx, ph, pw, sh, sw, pt, pl):
    height, width, chans = dx.shape[1], dx.shape[2], dx.shape[3]
    o_h, o_w = dy.shape[1], dy.shape[2]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = t % chans
        w = (t // chans) % width
        h = (t // (chans * width)) % height
        n = t // (chans * width * height)
        oh0, oh1 = covering(h, pt, ph, sh, o_h)
        ow0, ow1 = covering(w, pl, pw, sw, o_w)
        acc = 0.0
        for oh in range(oh0, oh1):
            for ow in range(ow0, ow1):
                k = window_argmax(x, n, oh, ow, c, ph, pw, sh, sw, pt, pl)
                if oh * sh - pt + k // pw == h and ow * sw - pl + k % pw == w:
                    acc += dy[n, oh, ow, c]
        dx[n, h, w, c] = acc


@cuda.jit
def max_pool2d_select(x, g, out, ph, pw, sh, sw, pt, pl):
    height, width = x.shape[1], x.shape[2]
    o_h, o_w, chans = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = t % chans
        ow = (t // chans) % o_w
        oh = (t // (chans * o_w)) % o_h
        n = t // (chans * o_w * o_h)
        k = window_argmax(x, n, oh, ow, c, ph, pw, sh, sw, pt, pl)
        h, w = oh * sh - pt + k // pw, ow * sw - pl + k % pw
        if 0 <= h < height and 0 <= w < width:
            out[n, oh, ow, c] = g[n, h, w, c]
        else:
            out[n, oh, ow, c] = 0


@cuda.jit(device=True)
def window_count(o, stride, pad, pool, size):
    """How many real (unpadded) cells a window starting at o * stride - pad covers."""
    lo = o * stride - pad
    return min(lo + pool, size) - max(lo, 0)


@cuda.jit
def avg_pool2d(x, out, ph, pw, sh, sw, pt, pl):
    height, width = x.shape[1], x.shape[2]
    o_h, o_w, chans = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = t % chans
        ow = (t // chans) % o_w
        oh = (t // (chans * o_w)) % o_h
        n = t // (chans * o_w * o_h)
        acc = 0.0
        for i in range(ph):
            h = oh * sh - pt + i
            for j in range(pw):
                w = ow * sw - pl + j
                if 0 <= h < height and 0 <= w < width:
                    acc += x[n, h, w, c]
        count = window_count(oh, sh, pt, ph, height) * window_count(ow, sw, pl, pw, width)
        out[n, oh, ow, c] = acc / count


@cuda.jit
def avg_pool2d_grad(dy, dx, ph, pw, sh, sw, pt, pl):
    height, width, chans = dx.shape[1], dx.shape[2], dx.shape[3]
    o_h, o_w = dy.shape[1], dy.shape[2]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = t % chans
        w = (t // chans) % width
        h = (t // (chans * width)) % height
        n = t // (chans * width * height)
        oh0, oh1 = covering(h, pt, ph, sh, o_h)
        ow0, ow1 = covering(w, pl, pw, sw, o_w)
        acc = 0.0
        for oh in range(oh0, oh1):
            rows = window_count(oh, sh, pt, ph, height)
            for ow in range(ow0, ow1):
                acc += dy[n, oh, ow, c] / (rows * window_count(ow, sw, pl, pw, width))
        dx[n, h, w, c] = acc


GEOMETRY = "int64, int64, int64, int64, int64, int64"


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for name in ("float32", "float64"):
        a4, c4 = f"{name}[:, :, :, :]", f"{name}[:, :, :, ::1]"
        cases += [
            (f"max_pool2d[{name}]", max_pool2d.py_func, f"void({a4}, {c4}, {GEOMETRY})"),
            (f"max_pool2d_grad[{name}]", max_pool2d_grad.py_func,
             f"void({a4}, {a4}, {c4}, {GEOMETRY})"),
            (f"max_pool2d_select[{name}]", max_pool2d_select.py_func,
             f"void({a4}, {a4}, {c4}, {GEOMETRY})"),
            (f"avg_pool2d[{name}]", avg_pool2d.py_func, f"void({a4}, {c4}, {GEOMETRY})"),
            (f"avg_pool2d_grad[{name}]", avg_pool2d_grad.py_func,
             f"void({a4}, {c4}, {GEOMETRY})"),
        ]
    return cases
