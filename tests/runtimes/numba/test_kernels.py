"""The hand-written Numba kernels (kiln.runtimes.numba.kernels) against the reference runtime's
implementation of each op, run as a one-node graph.

Numba's compile time dominates: shapes are tiny except one case per threaded kernel that is
large enough to take its parallel branch, and the kernels cache their machine code on disk, so
a second run compiles nothing.

Tolerances: float64 rtol 1e-12 (sums in another order); float32 rtol 1e-5, atol 1e-5 (GEMM
and softmax sums in another order, libm's exp against NumPy's), the convolutions' atol times
their result's largest magnitude (their sums run over up to a thousand terms). Max and
average pooling, the max-pool select, gather, scatter_add, one_hot and the uniform and
bernoulli draws match exactly; normal within 1e-12 (float64; log and cos differ by an ulp
between libraries) and one float32 ulp.
"""

from __future__ import annotations

import os
import subprocess
import sys
from math import prod
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, TensorType
from kiln.ir.ops.nn import window
from kiln.runtimes.numba import kernels as K
from kiln.runtimes.numba.kernels import conv as conv_kernels
from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_WORK
from kiln.runtimes.numba.kernels.random import bits, stream_base
from kiln.runtimes.reference import run_graph

DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


def reference(op: str, *arrays: np.ndarray, **attrs) -> np.ndarray:
    """The op's reference result: a one-node graph run by the reference runtime."""
    b = GraphBuilder("ref")
    xs = [b.input(f"x{i}", TensorType(tuple(int(d) for d in a.shape), str(a.dtype)))
          for i, a in enumerate(arrays)]
    b.output(getattr(b, op)(*xs, **attrs), "y")
    return run_graph(b.build(), list(arrays))[0]["y"]


def assert_close(got: np.ndarray, expected: np.ndarray, dtype) -> None:
    """TOL, with float32's atol scaled by the result's largest magnitude: a sum of many
    terms carries a rounding error proportional to its size, not to one."""
    tol = dict(TOL[dtype])
    if dtype == np.float32:
        tol["atol"] *= max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(got, expected, **tol)


def data(shape: tuple[int, ...], dtype, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- matmul ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_2d_plain_and_transposed_views(dtype) -> None:
    a, b = data((5, 7), dtype, 1), data((7, 3), dtype, 2)
    out = np.empty((5, 3), dtype)
    K.k_matmul_2d(a, b, out)
    np.testing.assert_allclose(out, a @ b, **TOL[dtype])
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    K.k_matmul_2d(at.T, bt.T, out)  # F-contiguous views: BLAS transpose flags
    np.testing.assert_allclose(out, a @ b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_batched_broadcasts_a_batch_of_one(dtype) -> None:
    a, b = data((4, 3, 5), dtype, 1), data((1, 5, 2), dtype, 2)
    out = np.empty((4, 3, 2), dtype)
    K.k_matmul_batched(a, b, out)
    np.testing.assert_allclose(out, reference("matmul", a, b), **TOL[dtype])
    K.k_matmul_batched(b.transpose(0, 2, 1).copy(), a.transpose(0, 2, 1).copy(),
                       np.empty((4, 2, 3), dtype))


def test_matmul_batched_indexed_any_broadcast() -> None:
    # (2, 1, 3, 5) @ (1, 3, 5, 2) -> (2, 3, 3, 2): the caller maps each output batch entry.
    a, b = data((2, 1, 3, 5), np.float64, 1), data((1, 3, 5, 2), np.float64, 2)
    a_index = np.repeat(np.arange(2), 3)
    b_index = np.tile(np.arange(3), 2)
    out = np.empty((6, 3, 2))
    K.k_matmul_batched_indexed(a.reshape(2, 3, 5), b.reshape(3, 5, 2), out, a_index, b_index)
    np.testing.assert_allclose(out.reshape(2, 3, 3, 2), reference("matmul", a, b), rtol=1e-12)


# -- conv2d ----------------------------------------------------------------------------------
# (x shape, kernel shape, strides, padding, dilation)
CONV_CASES = [
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), "valid", (1, 1)),
    ((2, 6, 7, 2), (3, 2, 2, 3), (2, 1), "same", (1, 1)),
    ((1, 7, 6, 3), (2, 3, 3, 2), (1, 2), "same", (2, 1)),
    ((1, 4, 4, 2), (3, 3, 2, 2), (3, 3), "same", (1, 1)),
    ((2, 3, 4, 4), (1, 1, 4, 3), (1, 1), "valid", (1, 1)),  # pointwise: no im2col copy
    # Large: the threaded branches (the direct kernels' 38M multiply-adds,
    # PARALLEL_MIN_COMPUTE; im2col of the whole batch, 9.4M values, PARALLEL_MIN_WORK, in
    # test_transposed_columns_are_im2col_transposed). The im2col kernels build its columns
    # one image at a time.
    ((8, 32, 32, 128), (3, 3, 128, 4), (1, 1), "same", (1, 1)),
    # Columns built in parts (conv.COLUMN_PART_BYTES), the last one short: 4 images a part in
    # float32, 2 in float64.
    ((9, 30, 30, 32), (3, 3, 32, 8), (1, 1), "valid", (1, 1)),
    # One input channel: the columns are built transposed (forward and filter gradient).
    ((3, 9, 8, 1), (3, 2, 1, 5), (1, 1), "valid", (1, 1)),
    ((2, 7, 6, 1), (3, 3, 1, 4), (2, 1), "same", (1, 2)),  # padded rows and columns
    ((2, 4, 5, 1), (1, 1, 1, 3), (1, 1), "valid", (1, 1)),  # pointwise stays pointwise
]
CONV_IDS = ["valid", "same-stride21", "same-dilated", "same-stride33", "pointwise", "large",
            "parts",
            "one-channel", "one-channel-same-stride21-dilated", "one-channel-pointwise"]


def conv_geometry(case) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The output shape and the kernels' six geometry arguments."""
    xs, ws, strides, padding, dilation = case
    win = window(xs[1:3], ws[:2], strides, padding, dilation)
    out_shape = (xs[0], *win.out, ws[3])
    geometry = (*strides, win.pads[0][0], win.pads[1][0], *dilation)
    return out_shape, geometry


# The direct kernels are not the defaults: checked in float64 only, which halves their compile.
@pytest.mark.parametrize("dtype,impl", [(np.float32, "im2col"), (np.float64, "im2col"),
                                        (np.float64, "direct")],
                         ids=["float32-im2col", "float64-im2col", "float64-direct"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_and_its_gradients(case, dtype, impl) -> None:
    xs, ws, strides, padding, dilation = case
    attrs = {"strides": strides, "padding": padding, "dilation": dilation}
    out_shape, geometry = conv_geometry(case)
    x, w, dy = data(xs, dtype, 1), data(ws, dtype, 2), data(out_shape, dtype, 3)

    out = np.full(out_shape, np.nan, dtype)
    getattr(K, f"k_conv2d_{impl}")(x, w, out, *geometry)
    assert_close(out, reference("conv2d", x, w, **attrs), dtype)

    dx = np.full(xs, np.nan, dtype)
    getattr(K, f"k_conv2d_grad_input_{impl}")(dy, w, dx, *geometry)
    expected = reference("conv2d_grad_input", dy, w, input_size=xs[1:3], **attrs)
    assert_close(dx, expected, dtype)

    dw = np.full(ws, np.nan, dtype)
    getattr(K, f"k_conv2d_grad_filter_{impl}")(x, dy, dw, *geometry)
    expected = reference("conv2d_grad_filter", x, dy, kernel_size=ws[:2], **attrs)
    assert_close(dw, expected, dtype)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_transposed_columns_are_im2col_transposed(case) -> None:
    """im2col_t (used at few channels) holds exactly im2col's matrix, transposed, at any
    channel count and geometry (padded cells zero)."""
    xs, ws = case[0], case[1]
    (n, oh, ow, _), geometry = conv_geometry(case)
    sh, sw, pt, pl, dh, dw = geometry
    x = data(xs, np.float32, 1)
    k = ws[0] * ws[1] * xs[3]
    cols = np.full((n * oh * ow, k), np.nan, np.float32)
    cols_t = np.full((k, n * oh * ow), np.nan, np.float32)
    args = (ws[0], ws[1], sh, sw, pt, pl, dh, dw, oh, ow)
    conv_kernels.im2col(x, cols, *args)
    conv_kernels.im2col_t(x, cols_t, *args)
    np.testing.assert_array_equal(cols_t, cols.T)


def numpy_columns(x: np.ndarray, kh: int, kw: int, geometry, oh: int, ow: int) -> np.ndarray:
    """im2col's matrix built by NumPy: the zero-padded image sliced at every tap."""
    sh, sw, pt, pl, dh, dw = geometry
    n, h, w, c = x.shape
    bottom = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - pt - h)
    right = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - pl - w)
    padded = np.pad(x, ((0, 0), (pt, bottom), (pl, right), (0, 0)))
    taps = [padded[:, p * dh:p * dh + (oh - 1) * sh + 1:sh, q * dw:q * dw + (ow - 1) * sw + 1:sw]
            for p in range(kh) for q in range(kw)]
    return np.stack(taps, axis=3).reshape(n * oh * ow, kh * kw * c)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 9),
       c=st.sampled_from([1, 2, 3, 5, 15, 16]),  # runs at up to conv.RUN_COPY_MAX_C = 15
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), padding=st.sampled_from(["valid", "same"]))
def test_im2col_and_col2im_at_any_geometry(n, h, w, c, kh, kw, sh, sw, dh, dw,
                                          padding) -> None:
    """im2col copies a window row inside the image as one run at few channels (up to
    conv.RUN_COPY_MAX_C) and the rest tap by tap; col2im adds back alike. Both against NumPy
    at any geometry: whole runs, windows cut by the padding on either side, dilated taps (no
    runs), kernels wider than the image."""
    assume(padding == "same" or (h >= (kh - 1) * dh + 1 and w >= (kw - 1) * dw + 1))
    win = window((h, w), (kh, kw), (sh, sw), padding, (dh, dw))
    (oh, ow), geometry = win.out, (sh, sw, win.pads[0][0], win.pads[1][0], dh, dw)
    args = (kh, kw, *geometry, oh, ow)
    x = data((n, h, w, c), np.float64, 4)
    cols = np.full((n * oh * ow, kh * kw * c), np.nan)
    conv_kernels.im2col(x, cols, *args)
    expected = numpy_columns(x, kh, kw, geometry, oh, ow)
    np.testing.assert_array_equal(cols, expected)
    # col2im is im2col's adjoint: <im2col(x), g> == <x, col2im(g)> for every x, so col2im(g)
    # is the gradient of that sum, which NumPy's columns give by a scatter of their indices.
    g = data(cols.shape, np.float64, 5)
    dx = np.full(x.shape, np.nan)
    conv_kernels.col2im(g, dx, *args)
    index = numpy_columns(np.arange(x.size, dtype=np.float64).reshape(x.shape) + 1, kh, kw,
                          geometry, oh, ow).astype(np.int64) - 1  # -1: a padded cell
    scattered = np.zeros(x.size + 1)
    np.add.at(scattered, index.ravel(), g.ravel())
    np.testing.assert_allclose(dx.ravel(), scattered[:-1], rtol=1e-12, atol=1e-12)


# (pool_size, strides, padding) after each convolution of CONV_CASES
POOL_AFTER_CONV = [((2, 2), None, "valid"), ((3, 3), (2, 1), "same")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pooling", POOL_AFTER_CONV, ids=["2x2", "3x3-same-stride21"])
@pytest.mark.parametrize("case", [
    *CONV_CASES,
    # An output of 370 KB an image in float32: one image a part (conv.CONV_POOL_PART_BYTES).
    ((3, 40, 40, 2), (3, 3, 2, 64), (1, 1), "valid", (1, 1)),
], ids=[*CONV_IDS, "one-image-parts"])
def test_conv2d_max_pool2d_is_the_pooled_convolution(case, pooling, dtype) -> None:
    xs, ws, strides, padding, dilation = case
    pool, pool_strides, pool_padding = pooling
    (n, oh, ow, o), geometry = conv_geometry(case)
    out_shape, pool_args = pool_geometry((n, oh, ow, o), pool, pool_strides, pool_padding)
    x, w = data(xs, dtype, 1), data(ws, dtype, 2)
    out = np.full(out_shape, np.nan, dtype)
    K.k_conv2d_max_pool2d(x, w, out, *geometry, oh, ow, *pool_args)
    conv = reference("conv2d", x, w, strides=strides, padding=padding, dilation=dilation)
    expected = reference("max_pool2d", conv, pool_size=pool, strides=pool_strides,
                         padding=pool_padding)
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("channels", [1, 2], ids=["one-channel", "two-channels"])
def test_convolutions_of_an_empty_batch_run(channels: int) -> None:
    """No image: no part (at one channel the whole batch is one part, of size zero, which a
    loop stepping by it would refuse)."""
    x, w = np.zeros((0, 6, 6, channels), np.float32), data((3, 3, channels, 4), np.float32)
    out = np.zeros((0, 2, 2, 4), np.float32)
    K.k_conv2d_max_pool2d(x, w, out, 1, 1, 0, 0, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0)
    conv = np.zeros((0, 4, 4, 4), np.float32)
    K.k_conv2d(x, w, conv, 1, 1, 0, 0, 1, 1)
    assert out.shape == (0, 2, 2, 4) and conv.shape == (0, 4, 4, 4)


def test_conv2d_defaults_are_the_im2col_kernels() -> None:
    assert K.k_conv2d is K.k_conv2d_im2col
    assert K.k_conv2d_grad_input is K.k_conv2d_grad_input_im2col
    assert K.k_conv2d_grad_filter is K.k_conv2d_grad_filter_im2col


# -- pooling ---------------------------------------------------------------------------------
# (x shape, pool_size, strides, padding)
POOL_CASES = [
    ((2, 5, 5, 3), (2, 2), None, "valid"),
    ((2, 5, 7, 2), (3, 3), (2, 2), "same"),
    ((1, 6, 5, 2), (2, 3), (1, 2), "same"),
    ((1, 4, 5, 3), (3, 3), (1, 1), "same"),  # overlapping windows
    # Windows that tile the image (stride = pool, no padding before): the gradient's fast path.
    ((2, 6, 4, 3), (2, 2), None, "valid"),  # exactly tiled
    ((2, 8, 5, 2), (3, 2), None, "valid"),  # a row and a column past the last window
    ((1, 5, 5, 2), (2, 2), None, "same"),  # padding after only: not tiled, general path
]


def pool_geometry(xs, pool, strides, padding) -> tuple[tuple[int, ...], tuple[int, ...]]:
    strides = strides or pool
    win = window(xs[1:3], pool, strides, padding)
    return (xs[0], *win.out, xs[3]), (*pool, *strides, win.pads[0][0], win.pads[1][0])


def tied(shape, dtype, seed: int) -> np.ndarray:
    """Small integers: many ties inside each window."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_and_its_gradients(case, dtype) -> None:
    xs, pool, strides, padding = case
    attrs = {"pool_size": pool, "strides": strides, "padding": padding}
    out_shape, geometry = pool_geometry(*case)
    for x in (data(xs, dtype, 1), tied(xs, dtype, 2)):
        dy, g = data(out_shape, dtype, 3), data(xs, dtype, 4)
        out = np.full(out_shape, np.nan, dtype)
        K.k_max_pool2d(x, out, *geometry)
        np.testing.assert_array_equal(out, reference("max_pool2d", x, **attrs))
        dx = np.full(xs, np.nan, dtype)
        K.k_max_pool2d_grad(x, dy, dx, *geometry)
        # Overlapping windows may add two dy values into one cell in another order.
        np.testing.assert_allclose(dx, reference("max_pool2d_grad", x, dy, **attrs),
                                   rtol=1e-6, atol=1e-6)
        K.k_max_pool2d_select(x, g, out, *geometry)
        np.testing.assert_array_equal(out, reference("max_pool2d_select", x, g, **attrs))
        K.k_avg_pool2d(x, out, *geometry)
        np.testing.assert_array_equal(out, reference("avg_pool2d", x, **attrs))
        K.k_avg_pool2d_grad(dy, dx, *geometry)
        np.testing.assert_array_equal(
            dx, reference("avg_pool2d_grad", dy, input_size=xs[1:3], **attrs))


def test_max_pool_padded_cells_and_nan_follow_the_reference() -> None:
    # -inf everywhere: with 'same' padding a window whose first cell is padded keeps it as
    # its argmax, so its gradient falls into the padding (dropped) as in the reference.
    xs, attrs = (1, 4, 4, 2), {"pool_size": (3, 3), "strides": (2, 2), "padding": "same"}
    out_shape, geometry = pool_geometry(xs, (3, 3), (2, 2), "same")
    x = np.full(xs, -np.inf)
    x[0, 1, 2, 0] = np.nan
    x[0, 3, 3, 1] = 5.0
    dy, g = data(out_shape, np.float64, 3), data(xs, np.float64, 4)
    out = np.empty(out_shape)
    K.k_max_pool2d(x, out, *geometry)
    np.testing.assert_array_equal(out, reference("max_pool2d", x, **attrs))
    dx = np.empty(xs)
    K.k_max_pool2d_grad(x, dy, dx, *geometry)
    np.testing.assert_array_equal(dx, reference("max_pool2d_grad", x, dy, **attrs))
    K.k_max_pool2d_select(x, g, out, *geometry)
    np.testing.assert_array_equal(out, reference("max_pool2d_select", x, g, **attrs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", [(2, 3), (2, 2)])
def test_max_pool_of_tiling_windows_is_bit_exact_with_nan_ties_and_signed_zero(pool,
                                                                                dtype) -> None:
    """The tiled fast paths (stride = pool; 2x2 has its own): NaN first in a window wins the
    gradient, a later NaN never does but still wins the max, ties go to the first cell, -0.0
    gradients come out as the reference's 0 + -0.0, and cells past the last window are
    zero."""
    xs, attrs = (2, 5, 7, 3), {"pool_size": pool, "strides": None, "padding": "valid"}
    out_shape, geometry = pool_geometry(xs, pool, None, "valid")
    x = tied(xs, dtype, 5)
    x[0, 0, 0, 0] = np.nan  # first cell of window (0, 0)
    x[0, 1, pool[1] + 1, 1] = np.nan  # a later cell of window (0, 1)
    x[1, 1, 1, 0] = np.nan  # a later cell of window (0, 0), its last when 2x2
    x[1, 4, 6, 2] = 99.0  # in no window
    dy = data(out_shape, dtype, 6)
    dy[0, 0, 1, 2] = -0.0
    out = np.full(out_shape, 7, dtype)
    K.k_max_pool2d(x, out, *geometry)
    np.testing.assert_array_equal(out, reference("max_pool2d", x, **attrs))
    assert np.isnan(out[0, 0, 1, 1]) and np.isnan(out[1, 0, 0, 0])
    dx = np.full(xs, np.nan, dtype)
    K.k_max_pool2d_grad(x, dy, dx, *geometry)
    expected = reference("max_pool2d_grad", x, dy, **attrs)
    np.testing.assert_array_equal(dx, expected)
    assert not np.signbit(dx[expected == 0]).any()


# -- softmax ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 7), (1, 1), (128, 600)])  # the last one threads
def test_softmax_and_log_softmax_over_the_last_axis(shape, dtype) -> None:
    x = data(shape, dtype, 1) * 5
    x[0] += 1000  # stable: shifted by the row's max
    out = np.empty(shape, dtype)
    K.k_softmax_lastaxis(x, out)
    np.testing.assert_allclose(out, reference("softmax", x, axis=-1), **TOL[dtype])
    K.k_log_softmax_lastaxis(x, out)
    np.testing.assert_allclose(out, reference("log_softmax", x, axis=-1), **TOL[dtype])


def test_softmax_nan_and_inf_rows_match_the_reference() -> None:
    x = np.array([[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf] * 3, [0.0, -np.inf, 1.0]])
    out = np.empty_like(x)
    for kernel, op in [(K.k_softmax_lastaxis, "softmax"),
                       (K.k_log_softmax_lastaxis, "log_softmax")]:
        kernel(x, out)
        with np.errstate(invalid="ignore"):  # inf - inf in the reference, as intended
            expected = reference(op, x, axis=-1)
        np.testing.assert_allclose(out, expected, rtol=1e-12)


# -- gather, scatter_add, one_hot ------------------------------------------------------------
def around(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, size, inner): the 3-D view with `axis` in the middle."""
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_and_scatter_add_along_any_axis(axis, index_dtype) -> None:
    shape = (3, 4, 5)
    x = data(shape, np.float32, 1)
    indices = np.array([[1, 0], [2, 1], [1, 1]], index_dtype) % shape[axis]
    expected = reference("gather", x, indices, axis=axis)
    outer, size, inner = around(shape, axis)
    out = np.empty(expected.shape, np.float32)
    K.k_gather(x.reshape(outer, size, inner), indices.reshape(-1),
               out.reshape(outer, indices.size, inner))
    np.testing.assert_array_equal(out, expected)

    updates = data(expected.shape, np.float64, 2)
    expected = reference("scatter_add", updates, indices, axis=axis, size=shape[axis])
    out = np.full(shape, np.nan)
    K.k_scatter_add(updates.reshape(outer, indices.size, inner), indices.reshape(-1),
                    out.reshape(outer, size, inner))
    np.testing.assert_array_equal(out, expected)


def test_gather_and_scatter_add_large_take_the_threaded_branch() -> None:
    m = PARALLEL_MIN_WORK // 64  # out.size (gather) and updates.size (scatter_add) reach it
    x, indices = data((50, 64), np.float32, 1), np.random.default_rng(2).integers(0, 50, m)
    out = np.empty((1, m, 64), np.float32)
    K.k_gather(x.reshape(1, 50, 64), indices, out)
    np.testing.assert_array_equal(out[0], reference("gather", x, indices, axis=0))
    updates = data((m, 64), np.float32, 3)
    out = np.full((1, 50, 64), np.nan, np.float32)
    K.k_scatter_add(updates.reshape(1, m, 64), indices, out)
    expected = reference("scatter_add", updates, indices, axis=0, size=50)
    np.testing.assert_array_equal(out[0], expected)


@pytest.mark.parametrize("bad", [-1, 4])
def test_gather_and_scatter_add_refuse_out_of_range_indices(bad) -> None:
    indices = np.array([0, bad])
    with pytest.raises(IndexError, match="expected indices"):
        K.k_gather(np.zeros((1, 4, 2)), indices, np.zeros((1, 2, 2)))
    with pytest.raises(IndexError, match="expected indices"):
        K.k_scatter_add(np.zeros((1, 2, 2)), indices, np.zeros((1, 4, 2)))


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_out_of_range_gives_zeros(axis, dtype) -> None:
    indices = np.array([[0, 3, -1], [4, 2, 1]])
    expected = reference("one_hot", indices, depth=4, dtype=dtype, axis=axis)
    axis %= 3
    out = np.full(expected.shape, 7, dtype)
    K.k_one_hot(indices.reshape(prod(indices.shape[:axis]), -1),
                out.reshape(around(expected.shape, axis)))
    np.testing.assert_array_equal(out, expected)


# -- random ----------------------------------------------------------------------------------
KEYS = [0, 12345, -7, 2**63 - 1]
STREAMS = [0, 3, 2**62 + 5]
SHAPES = [(7,), (3, 5), (400, 400)]
THREADED = (2048, PARALLEL_MIN_WORK // 2048)  # the draws' threaded branch


def test_splitmix64_published_sequence() -> None:
    base = stream_base(np.array(0, np.int64), 0)
    assert bits(base, 0) == 0xE220A8397B1DCDAF
    assert bits(base, 1) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_is_bit_exact(dtype, shape) -> None:
    for key, stream in zip(KEYS, STREAMS * 2):
        k = np.array(key, np.int64)
        attrs = {"shape": shape, "low": -1.5, "high": 2.25, "dtype": np.dtype(dtype).name,
                 "stream": stream}
        out = np.empty(shape, dtype)
        K.k_uniform(k, out, -1.5, 2.25, stream)
        np.testing.assert_array_equal(out, reference("uniform", k, **attrs))


@pytest.mark.parametrize("shape", SHAPES)
def test_bernoulli_is_bit_exact(shape) -> None:
    for (key, stream), p in zip(zip(KEYS, STREAMS * 2), [0.0, 0.3, 0.999, 1.0]):
        k = np.array(key, np.int64)
        out = np.empty(shape, bool)
        K.k_bernoulli(k, out, p, stream)
        np.testing.assert_array_equal(out, reference("bernoulli", k, shape=shape, p=p,
                                                     stream=stream))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normal_matches_within_an_ulp(dtype, shape) -> None:
    for key, stream in zip(KEYS, STREAMS * 2):
        k = np.array(key, np.int64)
        out = np.empty(shape, dtype)
        K.k_normal(k, out, 0.5, 2.0, stream)
        expected = reference("normal", k, shape=shape, mean=0.5, stddev=2.0,
                             dtype=np.dtype(dtype).name, stream=stream)
        if dtype == np.float64:
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_max_ulp(out, expected, maxulp=1)


def test_draws_in_the_threaded_branch_are_bit_exact() -> None:
    k = np.array(12345, np.int64)
    out = np.empty(THREADED, np.float32)
    K.k_uniform(k, out, -1.5, 2.25, 3)
    np.testing.assert_array_equal(out, reference("uniform", k, shape=THREADED, low=-1.5,
                                                 high=2.25, dtype="float32", stream=3))
    out = np.empty(THREADED, bool)
    K.k_bernoulli(k, out, 0.3, 3)
    np.testing.assert_array_equal(out, reference("bernoulli", k, shape=THREADED, p=0.3,
                                                 stream=3))
    out = np.empty(THREADED, np.float32)
    K.k_normal(k, out, 0.5, 2.0, 3)
    np.testing.assert_array_max_ulp(out, reference("normal", k, shape=THREADED, mean=0.5,
                                                   stddev=2.0, dtype="float32", stream=3),
                                    maxulp=1)


# -- one thread ------------------------------------------------------------------------------
ONE_THREAD = """
import numpy as np, sys
from kiln.runtimes.numba import kernels as K
from kiln.runtimes.numba.kernels import conv as conv_kernels
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 32, 32, 128)); w = rng.standard_normal((3, 3, 128, 4))
conv = np.empty((8, 32, 32, 4)); K.k_conv2d(x, w, conv, 1, 1, 1, 1, 1, 1)
cols = np.empty((8 * 32 * 32, 3 * 3 * 128))  # 9.4M values: im2col's threaded branch
conv_kernels.im2col(x, cols, 3, 3, 1, 1, 1, 1, 1, 1, 32, 32)
dw = np.empty_like(w); K.k_conv2d_grad_filter_direct(x, conv, dw, 1, 1, 1, 1, 1, 1)
soft = np.empty((128, 600)); K.k_softmax_lastaxis(rng.standard_normal((128, 600)), soft)
draw = np.empty((2048, 4096)); K.k_uniform(np.array(5), draw, 0.0, 1.0, 1)
np.savez(sys.argv[1], conv=conv, cols=cols, dw=dw, soft=soft, draw=draw)
"""


def test_results_do_not_depend_on_the_thread_count(tmp_path) -> None:
    root = Path(__file__).resolve().parents[3]
    results = {}
    for threads in ("1", "all"):
        path = tmp_path / f"{threads}.npz"
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
        if threads == "1":
            env["NUMBA_NUM_THREADS"] = "1"
        subprocess.run([sys.executable, "-c", ONE_THREAD, str(path)], check=True, env=env,
                       cwd=root)
        results[threads] = np.load(path)
    for name in ("conv", "cols", "dw", "soft", "draw"):
        np.testing.assert_array_equal(results["1"][name], results["all"][name], err_msg=name)


# -- a cached caller of a threaded kernel ----------------------------------------------------
CALLER = """
import numba
from kiln.runtimes.numba import kernels as K
from kiln.runtimes.numba.kernels import conv as conv_kernels

@numba.njit(cache=True)
def driver(x, out):
    K.k_softmax_lastaxis(x, out)
"""
RUN_CALLER = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import caller
x = np.random.default_rng(0).standard_normal((128, 600))
out = np.empty_like(x)
caller.driver(x, out)
assert np.allclose(out.sum(axis=1), 1.0)
"""


def test_a_cached_driver_calling_a_threaded_kernel_loads_in_a_new_process(tmp_path) -> None:
    # numba issue #8578: the second process, loading `driver` from its cache, segfaulted in
    # the kernel's parallel loop unless the package starts the thread pool at import.
    (tmp_path / "caller.py").write_text(CALLER)
    root = Path(__file__).resolve().parents[3]
    for _ in range(2):
        subprocess.run([sys.executable, "-c", RUN_CALLER, str(tmp_path)], check=True,
                       cwd=root)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nearest", [False, True])
def test_affine_transform_kernels_are_bit_equal_to_the_reference(nearest: bool,
                                                                 dtype: type) -> None:
    """Every fill mode, a transform that reaches outside the image (the general path) and
    keeps most reads inside it (the forward's interior path)."""
    from kiln.ir.ops.image import FILL_MODES, _affine_reference, _grad_reference
    from tests.ir.samples.image import rotation

    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 17, 19, 3)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    t = rotation(3, 17, 19, 23.0, zoom=0.8, shift=(0.3, -1.2)).astype(dtype)
    interpolation = "nearest" if nearest else "bilinear"

    class Ctx:
        out_shapes = [x.shape]

    for mode in FILL_MODES:
        out, dx = np.empty_like(x), np.empty_like(x)
        K.k_affine_transform(x, t, out, nearest, FILL_MODES.index(mode), 0.5)
        K.k_affine_transform_grad(g, t, dx, nearest, FILL_MODES.index(mode))
        np.testing.assert_array_equal(
            out, _affine_reference(Ctx, x, t, interpolation, mode, 0.5, None), err_msg=mode)
        np.testing.assert_array_equal(
            dx, _grad_reference(Ctx, g, t, interpolation, mode, 0.5, None, (17, 19)),
            err_msg=mode)
