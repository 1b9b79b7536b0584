"""affine_transform and its adjoint (kiln.ir.ops.image): direct loops over output pixels.

fill_mode arrives as its index in kiln.ir.ops.image.FILL_MODES (constant, nearest, reflect,
mirror, wrap). Each output reads its pixels in the reference's
order (rows, then columns: top-left, top-right, bottom-left, bottom-right), and the adjoint
adds them back one sample point at a time over every pixel of an image, as the reference's
np.add.at does: results bit-equal to the reference. Large calls run output rows (the forward)
or images (the adjoint) on threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kiln.ir.ops.image import fix_scalar_index
from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_COMPUTE

# A pixel index mapped into [0, size) by fill mode (constant clamps).
fix_index = numba.njit(cache=True, fastmath=False, inline="always")(fix_scalar_index)


@numba.njit(cache=True, fastmath=False, inline="always")
def round_half_even(v):
    r = np.floor(v)
    d = v - r
    if d > 0.5 or (d == 0.5 and r % 2 != 0):
        r += 1
    return r


@numba.njit(cache=True, fastmath=False, inline="always")
def coordinates(t, n, y, x):
    """Where output pixel (y, x) of image n reads the input: (row, column), unrounded."""
    fy, fx = t.dtype.type(y), t.dtype.type(x)
    return (t[n, 3] * fx + t[n, 4] * fy + t[n, 5]), (t[n, 0] * fx + t[n, 1] * fy + t[n, 2])


@numba.njit(cache=True, fastmath=False, inline="always")
def sample_point(ys, xs, p, nearest, mode, h, w, one):
    """Sample point p (0..3; nearest has only 0) of the read at (ys, xs): its row and column
    fixed by fill mode, its weight, and whether the unfixed pixel lies outside the image."""
    if nearest:
        r, q, weight = np.int64(round_half_even(ys)), np.int64(round_half_even(xs)), one
    else:
        low_y, low_x = np.floor(ys), np.floor(xs)
        up_y, up_x = ys - low_y, xs - low_x
        wy = up_y if p >= 2 else one - up_y
        wx = up_x if p % 2 == 1 else one - up_x
        r, q, weight = np.int64(low_y) + p // 2, np.int64(low_x) + p % 2, wy * wx
    outside = r < 0 or r >= h or q < 0 or q >= w
    return fix_index(r, h, mode), fix_index(q, w, mode), weight, outside


@numba.njit(cache=True, fastmath=False)
def _output_row(x, t, out, n, i, nearest, mode, fill):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    one = t.dtype.type(1)
    for j in range(out.shape[2]):
        ys, xs = coordinates(t, n, i, j)
        if not nearest:  # bilinear, all four pixels inside: no fill mode to apply
            low_y, low_x = np.floor(ys), np.floor(xs)
            r, q = np.int64(low_y), np.int64(low_x)
            if 0 <= r and r + 1 < h and 0 <= q and q + 1 < w:
                up_y, up_x = ys - low_y, xs - low_x
                w00, w01 = (one - up_y) * (one - up_x), (one - up_y) * up_x
                w10, w11 = up_y * (one - up_x), up_y * up_x
                for ch in range(c):  # the reference's order of additions
                    out[n, i, j, ch] = (((w00 * x[n, r, q, ch] + w01 * x[n, r, q + 1, ch])
                                         + w10 * x[n, r + 1, q, ch])
                                        + w11 * x[n, r + 1, q + 1, ch])
                continue
        for ch in range(c):
            out[n, i, j, ch] = 0
        for p in range(1 if nearest else 4):
            r, q, weight, outside = sample_point(ys, xs, p, nearest, mode, h, w, one)
            for ch in range(c):
                v = fill if mode == 0 and outside else x[n, r, q, ch]
                out[n, i, j, ch] += weight * v


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_affine_transform(x, t, out, nearest, mode, fill_value):
    """out[N, OH, OW, C]: x[N, H, W, C] resampled through the rows t[N, 6]; output rows on
    threads from PARALLEL_MIN_COMPUTE sample reads up."""
    fill = x.dtype.type(fill_value)
    rows = out.shape[0] * out.shape[1]
    if out.size * (1 if nearest else 4) < PARALLEL_MIN_COMPUTE:
        for k in range(rows):
            _output_row(x, t, out, k // out.shape[1], k % out.shape[1], nearest, mode, fill)
    else:
        for k in prange(rows):
            _output_row(x, t, out, k // out.shape[1], k % out.shape[1], nearest, mode, fill)


@numba.njit(cache=True, fastmath=False)
def _image_grad(g, t, dx, n, nearest, mode):
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    one = t.dtype.type(1)
    dx[n] = 0
    for p in range(1 if nearest else 4):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                ys, xs = coordinates(t, n, i, j)
                r, q, weight, outside = sample_point(ys, xs, p, nearest, mode, h, w, one)
                if mode == 0 and outside:
                    continue
                for ch in range(c):
                    dx[n, r, q, ch] += weight * g[n, i, j, ch]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_affine_transform_grad(g, t, dx, nearest, mode):
    """dx[N, H, W, C]: each g[N, OH, OW, C] added back to the pixels its output read; images
    on threads from PARALLEL_MIN_COMPUTE sample reads up (each its own dx)."""
    if g.size * (1 if nearest else 4) < PARALLEL_MIN_COMPUTE:
        for n in range(dx.shape[0]):
            _image_grad(g, t, dx, n, nearest, mode)
    else:
        for n in prange(dx.shape[0]):
            _image_grad(g, t, dx, n, nearest, mode)
