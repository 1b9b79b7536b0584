"""Convolution helpers for CUDA: im2col (NHWC image -> patch matrix) and col2im (patch
matrix -> image, a gather: each image element sums the patch entries that read it, so no
atomics and a fixed summation order). The products themselves are GEMMs (kernels/gemm.py).
The depthwise convolution and its gradients are direct loops (gathers too).

Geometry arguments, in order: kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h,
dilation_w. Patch row p = (n * OH + oh) * OW + ow, column q = (i * KW + j) * C + c, the
order of a HWIO kernel reshaped to [KH*KW*C, O]. One thread per element, grid-striding.
"""

from __future__ import annotations

from numba import cuda


@cuda.jit
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh_size, ow_size):
    """cols[p, q] = x[n, oh*sh - pt + i*dh, ow*sw - pl + j*dw, c], 0 outside the image."""
    height, width, chans = x.shape[1], x.shape[2], x.shape[3]
    width_q = cols.shape[1]
    total = cols.shape[0] * width_q
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        q, p = t % width_q, t // width_q
        c = q % chans
        j = (q // chans) % kw
        i = q // (chans * kw)
        ow = p % ow_size
        oh = (p // ow_size) % oh_size
        n = p // (ow_size * oh_size)
        h = oh * sh - pt + i * dh
        w = ow * sw - pl + j * dw
        if 0 <= h < height and 0 <= w < width:
            cols[p, q] = x[n, h, w, c]
        else:
            cols[p, q] = 0


@cuda.jit
def col2im(dcols, dx, kh, kw, sh, sw, pt, pl, dh, dw, oh_size, ow_size):
    """dx[n, h, w, c] = sum of dcols[p, q] over the (output position, kernel position)
    pairs whose patch entry reads x[n, h, w, c]."""
    height, width, chans = dx.shape[1], dx.shape[2], dx.shape[3]
    total = dx.shape[0] * height * width * chans
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = t % chans
        w = (t // chans) % width
        h = (t // (chans * width)) % height
        n = t // (chans * width * height)
        acc = 0.0  # float64: exact enough for either dtype, and NaN-safe to start
        for i in range(kh):
            rh = h + pt - i * dh
            if rh < 0 or rh % sh != 0 or rh // sh >= oh_size:
                continue
            oh = rh // sh
            for j in range(kw):
                rw = w + pl - j * dw
                if rw < 0 or rw % sw != 0 or rw // sw >= ow_size:
                    continue
                acc += dcols[(n * oh_size + oh) * ow_size + rw // sw, (i * kw + j) * chans + c]
        dx[n, h, w, c] = acc


# -- depthwise convolution -----------------------------------------------------------------
# Direct loops, one thread per output element (a handful of multiply-adds each: no GEMM).
# w [KH, KW, C, M]; output channel c * M + m. The input gradient is a gather, like col2im.
@cuda.jit
def depthwise_conv2d(x, w, out, kh, kw, sh, sw, pt, pl, dh, dw, oh_size, ow_size):
    """out[n, oh, ow, c*M + m] = sum over taps of x[n, oh*sh - pt + i*dh, ..., c] w[i, j, c, m]."""
    height, width, chans = x.shape[1], x.shape[2], x.shape[3]
    mult = w.shape[3]
    outs = chans * mult
    total = out.shape[0] * oh_size * ow_size * outs
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        k = t % outs
        c, m = k // mult, k % mult
        ow = (t // outs) % ow_size
        oh = (t // (outs * ow_size)) % oh_size
        n = t // (outs * ow_size * oh_size)
        acc = 0.0
        for i in range(kh):
            h = oh * sh - pt + i * dh
            if h < 0 or h >= height:
                continue
            for j in range(kw):
                wc = ow * sw - pl + j * dw
                if 0 <= wc < width:
                    acc += x[n, h, wc, c] * w[i, j, c, m]
        out[n, oh, ow, k] = acc


@cuda.jit
def depthwise_conv2d_grad_input(dy, w, dx, kh, kw, sh, sw, pt, pl, dh, dw, oh_size, ow_size):
    """dx[n, h, w, c] = sum over the (output position, tap, m) that read x[n, h, w, c]."""
    height, width, chans = dx.shape[1], dx.shape[2], dx.shape[3]
    mult = w.shape[3]
    total = dx.shape[0] * height * width * chans
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = t % chans
        wc = (t // chans) % width
        h = (t // (chans * width)) % height
        n = t // (chans * width * height)
        acc = 0.0
        for i in range(kh):
            rh = h + pt - i * dh
            if rh < 0 or rh % sh != 0 or rh // sh >= oh_size:
                continue
            for j in range(kw):
                rw = wc + pl - j * dw
                if rw < 0 or rw % sw != 0 or rw // sw >= ow_size:
                    continue
                for m in range(mult):
                    acc += dy[n, rh // sh, rw // sw, c * mult + m] * w[i, j, c, m]
        dx[n, h, wc, c] = acc


@cuda.jit
def depthwise_conv2d_grad_filter(x, dy, dwk, kh, kw, sh, sw, pt, pl, dh, dw, oh_size,
                                 ow_size):
    """dwk[i, j, c, m] = sum over images and output positions of x's tap times dy: one
    thread per kernel entry, summing in a fixed order."""
    batch, height, width = x.shape[0], x.shape[1], x.shape[2]
    chans, mult = dwk.shape[2], dwk.shape[3]
    total = kh * kw * chans * mult
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        m = t % mult
        c = (t // mult) % chans
        j = (t // (mult * chans)) % kw
        i = t // (mult * chans * kw)
        acc = 0.0
        for n in range(batch):
            for oh in range(oh_size):
                h = oh * sh - pt + i * dh
                if h < 0 or h >= height:
                    continue
                for ow in range(ow_size):
                    wc = ow * sw - pl + j * dw
                    if 0 <= wc < width:
                        acc += x[n, h, wc, c] * dy[n, oh, ow, c * mult + m]
        dwk[i, j, c, m] = acc


GEOMETRY = "int64, int64, int64, int64, int64, int64, int64, int64, int64, int64"


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for name in ("float32", "float64"):
        a4, c2 = f"{name}[:, :, :, :]", f"{name}[:, ::1]"
        cases.append((f"im2col[{name}]", im2col.py_func, f"void({a4}, {c2}, {GEOMETRY})"))
        cases.append((f"col2im[{name}]", col2im.py_func,
                      f"void({c2}, {name}[:, :, :, ::1], {GEOMETRY})"))
        c4 = f"{name}[:, :, :, ::1]"
        for kernel in (depthwise_conv2d, depthwise_conv2d_grad_input,
                       depthwise_conv2d_grad_filter):
            cases.append((f"{kernel.py_func.__name__}[{name}]", kernel.py_func,
                          f"void({a4}, {a4}, {c4}, {GEOMETRY})"))
    return cases
