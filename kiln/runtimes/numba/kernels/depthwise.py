"""depthwise_conv2d and its two gradients (NHWC images, kernels [KH, KW, C, M], output
channel c * M + m), as direct loops: each output is a handful of multiply-adds, so there is no
GEMM to hand to BLAS.

Geometry as in conv.py: output row i, kernel row p read input row
`i * stride_h - pad_top + p * dilation_h` (columns alike); rows outside [0, H) are zero
padding. Each image is first copied into a zero-padded buffer of exactly the rows and
columns the windows read, so the loops have no bounds tests. Then, per kernel tap (p, q)
and output row, one loop over the row's (column, channel) pairs: with M = 1 and a column
stride of 1 these are contiguous runs in the padded row, the output row and the kernel
entries tiled along the row (`_tiled`), indexed unsigned (no negative-index wraparound
check), so LLVM vectorizes it whatever the channel count. Other strides and multipliers take
nested loops. The forward and the input gradient thread over images; the filter gradient
sums a fixed number of image slices (`GRAD_FILTER_SLICES`) into partial kernels, added in
order: results do not depend on the thread count.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_COMPUTE

# The filter gradient's partial kernels: one per slice of the images, summed in order.
GRAD_FILTER_SLICES = 8


@numba.njit(cache=True, fastmath=False)
def _padded_size(oh, ow, kh, kw, sh, sw, dh, dw):
    return (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1


@numba.njit(cache=True, fastmath=False)
def _pad_image(x, b, xp, pt, pl):
    """xp (HP, WP, C) = image b of x at offset (pt, pl), zeros around; rows and columns of x
    beyond xp are not read by any window."""
    h, w = x.shape[1], x.shape[2]
    hp, wp = xp.shape[0], xp.shape[1]
    xp[:] = 0
    for y in range(max(0, -pt), min(h, hp - pt)):
        for z in range(max(0, -pl), min(w, wp - pl)):
            xp[y + pt, z + pl, :] = x[b, y, z, :]


@numba.njit(cache=True, fastmath=False)
def _tiled(w, ow):
    """[KH, KW, OW * C]: each tap's kernel entries (multiplier 1) repeated along a row."""
    kh, kw, c = w.shape[0], w.shape[1], w.shape[2]
    out = np.empty((kh, kw, ow * c), w.dtype)
    for p in range(kh):
        for q in range(kw):
            for j in range(ow):
                out[p, q, j * c:(j + 1) * c] = w[p, q, :, 0]
    return out


@numba.njit(cache=True, fastmath=False)
def _forward_image(x, w, wt, out, b, sh, sw, pt, pl, dh, dw):
    kh, kw, c, m = w.shape
    oh, ow = out.shape[1], out.shape[2]
    hp, wp = _padded_size(oh, ow, kh, kw, sh, sw, dh, dw)
    xp = np.empty((hp, wp, c), x.dtype)
    _pad_image(x, b, xp, pt, pl)
    rows = xp.reshape(hp, wp * c)
    image = out[b].reshape(oh, ow * c * m)
    image[:] = 0
    run = ow * c
    for p in range(kh):
        for q in range(kw):
            if m == 1 and sw == 1:
                taps, base = wt[p, q], q * dw * c
                for i in range(oh):
                    src, dst = rows[i * sh + p * dh], image[i]
                    for t in range(run):
                        u = np.uint64(t)
                        dst[u] += src[np.uint64(base + t)] * taps[u]
                continue
            for i in range(oh):
                y = i * sh + p * dh
                for j in range(ow):
                    z = j * sw + q * dw
                    for ch in range(c):
                        v = xp[y, z, ch]
                        for k in range(m):
                            image[i, (j * c + ch) * m + k] += v * w[p, q, ch, k]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_depthwise_conv2d(x, w, out, sh, sw, pt, pl, dh, dw):
    """out = depthwise_conv2d(x, w), one image per task."""
    n = x.shape[0]
    wt = _tiled(w, out.shape[2]) if w.shape[3] == 1 else np.empty((1, 1, 1), w.dtype)
    if out.size * w.shape[0] * w.shape[1] < PARALLEL_MIN_COMPUTE:
        for b in range(n):
            _forward_image(x, w, wt, out, b, sh, sw, pt, pl, dh, dw)
    else:
        for b in prange(n):
            _forward_image(x, w, wt, out, b, sh, sw, pt, pl, dh, dw)


@numba.njit(cache=True, fastmath=False)
def _grad_input_image(dy, w, wt, dx, b, sh, sw, pt, pl, dh, dw):
    """Image b of dx: each tap's share of dy added into a padded image, then cropped."""
    kh, kw, c, m = w.shape
    h, wd = dx.shape[1], dx.shape[2]
    oh, ow = dy.shape[1], dy.shape[2]
    hp, wp = _padded_size(oh, ow, kh, kw, sh, sw, dh, dw)
    dxp = np.zeros((hp, wp, c), dx.dtype)
    rows = dxp.reshape(hp, wp * c)
    grads = dy[b].reshape(oh, ow * c * m)
    run = ow * c
    for p in range(kh):
        for q in range(kw):
            if m == 1 and sw == 1:
                taps, base = wt[p, q], q * dw * c
                for i in range(oh):
                    src, dst = grads[i], rows[i * sh + p * dh]
                    for t in range(run):
                        u = np.uint64(t)
                        dst[np.uint64(base + t)] += src[u] * taps[u]
                continue
            for i in range(oh):
                y = i * sh + p * dh
                for j in range(ow):
                    z = j * sw + q * dw
                    for ch in range(c):
                        acc = dxp[y, z, ch]
                        for k in range(m):
                            acc += grads[i, (j * c + ch) * m + k] * w[p, q, ch, k]
                        dxp[y, z, ch] = acc
    dx[b] = 0
    for y in range(max(0, -pt), min(h, hp - pt)):
        for z in range(max(0, -pl), min(wd, wp - pl)):
            dx[b, y, z, :] = dxp[y + pt, z + pl, :]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_depthwise_conv2d_grad_input(dy, w, dx, sh, sw, pt, pl, dh, dw):
    """dx = depthwise_conv2d_grad_input(dy, w), one image per task."""
    n = dy.shape[0]
    wt = _tiled(w, dy.shape[2]) if w.shape[3] == 1 else np.empty((1, 1, 1), w.dtype)
    if dy.size * w.shape[0] * w.shape[1] < PARALLEL_MIN_COMPUTE:
        for b in range(n):
            _grad_input_image(dy, w, wt, dx, b, sh, sw, pt, pl, dh, dw)
    else:
        for b in prange(n):
            _grad_input_image(dy, w, wt, dx, b, sh, sw, pt, pl, dh, dw)


@numba.njit(cache=True, fastmath=False)
def _grad_filter_images(x, dy, part, start, stop, sh, sw, pt, pl, dh, dw):
    """part (KH, KW, OW * C * M) = the kernel gradient of images [start, stop), not yet
    summed over the output columns (multiplier 1, column stride 1) or summed (otherwise:
    entries [(0 * C + c) * M + k])."""
    kh, kw, c = part.shape[0], part.shape[1], x.shape[3]
    oh, ow = dy.shape[1], dy.shape[2]
    m = dy.shape[3] // c
    hp, wp = _padded_size(oh, ow, kh, kw, sh, sw, dh, dw)
    xp = np.empty((hp, wp, c), x.dtype)
    rows = xp.reshape(hp, wp * c)
    run = ow * c
    part[:] = 0
    for b in range(start, stop):
        _pad_image(x, b, xp, pt, pl)
        grads = dy[b].reshape(oh, ow * c * m)
        for p in range(kh):
            for q in range(kw):
                acc = part[p, q]
                if m == 1 and sw == 1:
                    base = q * dw * c
                    for i in range(oh):
                        src, g = rows[i * sh + p * dh], grads[i]
                        for t in range(run):
                            u = np.uint64(t)
                            acc[u] += src[np.uint64(base + t)] * g[u]
                    continue
                for i in range(oh):
                    y = i * sh + p * dh
                    for j in range(ow):
                        z = j * sw + q * dw
                        for ch in range(c):
                            v = xp[y, z, ch]
                            for k in range(m):
                                acc[ch * m + k] += v * grads[i, (j * c + ch) * m + k]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_depthwise_conv2d_grad_filter(x, dy, dwk, sh, sw, pt, pl, dh, dw):
    """dwk = depthwise_conv2d_grad_filter(x, dy): partial kernels of image slices (threaded
    when large), added in slice order."""
    n, c = x.shape[0], x.shape[3]
    kh, kw, m = dwk.shape[0], dwk.shape[1], dwk.shape[3]
    ow = dy.shape[2]
    slices = max(1, min(n, GRAD_FILTER_SLICES))
    parts = np.empty((slices, kh, kw, ow * c * m), dwk.dtype)
    if dy.size * kh * kw < PARALLEL_MIN_COMPUTE:
        for s in range(slices):
            _grad_filter_images(x, dy, parts[s], s * n // slices, (s + 1) * n // slices,
                                sh, sw, pt, pl, dh, dw)
    else:
        for s in prange(slices):
            _grad_filter_images(x, dy, parts[s], s * n // slices, (s + 1) * n // slices,
                                sh, sw, pt, pl, dh, dw)
    _add_parts(parts, dwk, m == 1 and sw == 1)


@numba.njit(cache=True, fastmath=False)
def _add_parts(parts, dwk, folded):
    """dwk = the partial kernels summed in slice order (and over the output columns when the
    rows are `folded` per column). A function of its own: in the parallel kernel, Numba
    would make each array expression here a parallel launch (2304 at 32 images: 170 ms)."""
    kh, kw, c, m = dwk.shape
    ow = parts.shape[3] // (c * m)
    flat = dwk.reshape(kh, kw, c * m)
    flat[:] = 0
    for s in range(parts.shape[0]):
        for p in range(kh):
            for q in range(kw):
                row = flat[p, q]
                if folded:
                    for j in range(ow):
                        for t in range(c):
                            row[t] += parts[s, p, q, j * c + t]
                else:
                    for t in range(c * m):
                        row[t] += parts[s, p, q, t]
