"""affine_transform and its adjoint (kiln.ir.ops.image): direct loops over output pixels.

fill_mode arrives as its index in kiln.ir.ops.image.FILL_MODES (constant, nearest, reflect,
mirror, wrap). Each output reads its pixels in the reference's
order (rows, then columns: top-left, top-right, bottom-left, bottom-right), and the adjoint
adds them back one sample point at a time over every pixel, as the reference's np.add.at
does: results bit-equal to the reference.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False, inline="always")
def fix_index(i, size, mode):
    """A pixel index mapped into [0, size) by fill mode (constant clamps)."""
    if mode <= 1:
        return min(max(i, 0), size - 1)
    if mode == 4:
        return i % size
    if mode == 3:
        if size == 1:
            return 0
        period = 2 * (size - 1)
        m = i % period
        return period - m if m >= size else m
    m = i % (2 * size)
    return 2 * size - 1 - m if m >= size else m


@numba.njit(cache=True, fastmath=False, inline="always")
def round_half_even(v):
    r = np.floor(v)
    d = v - r
    if d > 0.5 or (d == 0.5 and r % 2 != 0):
        r += 1
    return r


@numba.njit(cache=True, fastmath=False, inline="always")
def sample_point(t, n, y, x, p, nearest):
    """Sample point p (0..3; nearest has only 0) of output pixel (y, x) of image n: its
    unfixed row and column and its weight."""
    one = t.dtype.type(1)
    fy, fx = t.dtype.type(y), t.dtype.type(x)
    xs = t[n, 0] * fx + t[n, 1] * fy + t[n, 2]
    ys = t[n, 3] * fx + t[n, 4] * fy + t[n, 5]
    if nearest:
        return np.int64(round_half_even(ys)), np.int64(round_half_even(xs)), one
    low_y, low_x = np.floor(ys), np.floor(xs)
    up_y, up_x = ys - low_y, xs - low_x
    wy = up_y if p >= 2 else one - up_y
    wx = up_x if p % 2 == 1 else one - up_x
    return np.int64(low_y) + p // 2, np.int64(low_x) + p % 2, wy * wx


@numba.njit(cache=True, fastmath=False)
def k_affine_transform(x, t, out, nearest, mode, fill_value):
    """out[N, OH, OW, C]: x[N, H, W, C] resampled through the rows t[N, 6]."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    fill = x.dtype.type(fill_value)
    points = 1 if nearest else 4
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                for ch in range(c):
                    out[n, i, j, ch] = 0
                for p in range(points):
                    r, q, weight = sample_point(t, n, i, j, p, nearest)
                    outside = r < 0 or r >= h or q < 0 or q >= w
                    r, q = fix_index(r, h, mode), fix_index(q, w, mode)
                    for ch in range(c):
                        v = fill if mode == 0 and outside else x[n, r, q, ch]
                        out[n, i, j, ch] += weight * v


@numba.njit(cache=True, fastmath=False)
def k_affine_transform_grad(g, t, dx, nearest, mode):
    """dx[N, H, W, C]: each g[N, OH, OW, C] added back to the pixels its output read."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    dx[:] = 0
    points = 1 if nearest else 4
    for n in range(g.shape[0]):
        for p in range(points):
            for i in range(g.shape[1]):
                for j in range(g.shape[2]):
                    r, q, weight = sample_point(t, n, i, j, p, nearest)
                    if mode == 0 and (r < 0 or r >= h or q < 0 or q >= w):
                        continue
                    r, q = fix_index(r, h, mode), fix_index(q, w, mode)
                    for ch in range(c):
                        dx[n, r, q, ch] += weight * g[n, i, j, ch]
