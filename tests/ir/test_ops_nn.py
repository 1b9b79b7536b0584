"""nn ops against naive per-pixel NumPy loops, Keras's known output sizes and padding
placement, adjoint identities between each op and its gradient ops, and a second derivative."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, grad
from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.types import TensorType, f32, f64, i32
from kiln.runtimes.reference import run_graph
from tests.ir.gradcheck import run_sample
from tests.ir.samples import Sample


def apply(op: str, *inputs: np.ndarray, **attrs: object) -> np.ndarray:
    return run_sample(Sample(op, list(inputs), attrs))[0]


def out_type(op: str, *types: TensorType, **attrs: object) -> TensorType:
    b = GraphBuilder()
    return b.op(op, *(b.input(f"x{i}", t) for i, t in enumerate(types)), **attrs).type


def axis_geometry(size: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) along one axis, as Keras documents 'valid' and 'same'."""
    span = (k - 1) * d + 1
    if padding == "valid":
        return (size - span) // s + 1, 0
    out = math.ceil(size / s)
    return out, max((out - 1) * s + span - size, 0) // 2


def naive_conv(x: np.ndarray, w: np.ndarray, strides: tuple, padding: str,
               dilation: tuple) -> np.ndarray:
    n, h, wd, _ = x.shape
    kh, kw, _, cout = w.shape
    oh, top = axis_geometry(h, kh, strides[0], dilation[0], padding)
    ow, left = axis_geometry(wd, kw, strides[1], dilation[1], padding)
    y = np.zeros((n, oh, ow, cout))
    for a in range(oh):
        for b in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r = a * strides[0] + i * dilation[0] - top
                    c = b * strides[1] + j * dilation[1] - left
                    if 0 <= r < h and 0 <= c < wd:
                        y[:, a, b, :] += x[:, r, c, :] @ w[i, j]
    return y


def naive_pool(x: np.ndarray, pool: tuple, strides: tuple, padding: str, kind: str,
               ) -> np.ndarray:
    """Pooling over each window's real elements only (padding neither wins nor counts)."""
    n, h, wd, c = x.shape
    oh, top = axis_geometry(h, pool[0], strides[0], 1, padding)
    ow, left = axis_geometry(wd, pool[1], strides[1], 1, padding)
    y = np.zeros((n, oh, ow, c))
    for a in range(oh):
        for b in range(ow):
            r0, c0 = a * strides[0] - top, b * strides[1] - left
            patch = x[:, max(r0, 0):r0 + pool[0], max(c0, 0):c0 + pool[1], :]
            y[:, a, b, :] = patch.max(axis=(1, 2)) if kind == "max" else patch.mean(axis=(1, 2))
    return y


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    padding = draw(st.sampled_from(["valid", "same"]))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    low = [(k - 1) * d + 1 if padding == "valid" else 1
           for k, d in zip(kernel, dilation, strict=True)]
    size = (draw(st.integers(low[0], low[0] + 4)), draw(st.integers(low[1], low[1] + 4)))
    n, cin, cout = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    return {"x": gen.standard_normal((n, *size, cin)),
            "w": gen.standard_normal((*kernel, cin, cout)),
            "attrs": {"strides": strides, "padding": padding, "dilation": dilation},
            "gen": gen}


# -- conv2d --------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(conv_cases())
def test_conv2d_matches_naive_loops(case: dict) -> None:
    attrs = case["attrs"]
    expected = naive_conv(case["x"], case["w"], attrs["strides"], attrs["padding"],
                          attrs["dilation"])
    np.testing.assert_allclose(apply("conv2d", case["x"], case["w"], **attrs), expected,
                               rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_conv2d_gradient_ops_are_its_adjoints(case: dict) -> None:
    """<conv2d(x, w), dy> = <x, grad_input(dy, w)> = <w, grad_filter(x, dy)>."""
    x, w, attrs = case["x"], case["w"], case["attrs"]
    y = apply("conv2d", x, w, **attrs)
    dy = case["gen"].standard_normal(y.shape)
    dx = apply("conv2d_grad_input", dy, w, input_size=x.shape[1:3], **attrs)
    dw = apply("conv2d_grad_filter", x, dy, kernel_size=w.shape[:2], **attrs)
    inner = np.sum(y * dy)
    np.testing.assert_allclose(np.sum(x * dx), inner, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.sum(w * dw), inner, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size, kernel, stride, dilation, padding, expected", [
    # Keras Conv2D output sizes (keras.src.utils conv_output_length).
    (28, 3, 1, 1, "valid", 26),
    (28, 3, 1, 1, "same", 28),
    (28, 5, 1, 1, "valid", 24),
    (5, 3, 2, 1, "same", 3),
    (6, 3, 2, 1, "same", 3),
    (32, 3, 2, 1, "valid", 15),
    (32, 4, 2, 1, "same", 16),
    (7, 3, 1, 2, "valid", 3),
    (7, 3, 1, 2, "same", 7),
    (10, 3, 3, 1, "same", 4),
    (10, 1, 3, 1, "valid", 4),
])
def test_conv2d_output_sizes_match_keras(size: int, kernel: int, stride: int, dilation: int,
                                         padding: str, expected: int) -> None:
    t = out_type("conv2d", f32["N", size, size + 1, 3], f32[kernel, kernel, 3, 8],
                 strides=(stride, stride), padding=padding, dilation=(dilation, dilation))
    expected_w = axis_geometry(size + 1, kernel, stride, dilation, padding)[0]
    assert t == f32["N", expected, expected_w, 8]


def test_same_padding_puts_the_extra_row_after() -> None:
    """TF/Keras pad the smaller half before: a 2x2 window at (0, 0) reads x[0:2, 0:2]."""
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y = apply("conv2d", x, np.ones((2, 2, 1, 1)), padding="same")
    expected = np.array([[0 + 1 + 3 + 4, 1 + 2 + 4 + 5, 2 + 5],
                         [3 + 4 + 6 + 7, 4 + 5 + 7 + 8, 5 + 8],
                         [6 + 7, 7 + 8, 8]], dtype=float)
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    # in 4, kernel 3, stride 2: out 2, total padding 1, all of it after.
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = apply("conv2d", x, np.ones((3, 3, 1, 1)), strides=(2, 2), padding="same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[x[0, :3, :3].sum(), x[0, :3, 2:].sum()],
                                                  [x[0, 2:, :3].sum(), x[0, 2:, 2:].sum()]])


def test_conv2d_keeps_float32() -> None:
    x = np.ones((2, 4, 4, 3), np.float32)
    y = apply("conv2d", x, np.ones((3, 3, 3, 2), np.float32), padding="same")
    assert y.dtype == np.float32 and y.shape == (2, 4, 4, 2)


def test_second_derivative_through_conv_and_pooling() -> None:
    """d/dx <d loss/d w, v> against central differences of d loss/d w."""
    gen = np.random.default_rng(7)
    x0, w0 = gen.standard_normal((2, 5, 5, 2)), gen.standard_normal((3, 3, 2, 2))
    v = gen.standard_normal(w0.shape)
    b = GraphBuilder("loss")
    x, w = b.input("x", f64["N", 5, 5, 2]), b.input("w", f64[3, 3, 2, 2])
    h = b.conv2d(x, w, strides=(2, 2), padding="same")
    h = b.avg_pool2d(b.tanh(h), pool_size=(2, 2), strides=(1, 1))
    b.output(b.sum(b.square(b.log_softmax(b.reshape(h, shape=("N", -1))))), "loss")
    dw_graph = grad(b.build(), "loss", ["w"])

    b = GraphBuilder("hvp")
    x, w = b.input("x", f64["N", 5, 5, 2]), b.input("w", f64[3, 3, 2, 2])
    outs, _ = b.call(dw_graph, [x, w])
    b.output(b.sum(b.mul(outs["grad.w"], b.constant(v))), "dot")
    hvp, _ = run_graph(grad(b.build(), "dot", ["x"]), {"x": x0, "w": w0})

    def dot(x_: np.ndarray) -> float:
        return float(np.sum(run_graph(dw_graph, {"x": x_, "w": w0})[0]["grad.w"] * v))

    eps, numeric = 1e-6, np.zeros_like(x0)
    for index in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[index] = eps
        numeric[index] = (dot(x0 + step) - dot(x0 - step)) / (2 * eps)
    np.testing.assert_allclose(hvp["grad.x"], numeric, rtol=1e-5, atol=1e-7)


# -- pooling -------------------------------------------------------------------------------
@st.composite
def pool_cases(draw: st.DrawFn) -> dict:
    padding = draw(st.sampled_from(["valid", "same"]))
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    low = pool if padding == "valid" else (1, 1)
    size = (draw(st.integers(low[0], low[0] + 4)), draw(st.integers(low[1], low[1] + 4)))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    return {"x": gen.standard_normal((draw(st.integers(1, 2)), *size, 2)),
            "attrs": {"pool_size": pool, "strides": strides, "padding": padding},
            "gen": gen}


@settings(max_examples=50, deadline=None)
@given(pool_cases())
def test_pooling_matches_naive_loops(case: dict) -> None:
    x, attrs = case["x"], case["attrs"]
    strides = attrs["strides"] or attrs["pool_size"]
    for kind in ("max", "avg"):
        expected = naive_pool(x, attrs["pool_size"], strides, attrs["padding"], kind)
        np.testing.assert_allclose(apply(f"{kind}_pool2d", x, **attrs), expected,
                                   rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(pool_cases())
def test_pooling_gradient_ops_are_adjoints(case: dict) -> None:
    x, attrs, gen = case["x"], case["attrs"], case["gen"]
    y = apply("avg_pool2d", x, **attrs)
    dy = gen.standard_normal(y.shape)
    dx = apply("avg_pool2d_grad", dy, input_size=x.shape[1:3], **attrs)
    np.testing.assert_allclose(np.sum(x * dx), np.sum(y * dy), rtol=1e-10, atol=1e-10)

    g = gen.standard_normal(x.shape)
    routed = apply("max_pool2d_grad", x, dy, **attrs)
    selected = apply("max_pool2d_select", x, g, **attrs)
    np.testing.assert_allclose(np.sum(routed * g), np.sum(dy * selected), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_array_equal(apply("max_pool2d_select", x, x, **attrs),
                                  apply("max_pool2d", x, **attrs))


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties() -> None:
    x = np.array([[1.0, 3.0, 3.0],
                  [3.0, 0.0, 3.0],
                  [0.0, 0.0, 0.0]]).reshape(1, 3, 3, 1)
    dx = apply("max_pool2d_grad", x, np.ones((1, 2, 2, 1)), strides=(1, 1))
    # Windows (0,0) and (0,1) both pick x[0,1]; (1,0) picks x[1,0]; (1,1) picks x[1,2].
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("size, pool, stride, padding, expected", [
    # Keras MaxPooling2D / AveragePooling2D output sizes.
    (28, 2, None, "valid", 14),
    (5, 2, None, "valid", 2),
    (5, 2, None, "same", 3),
    (7, 3, 2, "valid", 3),
    (6, 3, 2, "same", 3),
    (5, 3, 1, "same", 5),
])
def test_pool_output_sizes_match_keras(size: int, pool: int, stride: int | None,
                                       padding: str, expected: int) -> None:
    strides = None if stride is None else (stride, stride)
    for op in ("max_pool2d", "avg_pool2d"):
        t = out_type(op, f32["N", size, size, 4], pool_size=(pool, pool), strides=strides,
                     padding=padding)
        assert t == f32["N", expected, expected, 4]


def test_avg_pool_same_padding_is_left_out_of_the_count() -> None:
    x = np.ones((1, 3, 3, 1))
    y = apply("avg_pool2d", x, pool_size=(2, 2), padding="same")
    np.testing.assert_array_equal(y, np.ones((1, 2, 2, 1)))


# -- softmax -------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([-1, 0, 1, (0, 2)]))
def test_softmax_matches_the_textbook_formula(seed: int, axis: object) -> None:
    x = np.random.default_rng(seed).standard_normal((2, 3, 4)) * 3
    e = np.exp(x)
    expected = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(apply("softmax", x, axis=axis), expected, rtol=1e-12)
    np.testing.assert_allclose(apply("log_softmax", x, axis=axis), np.log(expected),
                               rtol=1e-12, atol=1e-12)


def test_softmax_is_stable_for_large_inputs() -> None:
    x = np.array([[1000.0, 0.0, -1000.0], [-800.0, -799.0, -801.0]], np.float32)
    y, logy = apply("softmax", x), apply("log_softmax", x)
    assert y.dtype == logy.dtype == np.float32
    np.testing.assert_allclose(y[0], [1, 0, 0])
    np.testing.assert_allclose(logy[0], [0, -1000, -2000])
    shifted = np.array([-1.0, 0.0, -2.0])
    np.testing.assert_allclose(logy[1], shifted - np.log(np.exp(shifted).sum()), rtol=1e-6)


# -- type rules ----------------------------------------------------------------------------
@pytest.mark.parametrize("op, types, attrs, message", [
    ("conv2d", (f32["N", 5, 5], f32[3, 3, 2, 3]), {}, "rank 4"),
    ("conv2d", (f32["N", 5, 5, 2], f32[3, 3, 4, 3]), {}, "input channels"),
    ("conv2d", (f32["N", "H", 5, 2], f32[3, 3, 2, 3]), {}, "static height"),
    ("conv2d", (f32["N", 5, 5, 2], f32[3, "K", 2, 3]), {}, "static kernel"),
    ("conv2d", (i32["N", 5, 5, 2], i32[3, 3, 2, 3]), {}, "floating-point"),
    ("conv2d", (f32["N", 5, 5, 2], f64[3, 3, 2, 3]), {}, "one dtype"),
    ("conv2d", (f32["N", 2, 5, 2], f32[3, 3, 2, 3]), {}, "at least the"),
    ("conv2d", (f32["N", 5, 5, 2], f32[3, 3, 2, 3]), {"padding": "SAME"}, "padding="),
    ("conv2d", (f32["N", 5, 5, 2], f32[3, 3, 2, 3]), {"strides": 2}, "strides="),
    ("conv2d", (f32["N", 5, 5, 2], f32[3, 3, 2, 3]), {"dilation": (0, 1)}, "dilation="),
    ("conv2d_grad_input", (f32["N", 4, 4, 3], f32[3, 3, 2, 3]),
     {"input_size": (5, 5), "strides": (2, 2), "padding": "same"}, "conv2d's output"),
    ("conv2d_grad_filter", (f32["N", 5, 5, 2], f32["M", 3, 3, 3]),
     {"kernel_size": (3, 3), "strides": (2, 2), "padding": "same"}, "conv2d's output"),
    ("max_pool2d", (f32["N", 5, 5, 2],), {"pool_size": (6, 2)}, "at least the"),
    ("avg_pool2d", (f32["N", 5, 5, 2],), {"strides": (1,)}, "strides="),
    ("max_pool2d_grad", (f32["N", 5, 5, 2], f32["N", 3, 3, 2]), {}, "max_pool2d's output"),
    ("max_pool2d_select", (f32["N", 5, 5, 2], f32["N", 2, 2, 2]), {}, "the shape of x"),
    ("avg_pool2d_grad", (f32["N", 3, 3, 2],), {"input_size": (5, 5)}, "avg_pool2d's output"),
    ("softmax", (i32[3, 4],), {}, "floating-point"),
])
def test_type_errors(op: str, types: tuple, attrs: dict, message: str) -> None:
    with pytest.raises(KilnTypeError) as err:
        out_type(op, *types, **attrs)
    assert message in str(err.value)
    assert str(err.value).startswith(op) and "Received" in str(err.value)


def test_softmax_axis_out_of_range() -> None:
    with pytest.raises(KilnValueError, match="axes"):
        out_type("softmax", f32[3, 4], axis=2)
