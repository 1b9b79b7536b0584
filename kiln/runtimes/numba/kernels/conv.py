"""conv2d and its two gradients (NHWC images, HWIO kernels), two ways: im2col + one BLAS GEMM,
and direct loops. `k_conv2d`, `k_conv2d_grad_input` and `k_conv2d_grad_filter` are the faster
of the two at the convnet benchmark's layers, im2col (timings in the package docstring).

Geometry, shared by every kernel: output row i, kernel row p read input row
`i * stride_h - pad_top + p * dilation_h` (columns alike); rows outside [0, H) are zero
padding. Output sizes come from the arrays' shapes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_COMPUTE, PARALLEL_MIN_WORK
from kiln.runtimes.numba.kernels.pool import k_max_pool2d

# conv2d_grad_filter_direct sums this many per-slice partial kernels (any count is exact;
# enough to balance the threads of these machines).
GRAD_FILTER_SLICES = 8


# -- im2col and col2im ---------------------------------------------------------------------
# The im2col kernels build the columns of this many bytes of whole images at a time (at least
# one image) and run each part's GEMM before the next: the columns stay in cache between
# im2col and the GEMM, and a batch of large images never needs all its columns at once. At
# the convnet's conv2 (64x13x13x32, 3x3x32x64, 8.9 MB of columns) 4 MiB parts took the
# forward from 2.3-2.5 ms to 2.0, the input gradient 2.0-2.2 -> 1.8-1.9, the filter
# gradient 2.4-2.8 -> 2.3 (minima, alone, float32).
COLUMN_PART_BYTES = 4 << 20


@numba.njit(cache=True, fastmath=False)
def _inner_columns(w, kw, sw, pl, dw, ow):
    """The output columns [j0, j1) whose whole window row lies inside the image's w columns,
    when its kw taps are adjacent (dw == 1): they read one contiguous run of kw*C values of
    an NHWC row. Empty at dilated taps."""
    j0 = min(ow, (pl + sw - 1) // sw)
    if dw != 1:
        return j0, j0
    return j0, max(j0, min(ow, (w + pl - kw) // sw + 1))


# Below this many channels, im2col copies a window row that lies inside the image as one run
# of kw*C values (a tap's C values are a short run, less than a 64-byte line in float32);
# at more, tap by tap, output row after output row, which writes the columns in order.
# Measured alone, serial, 3x3 valid, float32, medians (old -> runs): C = 3 at 32x64x64
# 2.6 -> 0.75 ms, C = 6 and 8 at 32x31x31 0.69 -> 0.25 and 0.50 -> 0.33, C = 12 0.71 ->
# 0.59; C = 16 0.77 -> 0.84 and C = 32 (64x13x13) 0.28 -> 0.42 slower.
RUN_COPY_MAX_C = 15


@numba.njit(cache=True, fastmath=False)
def _im2col_row(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The rows of `cols` for output row i of image b: row (b, i, j) holds the window at
    (i, j), in (p, q, c) order."""
    if x.shape[3] <= RUN_COPY_MAX_C:
        _im2col_row_runs(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    else:
        _im2col_row_taps(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)


@numba.njit(cache=True, fastmath=False)
def _im2col_row_taps(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """Window after window, each tap's C values a copy of their own."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    zero = cols.dtype.type(0)
    for j in range(ow):
        row = (b * oh + i) * ow + j
        for p in range(kh):
            y = i * sh - pt + p * dh
            for q in range(kw):
                z = j * sw - pl + q * dw
                base = (p * kw + q) * c
                if 0 <= y < h and 0 <= z < w:
                    for ch in range(c):
                        cols[row, base + ch] = x[b, y, z, ch]
                else:
                    for ch in range(c):
                        cols[row, base + ch] = zero


@numba.njit(cache=True, fastmath=False)
def _im2col_row_runs(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """A window row inside the image as one run copy, the rest tap by tap. Unsigned
    indices, known to be in range, let LLVM vectorize the copies."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    zero = cols.dtype.type(0)
    run = kw * c
    j0, j1 = _inner_columns(w, kw, sw, pl, dw, ow)
    r0 = (b * oh + i) * ow
    for p in range(kh):
        y = i * sh - pt + p * dh
        base = p * run
        if y < 0 or y >= h:
            for j in range(ow):
                r = np.uint64(r0 + j)
                for t in range(run):
                    cols[r, np.uint64(base + t)] = zero
            continue
        xr = x[b, y].reshape(w * c)
        for j in range(j0, j1):
            r, s = np.uint64(r0 + j), np.uint64((j * sw - pl) * c)
            for t in range(run):
                cols[r, np.uint64(base + t)] = xr[s + np.uint64(t)]
        for j in range(ow):
            if j0 <= j < j1:
                continue
            r = np.uint64(r0 + j)
            for q in range(kw):
                z = j * sw - pl + q * dw
                d = np.uint64(base + q * c)
                if 0 <= z < w:
                    zs = np.uint64(z * c)
                    for ch in range(c):
                        cols[r, d + np.uint64(ch)] = xr[zs + np.uint64(ch)]
                else:
                    for ch in range(c):
                        cols[r, d + np.uint64(ch)] = zero


@numba.njit(cache=True, fastmath=False, parallel=True)
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols[(b*oh + i)*ow + j, (p*kw + q)*C + c] = padded x at the window (i, j), tap (p, q).
    Threads split output rows, so one large image uses them too."""
    n = x.shape[0]
    if cols.size < PARALLEL_MIN_WORK:
        for b in range(n):
            for i in range(oh):
                _im2col_row(x, cols, b, i, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    else:
        for bi in prange(n * oh):
            _im2col_row(x, cols, bi // oh, bi % oh, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)


@numba.njit(cache=True, fastmath=False)
def col2im(cols, dx, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The adjoint of im2col: dx = 0, then each cols entry added back where it was read from
    (a window row inside the image as one run, as im2col copies it). One thread: the im2col
    kernels call it on parts of at most COLUMN_PART_BYTES (or one image), below the size
    where two threads pay, and windows of one image overlap."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    run = kw * c
    j0, j1 = _inner_columns(w, kw, sw, pl, dw, ow)
    dx[:] = 0
    df = dx.reshape(dx.size)
    for b in range(dx.shape[0]):
        for i in range(oh):
            r0 = (b * oh + i) * ow
            for p in range(kh):
                y = i * sh - pt + p * dh
                if y < 0 or y >= h:
                    continue
                base, row = p * run, ((b * h + y) * w) * c
                for j in range(ow):
                    r = np.uint64(r0 + j)
                    if j0 <= j < j1:
                        s = np.uint64(row + (j * sw - pl) * c)
                        for t in range(run):
                            df[s + np.uint64(t)] += cols[r, np.uint64(base + t)]
                        continue
                    for q in range(kw):
                        z = j * sw - pl + q * dw
                        if 0 <= z < w:
                            zs, d = np.uint64(row + z * c), np.uint64(base + q * c)
                            for ch in range(c):
                                df[zs + np.uint64(ch)] += cols[r, d + np.uint64(ch)]


@numba.njit(cache=True, fastmath=False)
def _part_images(n, rows, k, itemsize):
    """How many whole images' columns (rows x k values each) fit COLUMN_PART_BYTES; at least
    one."""
    return max(1, min(n, COLUMN_PART_BYTES // max(1, rows * k * itemsize)))


@numba.njit(cache=True, fastmath=False)
def _is_pointwise(kh, kw, sh, sw, pt, pl, h, w, oh, ow):
    """A 1x1 kernel that reads every pixel once in place: x itself is the im2col matrix."""
    return kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and oh == h and ow == w


# At this many input channels or fewer, the columns are built transposed (one row per tap,
# one column per output pixel): each row is then written in long contiguous runs, where
# im2col's rows hold C values per tap. At the convnet's first layer (C = 1, 64x28x28) that
# took im2col from 1.1 ms to 0.28, and the filter gradient becomes one plain GEMM.
TRANSPOSED_COLUMNS_MAX_C = 1


@numba.njit(cache=True, fastmath=False)
def im2col_t(x, cols_t, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols_t[(p*kw + q)*C + c, (b*oh + i)*ow + j] = padded x at window (i, j), tap (p, q):
    im2col's matrix transposed. The columns that read real input are copied apart from the
    padded ones, unit strides in a loop of their own: LLVM vectorizes that copy (convnet
    conv1, batch 64, geometry passed at run time: 0.42 -> 0.06 ms)."""
    n, h, w, c = x.shape
    zero = cols_t.dtype.type(0)
    for p in range(kh):
        for q in range(kw):
            off = q * dw - pl  # column j reads input column j * sw + off
            # the output columns reading real input columns: [j0, j1)
            j0 = min(ow, (max(0, -off) + sw - 1) // sw)
            j1 = max(j0, min(ow, (w - off + sw - 1) // sw))
            for ch in range(c):
                row = cols_t[(p * kw + q) * c + ch]
                for b in range(n):
                    for i in range(oh):
                        y = i * sh - pt + p * dh
                        base = (b * oh + i) * ow
                        if y < 0 or y >= h:
                            for j in range(ow):
                                row[base + j] = zero
                            continue
                        for j in range(j0):
                            row[base + j] = zero
                        # Unsigned indices, known to be in range: no negative-index wraparound
                        # check in the loop, which would keep LLVM from vectorizing it.
                        yu = np.uint64(y)
                        if sw == 1:
                            for j in range(j0, j1):
                                row[np.uint64(base + j)] = x[b, yu, np.uint64(j + off), ch]
                        else:
                            for j in range(j0, j1):
                                row[np.uint64(base + j)] = x[b, yu, np.uint64(j * sw + off), ch]
                        for j in range(j1, ow):
                            row[base + j] = zero


@numba.njit(cache=True, fastmath=False)
def _columns_t(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    n, c = x.shape[0], x.shape[3]
    cols_t = np.empty((kh * kw * c, n * oh * ow), x.dtype)
    im2col_t(x, cols_t, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    return cols_t


@numba.njit(cache=True, fastmath=False)
def _few_channels(kh, kw, c, sh, sw, pt, pl, h, w, oh, ow):
    return c <= TRANSPOSED_COLUMNS_MAX_C and not _is_pointwise(kh, kw, sh, sw, pt, pl, h, w,
                                                                oh, ow)


# -- im2col + GEMM ---------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False)
def _column_count(x, w, sh, sw, pt, pl, oh, ow):
    """The number of column values per image the convolution builds (none at 1x1)."""
    kh, kw, c = w.shape[0], w.shape[1], w.shape[2]
    if _is_pointwise(kh, kw, sh, sw, pt, pl, x.shape[1], x.shape[2], oh, ow):
        return 0
    return oh * ow * kh * kw * c


@numba.njit(cache=True, fastmath=False)
def _conv_into(x, w, out, cols, sh, sw, pt, pl, dh, dw):
    """out = conv2d(x, w) with every image's columns built at once into the flat scratch
    `cols` (at least _column_count values per image): im2col's matrix, or its transpose at
    few channels (BLAS reads it with a transpose flag, no copy); none at 1x1."""
    kh, kw, c, o = w.shape
    n, h, wd = x.shape[0], x.shape[1], x.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    m, k = n * oh * ow, kh * kw * c
    w2d, out2d = w.reshape(k, o), out.reshape(m, o)
    if _is_pointwise(kh, kw, sh, sw, pt, pl, h, wd, oh, ow):
        np.dot(x.reshape(m, c), w2d, out2d)
    elif _few_channels(kh, kw, c, sh, sw, pt, pl, h, wd, oh, ow):
        cols_t = cols[:k * m].reshape(k, m)
        im2col_t(x, cols_t, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        np.dot(cols_t.T, w2d, out2d)
    else:
        part = cols[:m * k].reshape(m, k)
        im2col(x, part, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        np.dot(part, w2d, out2d)


@numba.njit(cache=True, fastmath=False)
def k_conv2d_im2col(x, w, out, sh, sw, pt, pl, dh, dw):
    """out = conv2d(x, w): out2d[N*OH*OW, O] = cols @ w2d[KH*KW*C, O], the columns built a
    part of the batch at a time (all at once and transposed at few channels; none at 1x1)."""
    n = x.shape[0]
    oh, ow = out.shape[1], out.shape[2]
    per_image = _column_count(x, w, sh, sw, pt, pl, oh, ow)
    few = _few_channels(w.shape[0], w.shape[1], w.shape[2], sh, sw, pt, pl, x.shape[1],
                        x.shape[2], oh, ow)
    step = n if few or per_image == 0 else _part_images(n, per_image, 1, x.itemsize)
    cols = np.empty(step * per_image, x.dtype)
    for b0 in range(0, n, max(step, 1)):  # an empty batch has an empty output
        b1 = min(n, b0 + step)
        _conv_into(x[b0:b1], w, out[b0:b1], cols, sh, sw, pt, pl, dh, dw)


# The fused convolution + max pooling convolves this many bytes of output at a time (at
# least one image, and columns of at most COLUMN_PART_BYTES), which the pooling reads back
# while they are in cache: the convolution's output never goes to memory whole. Measured at
# the convnet's layers, batch 128 (convolution + pooling, medians): conv1 (86 KB an image)
# 0.9-1.3 ms in parts of 1-5 images, 1.8-2.0 ms at 6 or more (the GEMM of a part then runs
# on two threads, and the pooling reads half its output from the other core's cache), 1.7-2.7
# ms unfused; conv2 (31 KB an image) 4.2 ms at 12 images, 4.0 at 16-30, 4.5-5.3 at 2-8, 4.3
# unfused. 384 KiB: 4 and 12 images.
CONV_POOL_PART_BYTES = 384 << 10


@numba.njit(cache=True, fastmath=False)
def k_conv2d_max_pool2d(x, w, out, sh, sw, pt, pl, dh, dw, oh, ow, ph, pw, psh, psw, ppt,
                        ppl):
    """out = max_pool2d(conv2d(x, w)), the convolution's output (OH x OW per image) made a
    few images at a time. Attributes: the convolution's (as k_conv2d), its output size, the
    pooling's (as k_max_pool2d)."""
    n, o = x.shape[0], w.shape[3]
    per_image = _column_count(x, w, sh, sw, pt, pl, oh, ow)
    step = max(1, min(n, CONV_POOL_PART_BYTES // max(1, oh * ow * o * x.itemsize)))
    if per_image:
        step = min(step, _part_images(n, per_image, 1, x.itemsize))
    scratch = np.empty((step, oh, ow, o), x.dtype)
    cols = np.empty(step * per_image, x.dtype)
    for b0 in range(0, n, step):
        b1 = min(n, b0 + step)
        part = scratch[:b1 - b0]
        _conv_into(x[b0:b1], w, part, cols, sh, sw, pt, pl, dh, dw)
        k_max_pool2d(part, out[b0:b1], ph, pw, psh, psw, ppt, ppl)


@numba.njit(cache=True, fastmath=False)
def k_conv2d_grad_input_im2col(dy, w, dx, sh, sw, pt, pl, dh, dw):
    """dx = col2im(dy2d @ w2d.T), a part of the batch at a time."""
    kh, kw, c, o = w.shape
    n, oh, ow = dy.shape[0], dy.shape[1], dy.shape[2]
    h, wd = dx.shape[1], dx.shape[2]
    rows, k = oh * ow, kh * kw * c
    w2d, dy2d = w.reshape(k, o), dy.reshape(n * rows, o)
    if _is_pointwise(kh, kw, sh, sw, pt, pl, h, wd, oh, ow):
        np.dot(dy2d, w2d.T, dx.reshape(n * h * wd, c))
        return
    step = _part_images(n, rows, k, dy.itemsize)
    dcols = np.empty((step * rows, k), dy.dtype)
    for b0 in range(0, n, step):
        b1 = min(n, b0 + step)
        part = dcols[:(b1 - b0) * rows]
        np.dot(dy2d[b0 * rows:b1 * rows], w2d.T, part)
        col2im(part, dx[b0:b1], kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)


@numba.njit(cache=True, fastmath=False)
def k_conv2d_grad_filter_im2col(x, dy, dwk, sh, sw, pt, pl, dh, dw):
    """dw2d[KH*KW*C, O] = cols.T @ dy2d: the parts' products summed in batch order (the
    columns built transposed, all at once, at few channels)."""
    kh, kw, c, o = dwk.shape
    n, h, wd = x.shape[0], x.shape[1], x.shape[2]
    oh, ow = dy.shape[1], dy.shape[2]
    rows, k = oh * ow, kh * kw * c
    dy2d, dw2d = dy.reshape(n * rows, o), dwk.reshape(k, o)
    # One np.dot per branch: the two column matrices differ in layout (C, F), which Numba
    # would unify to a non-contiguous type that np.dot refuses.
    if _few_channels(kh, kw, c, sh, sw, pt, pl, h, wd, oh, ow):
        np.dot(_columns_t(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow), dy2d, dw2d)
        return
    # dw2d = cols.T @ dy2d, straight into dw2d. On this Zen 5 machine, float32, medians of
    # 30 interleaved, OpenBLAS's Haswell / SkylakeX kernels: a 38000-row part of the
    # augmented convnet's conv1 (K = 27, O = 16) 0.68 / 0.55 ms, against 1.07 / 0.63 for
    # dy2d.T @ cols and a transpose, which an older machine had run faster; conv2's shape
    # (26912 x 144 x 32) 2.1-2.5 / 1.5 against 2.7-3.0 / 2.0.
    if n == 0:
        dwk[:] = 0
        return
    if _is_pointwise(kh, kw, sh, sw, pt, pl, h, wd, oh, ow):
        np.dot(x.reshape(n * rows, c).T, dy2d, dw2d)
        return
    step = _part_images(n, rows, k, x.itemsize)
    cols = np.empty((step * rows, k), x.dtype)
    partial = np.empty((k, o), dy.dtype)
    for b0 in range(0, n, step):
        b1 = min(n, b0 + step)
        part = cols[:(b1 - b0) * rows]
        im2col(x[b0:b1], part, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
        if b0 == 0:
            np.dot(part.T, dy2d[:b1 * rows], dw2d)
        else:
            np.dot(part.T, dy2d[b0 * rows:b1 * rows], partial)
            dw2d += partial


# -- direct loops ----------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False)
def _conv_image(x, w, out, b, sh, sw, pt, pl, dh, dw):
    h, wd, c = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, o = w.shape[0], w.shape[1], w.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    out[b] = 0
    for i in range(oh):
        for j in range(ow):
            for p in range(kh):
                y = i * sh - pt + p * dh
                if y < 0 or y >= h:
                    continue
                for q in range(kw):
                    z = j * sw - pl + q * dw
                    if z < 0 or z >= wd:
                        continue
                    for ch in range(c):
                        v = x[b, y, z, ch]
                        for k in range(o):
                            out[b, i, j, k] += v * w[p, q, ch, k]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_conv2d_direct(x, w, out, sh, sw, pt, pl, dh, dw):
    """out = conv2d(x, w), one image per task; the innermost loop runs over output channels."""
    n = x.shape[0]
    if out.size * w.shape[0] * w.shape[1] * w.shape[2] < PARALLEL_MIN_COMPUTE:
        for b in range(n):
            _conv_image(x, w, out, b, sh, sw, pt, pl, dh, dw)
    else:
        for b in prange(n):
            _conv_image(x, w, out, b, sh, sw, pt, pl, dh, dw)


@numba.njit(cache=True, fastmath=False)
def _grad_input_image(dy, wt, dx, b, sh, sw, pt, pl, dh, dw):
    """Image b of dx, scattering each dy pixel back; wt is w as (KH, KW, O, C)."""
    h, wd, c = dx.shape[1], dx.shape[2], dx.shape[3]
    kh, kw, o = wt.shape[0], wt.shape[1], wt.shape[2]
    oh, ow = dy.shape[1], dy.shape[2]
    dx[b] = 0
    for i in range(oh):
        for j in range(ow):
            for p in range(kh):
                y = i * sh - pt + p * dh
                if y < 0 or y >= h:
                    continue
                for q in range(kw):
                    z = j * sw - pl + q * dw
                    if z < 0 or z >= wd:
                        continue
                    for k in range(o):
                        g = dy[b, i, j, k]
                        for ch in range(c):
                            dx[b, y, z, ch] += g * wt[p, q, k, ch]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_conv2d_grad_input_direct(dy, w, dx, sh, sw, pt, pl, dh, dw):
    """dx = conv2d_grad_input(dy, w), one image per task."""
    n = dy.shape[0]
    wt = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
    if dy.size * w.shape[0] * w.shape[1] * w.shape[2] < PARALLEL_MIN_COMPUTE:
        for b in range(n):
            _grad_input_image(dy, wt, dx, b, sh, sw, pt, pl, dh, dw)
    else:
        for b in prange(n):
            _grad_input_image(dy, wt, dx, b, sh, sw, pt, pl, dh, dw)


@numba.njit(cache=True, fastmath=False)
def _grad_filter_images(x, dy, part, start, stop, sh, sw, pt, pl, dh, dw):
    """part (KH, KW, C, O) += the kernel gradient of images [start, stop)."""
    h, wd, c = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, o = part.shape[0], part.shape[1], part.shape[3]
    oh, ow = dy.shape[1], dy.shape[2]
    for b in range(start, stop):
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    y = i * sh - pt + p * dh
                    if y < 0 or y >= h:
                        continue
                    for q in range(kw):
                        z = j * sw - pl + q * dw
                        if z < 0 or z >= wd:
                            continue
                        for ch in range(c):
                            v = x[b, y, z, ch]
                            for k in range(o):
                                part[p, q, ch, k] += v * dy[b, i, j, k]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_conv2d_grad_filter_direct(x, dy, dwk, sh, sw, pt, pl, dh, dw):
    """dw = conv2d_grad_filter(x, dy): one partial sum per batch slice, then their total."""
    n = x.shape[0]
    dwk[...] = 0
    if dy.size * dwk.shape[0] * dwk.shape[1] * dwk.shape[2] < PARALLEL_MIN_COMPUTE:
        _grad_filter_images(x, dy, dwk, 0, n, sh, sw, pt, pl, dh, dw)
        return
    slices = min(n, GRAD_FILTER_SLICES)
    kh, kw, c, o = dwk.shape
    parts = np.zeros((slices, kh, kw, c, o), dwk.dtype)
    for s in prange(slices):
        _grad_filter_images(x, dy, parts[s], s * n // slices, (s + 1) * n // slices,
                            sh, sw, pt, pl, dh, dw)
    for s in range(slices):
        dwk += parts[s]


# -- the defaults: im2col + GEMM was faster for every op at both convnet layers (even at one
# input channel, where its GEMM is thin), so the public names are the im2col kernels.
k_conv2d = k_conv2d_im2col
k_conv2d_grad_input = k_conv2d_grad_input_im2col
k_conv2d_grad_filter = k_conv2d_grad_filter_im2col
