"""Max and average pooling and their gradients over NHWC images, on one thread: at the
convnet's pools (64x26x26x32) two threads gained nothing (memory bound), and a parallel=True
kernel costs about 1.5 s more to compile.

Attributes after the arrays: pool_h, pool_w, stride_h, stride_w, pad_top, pad_left; output
sizes come from the arrays. Window (i, j) covers input rows i * stride_h - pad_top + p for
p < pool_h (columns alike). Padded cells are never real: a max never takes one (it counts as
-inf, as in the reference), an average neither adds nor counts one.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False)
def _window_span(start, pool, size):
    """The real rows [lo, hi) of a window starting at `start` (maybe negative)."""
    return max(start, 0), min(start + pool, size)


# -- max -----------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False)
def _max_image(x, out, b, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    out[b] = -np.inf
    for i in range(out.shape[1]):
        y0, y1 = _window_span(i * sh - pt, ph, h)
        for j in range(out.shape[2]):
            z0, z1 = _window_span(j * sw - pl, pw, w)
            for y in range(y0, y1):
                for z in range(z0, z1):
                    for ch in range(c):
                        v = x[b, y, z, ch]
                        # np.maximum: a NaN wins and stays.
                        if v > out[b, i, j, ch] or v != v:
                            out[b, i, j, ch] = v


@numba.njit(cache=True, fastmath=False)
def _tiles(x, out, ph, pw, sh, sw, pt, pl):
    """Windows that tile the image: stride = pool size, no padding before, every window
    inside. Each cell is then in one window at most."""
    return (sh == ph and sw == pw and pt == 0 and pl == 0
            and out.shape[1] * ph <= x.shape[1] and out.shape[2] * pw <= x.shape[2])


@numba.njit(cache=True, fastmath=False)
def _max_2x2_image(x, out, b):
    """_max_image for tiling 2x2 windows: the window's four cells as scalars, one select
    each, so the channel loop vectorizes (convnet pool 1: 0.31 -> 0.12 ms)."""
    for i in range(out.shape[1]):
        y = 2 * i
        for j in range(out.shape[2]):
            z = 2 * j
            for ch in range(x.shape[3]):
                # np.maximum's order: a NaN wins and stays.
                a = x[b, y, z, ch]
                v = x[b, y, z + 1, ch]
                a = v if v > a or v != v else a
                v = x[b, y + 1, z, ch]
                a = v if v > a or v != v else a
                v = x[b, y + 1, z + 1, ch]
                out[b, i, j, ch] = v if v > a or v != v else a


@numba.njit(cache=True, fastmath=False)
def k_max_pool2d(x, out, ph, pw, sh, sw, pt, pl):
    """out[N, OH, OW, C] = max over each window of x[N, H, W, C] (NaN propagates)."""
    two = ph == 2 and pw == 2 and _tiles(x, out, ph, pw, sh, sw, pt, pl)
    for b in range(x.shape[0]):
        if two:
            _max_2x2_image(x, out, b)
        else:
            _max_image(x, out, b, ph, pw, sh, sw, pt, pl)


@numba.njit(cache=True, fastmath=False)
def _window_argmax(x, b, i, j, best, arg, ph, pw, sh, sw, pt, pl):
    """arg[c] = the flat input position y * W + z of window (i, j)'s first maximum in
    row-major window order, or -1 for a padded cell. As the reference, which reads padded
    cells as -inf: the window's first cell sets the best and a later cell replaces it only
    when strictly greater. So a padded cell wins only when it comes first and no real cell
    beats -inf, and a NaN never wins unless it comes first."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    y0, y1 = _window_span(i * sh - pt, ph, h)
    z0, z1 = _window_span(j * sw - pl, pw, w)
    if y0 == i * sh - pt and z0 == j * sw - pl:  # the first cell is real
        for ch in range(c):
            best[ch] = x[b, y0, z0, ch]
            arg[ch] = y0 * w + z0
    else:
        for ch in range(c):
            best[ch] = -np.inf
            arg[ch] = -1
    for y in range(y0, y1):
        for z in range(z0, z1):
            at = y * w + z
            for ch in range(c):  # selects, not branches: it vectorizes
                v = x[b, y, z, ch]
                better = v > best[ch]
                best[ch] = v if better else best[ch]
                arg[ch] = at if better else arg[ch]


@numba.njit(cache=True, fastmath=False)
def _max_grad_image(x, dy, dx, b, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    best, arg = np.empty(c, x.dtype), np.empty(c, np.int64)
    dx[b] = 0
    flat = dx[b].reshape(h * w, c)
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            _window_argmax(x, b, i, j, best, arg, ph, pw, sh, sw, pt, pl)
            for ch in range(c):
                if arg[ch] >= 0:
                    flat[arg[ch], ch] += dy[b, i, j, ch]


@numba.njit(cache=True, fastmath=False)
def _max_grad_tiled_image(x, dy, dx, b, ph, pw):
    """_max_grad_image for windows that tile the image (stride = pool size, no padding
    before, every window inside): each cell is in one window at most, so dx is written
    once, in order, with no zeroing pass and no scatter. Same argmax as _window_argmax."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = dy.shape[1], dy.shape[2]
    zero = dx.dtype.type(0)
    best, arg = np.empty(c, x.dtype), np.empty(c, np.int64)
    for i in range(oh):
        for j in range(ow):
            y0, z0 = i * ph, j * pw
            for ch in range(c):
                best[ch] = x[b, y0, z0, ch]
                arg[ch] = 0
            for p in range(ph):
                for q in range(pw):
                    at = p * pw + q
                    for ch in range(c):
                        v = x[b, y0 + p, z0 + q, ch]
                        better = v > best[ch]
                        best[ch] = v if better else best[ch]
                        arg[ch] = at if better else arg[ch]
            for p in range(ph):
                for q in range(pw):
                    at = p * pw + q
                    for ch in range(c):
                        # zero + g, as the reference's scatter-add into zeros (-0.0 -> 0.0)
                        g = zero + dy[b, i, j, ch]
                        dx[b, y0 + p, z0 + q, ch] = g if arg[ch] == at else zero
    # Cells in no window: the rows and columns past the last whole window.
    for y in range(oh * ph, h):
        dx[b, y] = zero
    for y in range(oh * ph):
        for z in range(ow * pw, w):
            dx[b, y, z] = zero


@numba.njit(cache=True, fastmath=False)
def _max_grad_2x2_image(x, dy, dx, b, arg):
    """_max_grad_tiled_image for 2x2 windows. Per output row: first each window's argmax
    (0..3, as _window_argmax: a later cell wins only when strictly greater) into `arg`
    (int32[OW, C]), from the four cells as scalars; then the two input rows written in
    order. Convnet pool 1: 0.60 -> 0.29 ms."""
    h, w = x.shape[1], x.shape[2]
    oh, ow = dy.shape[1], dy.shape[2]
    zero = dx.dtype.type(0)
    for i in range(oh):
        y = 2 * i
        for j in range(ow):
            z = 2 * j
            for ch in range(x.shape[3]):
                best = x[b, y, z, ch]
                k = np.int32(0)
                v = x[b, y, z + 1, ch]
                better = v > best
                best = v if better else best
                k = np.int32(1) if better else k
                v = x[b, y + 1, z, ch]
                better = v > best
                best = v if better else best
                k = np.int32(2) if better else k
                arg[j, ch] = np.int32(3) if x[b, y + 1, z + 1, ch] > best else k
        for p in range(2):
            for j in range(ow):
                for q in range(2):
                    at = np.int32(2 * p + q)
                    for ch in range(x.shape[3]):
                        # zero + g, as the reference's scatter-add into zeros (-0.0 -> 0.0)
                        g = zero + dy[b, i, j, ch]
                        dx[b, y + p, 2 * j + q, ch] = g if arg[j, ch] == at else zero
            for z in range(2 * ow, w):
                dx[b, y + p, z] = zero
    for y in range(2 * oh, h):
        dx[b, y] = zero


@numba.njit(cache=True, fastmath=False)
def k_max_pool2d_grad(x, dy, dx, ph, pw, sh, sw, pt, pl):
    """dx[N, H, W, C]: each dy element added at its window's first maximum in x."""
    tiled = _tiles(x, dy, ph, pw, sh, sw, pt, pl)
    arg = np.empty((dy.shape[2], x.shape[3]), np.int32)
    for b in range(x.shape[0]):
        if tiled and ph == 2 and pw == 2:
            _max_grad_2x2_image(x, dy, dx, b, arg)
        elif tiled:
            _max_grad_tiled_image(x, dy, dx, b, ph, pw)
        else:
            _max_grad_image(x, dy, dx, b, ph, pw, sh, sw, pt, pl)


@numba.njit(cache=True, fastmath=False)
def _max_select_image(x, g, out, b, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    best, arg = np.empty(c, x.dtype), np.empty(c, np.int64)
    flat = g[b].reshape(h * w, c)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            _window_argmax(x, b, i, j, best, arg, ph, pw, sh, sw, pt, pl)
            for ch in range(c):
                out[b, i, j, ch] = flat[arg[ch], ch] if arg[ch] >= 0 else 0


@numba.njit(cache=True, fastmath=False)
def k_max_pool2d_select(x, g, out, ph, pw, sh, sw, pt, pl):
    """out[N, OH, OW, C] = g at each window's first maximum in x (0 for a padded one)."""
    for b in range(x.shape[0]):
        _max_select_image(x, g, out, b, ph, pw, sh, sw, pt, pl)


# -- average -------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False)
def _avg_image(x, out, b, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    out[b] = 0
    for i in range(out.shape[1]):
        y0, y1 = _window_span(i * sh - pt, ph, h)
        for j in range(out.shape[2]):
            z0, z1 = _window_span(j * sw - pl, pw, w)
            for y in range(y0, y1):
                for z in range(z0, z1):
                    for ch in range(c):
                        out[b, i, j, ch] += x[b, y, z, ch]
            count = out.dtype.type((y1 - y0) * (z1 - z0))
            for ch in range(c):
                out[b, i, j, ch] /= count


@numba.njit(cache=True, fastmath=False)
def k_avg_pool2d(x, out, ph, pw, sh, sw, pt, pl):
    """out[N, OH, OW, C] = each window's mean over its real cells."""
    for b in range(x.shape[0]):
        _avg_image(x, out, b, ph, pw, sh, sw, pt, pl)


@numba.njit(cache=True, fastmath=False)
def _avg_grad_image(dy, dx, b, ph, pw, sh, sw, pt, pl):
    # Window-position-major, as the reference adds its shares: bit-equal sums.
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    dx[b] = 0
    for p in range(ph):
        for q in range(pw):
            for i in range(dy.shape[1]):
                y = i * sh - pt + p
                if y < 0 or y >= h:
                    continue
                y0, y1 = _window_span(i * sh - pt, ph, h)
                for j in range(dy.shape[2]):
                    z = j * sw - pl + q
                    if z < 0 or z >= w:
                        continue
                    z0, z1 = _window_span(j * sw - pl, pw, w)
                    count = dx.dtype.type((y1 - y0) * (z1 - z0))
                    for ch in range(c):
                        dx[b, y, z, ch] += dy[b, i, j, ch] / count


@numba.njit(cache=True, fastmath=False)
def k_avg_pool2d_grad(dy, dx, ph, pw, sh, sw, pt, pl):
    """dx[N, H, W, C]: each dy element spread evenly over its window's real cells."""
    for b in range(dx.shape[0]):
        _avg_grad_image(dy, dx, b, ph, pw, sh, sw, pt, pl)
