"""gather, scatter_add and one_hot against NumPy (np.take, np.add.at, an equality mask), their
type rules and range errors, and gather's gradient with a symbolic vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import (
    GraphBuilder,
    KilnTypeError,
    KilnValueError,
    TensorType,
    f32,
    f64,
    grad,
    i32,
    i64,
)
from kiln.runtimes.reference import run_graph

SETTINGS = settings(max_examples=30, deadline=None)


def run_op(op: str, arrays: list[np.ndarray], **attrs: object) -> np.ndarray:
    b = GraphBuilder(op)
    operands = [b.input(f"x{i}", TensorType(a.shape, a.dtype)) for i, a in enumerate(arrays)]
    b.output(b.op(op, *operands, **attrs), "y")
    return run_graph(b.build(), arrays)[0]["y"]


@st.composite
def gather_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    idx_shape = draw(st.lists(st.integers(0, 3), max_size=2))
    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    indices = gen.integers(0, shape[axis], idx_shape).astype(dtype)
    return gen.standard_normal(shape), indices, axis


# -- gather --------------------------------------------------------------------------------
@SETTINGS
@given(gather_case())
def test_gather_is_np_take(case: tuple) -> None:
    x, indices, axis = case
    out = run_op("gather", [x, indices], axis=axis)
    np.testing.assert_array_equal(out, np.take(x, indices, axis=axis))


@SETTINGS
@given(gather_case())
def test_gather_gradient_is_scatter_add(case: tuple) -> None:
    x, indices, axis = case
    b = GraphBuilder("g")
    xv, iv = b.input("x", f64[x.shape]), b.input("i", TensorType(indices.shape, indices.dtype))
    y = b.gather(xv, iv, axis=axis)
    w = np.random.default_rng(0).standard_normal(y.type.resolve({}))
    b.output(b.sum(b.mul(y, b.constant(w, "float64") if w.ndim else float(w))), "loss")
    g = run_graph(grad(b.build(), "loss", ["x"]), {"x": x, "i": indices})[0]["grad.x"]
    expected = np.zeros_like(x)
    np.add.at(expected, (slice(None),) * (axis % x.ndim) + (indices,), w)
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-12)


def test_embedding_lookup_with_symbolic_batch_and_vocab_gradient() -> None:
    b = GraphBuilder("embed")
    table = b.input("table", f32["V", 4])
    tokens = b.input("tokens", i64["N", 3])
    y = b.gather(table, tokens)
    assert y.type == f32["N", 3, 4]
    b.output(b.sum(b.square(y)), "loss")
    graph = grad(b.build(), "loss", ["table"])
    assert any(n.op == "scatter_add" and n.attr["size"] == "V" for n in graph.nodes)
    gen = np.random.default_rng(3)
    tab = gen.standard_normal((6, 4)).astype(np.float32)
    tok = np.array([[5, 0, 5], [1, 1, 2]], dtype=np.int64)
    out = run_graph(graph, {"table": tab, "tokens": tok})[0]["grad.table"]
    expected = np.zeros_like(tab)
    np.add.at(expected, tok, 2 * tab[tok])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("bad", [5, -1])
def test_gather_out_of_range_names_op_index_and_range(bad: int) -> None:
    x = np.zeros((5, 2), np.float32)
    indices = np.array([[0, 1], [bad, 2]], dtype=np.int32)
    with pytest.raises(KilnValueError, match=rf"gather .*\[0, 5\).*indices\[1, 0\]={bad}"):
        run_op("gather", [x, indices])


def test_gather_type_errors() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[3, 4])
    with pytest.raises(KilnTypeError, match="expected int32 or int64 indices"):
        b.gather(x, b.input("f", f32[2]))
    with pytest.raises(KilnTypeError, match=r"expected axis in \[-2, 2\)"):
        b.gather(x, b.input("i", i32[2]), axis=2)
    with pytest.raises(KilnTypeError, match="rank >= 1"):
        b.gather(b.input("s", f32[()]), b.input("j", i32[2]))


# -- scatter_add ---------------------------------------------------------------------------
@SETTINGS
@given(gather_case())
def test_scatter_add_is_np_add_at(case: tuple) -> None:
    x, indices, axis = case
    axis %= x.ndim
    updates = np.take(x, indices, axis=axis) + 1.0  # any array of the gathered shape
    out = run_op("scatter_add", [updates, indices], axis=axis, size=x.shape[axis])
    expected = np.zeros_like(x)
    np.add.at(expected, (slice(None),) * axis + (indices,), updates)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_scatter_add_gradient_is_gather() -> None:
    b = GraphBuilder("s")
    u, i = b.input("u", f64[2, 3]), b.input("i", i64[3])
    b.output(b.sum(b.scatter_add(u, i, axis=1, size=4)), "loss")
    graph = grad(b.build(), "loss", ["u"])
    assert "gather" in {n.op for n in graph.nodes}


def test_scatter_add_type_and_range_errors() -> None:
    b = GraphBuilder()
    u = b.input("u", f32[2, 3])
    with pytest.raises(KilnTypeError, match="indices' shape"):
        b.scatter_add(u, b.input("i", i32[2]), axis=1, size=4)
    with pytest.raises(KilnTypeError, match="numeric updates"):
        b.scatter_add(b.input("m", TensorType((3,), "bool")), b.input("j", i32[3]), axis=0,
                      size=2)
    with pytest.raises(KilnValueError, match=r"scatter_add .*\[0, 2\).*indices\[2\]=2"):
        run_op("scatter_add", [np.ones(3, np.float32), np.array([0, 1, 2])], axis=0, size=2)


# -- one_hot -------------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.integers(0, 3), max_size=2), st.integers(1, 5), st.data())
def test_one_hot_matches_an_equality_mask(idx_shape: list, depth: int, data: st.DataObject) -> None:
    gen = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    indices = gen.integers(-2, depth + 2, idx_shape)
    axis = data.draw(st.integers(-len(idx_shape) - 1, len(idx_shape)))
    dtype = data.draw(st.sampled_from(["float32", "float64", "int32", "bool"]))
    out = run_op("one_hot", [indices], depth=depth, axis=axis, dtype=dtype)
    expected = np.moveaxis(indices[..., None] == np.arange(depth), -1, axis).astype(dtype)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_one_hot_out_of_range_rows_are_zero() -> None:
    out = run_op("one_hot", [np.array([2, -1, 3, 7, 0])], depth=3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]])
    assert out.dtype == np.float32


def test_one_hot_type_errors() -> None:
    b = GraphBuilder()
    i = b.input("i", i64["N"])
    assert b.one_hot(i, depth=4, axis=0).type == f32[4, "N"]
    with pytest.raises(KilnTypeError, match="depth to be an int >= 1"):
        b.one_hot(i, depth=0)
    with pytest.raises(KilnTypeError, match=r"axis in \[-2, 2\)"):
        b.one_hot(i, depth=3, axis=2)
    with pytest.raises(KilnTypeError, match="int32 or int64 indices"):
        b.one_hot(b.input("f", f32[3]), depth=3)
