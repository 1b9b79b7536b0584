"""Reductions against NumPy over random shapes, axes (None, one, several, negative) and
keepdims, static and with a symbolic batch; mean over the batch divides by the runtime size."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, f32, f64, grad
from kiln.runtimes.reference import run_graph

SETTINGS = settings(max_examples=40, deadline=None)
REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}
FLOAT_ONLY = {"mean"}


def run_op(op: str, x: np.ndarray, t: TensorType, **attrs: Any) -> tuple[np.ndarray, TensorType]:
    b = GraphBuilder(f"test_{op}")
    y = b.op(op, b.input("x", t), **attrs)
    b.output(y, "y")
    outputs, _ = run_graph(b.build(), {"x": x})
    return outputs["y"], y.type


def operand(seed: int, shape: tuple[int, ...], dtype: str, op: str) -> np.ndarray:
    gen = np.random.default_rng(seed)
    if dtype.startswith("int"):
        return gen.integers(-3, 4, shape).astype(dtype)
    if op == "prod":  # near 1, so products of up to 256 terms stay finite and normal
        return gen.uniform(0.8, 1.25, shape).astype(dtype)
    # Rounded values give ties, which max/min/argmax/argmin must resolve like NumPy.
    return (np.round(gen.standard_normal(shape) * 4) / 4).astype(dtype)


@st.composite
def axes_for(draw: st.DrawFn, rank: int) -> Any:
    """None, one axis (maybe negative, maybe as a 1-tuple) or several distinct axes."""
    kinds = ["none", "several"] + (["one", "tuple"] if rank else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "several":
        chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank)
                      if rank else st.just([]))
        return tuple(a - rank if draw(st.booleans()) else a for a in chosen)
    axis = draw(st.integers(-rank, rank - 1))
    return axis if kind == "one" else (axis,)


@st.composite
def reduce_case(draw: st.DrawFn) -> tuple:
    """(typed shape, concrete shape): sometimes the leading dimension is the symbol N."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    if shape and draw(st.booleans()):
        return ("N", *shape[1:]), shape
    return shape, shape


def expected_shape(shape: tuple, axes: Any, keepdims: bool) -> tuple:
    rank = len(shape)
    if axes is None:
        axes = tuple(range(rank))
    elif isinstance(axes, int):
        axes = (axes,)
    axes = {a % rank for a in axes}
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@pytest.mark.parametrize("op", sorted(REDUCTIONS))
@SETTINGS
@given(case=reduce_case(), data=st.data(), keepdims=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_reduction_against_numpy(op: str, case: tuple, data: st.DataObject, keepdims: bool,
                                 seed: int) -> None:
    typed, concrete = case
    dtypes = ["float32", "float64"] + ([] if op in FLOAT_ONLY else ["int32", "int64"])
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    axes = data.draw(axes_for(len(concrete)), label="axes")
    x = operand(seed, concrete, dtype, op)
    got, out_type = run_op(op, x, TensorType(typed, dtype), axes=axes, keepdims=keepdims)
    assert out_type == TensorType(expected_shape(typed, axes, keepdims), dtype)
    wide = x.astype(np.float64) if dtype.startswith("float") else x
    expected = np.asarray(REDUCTIONS[op](wide, axis=axes, keepdims=keepdims)).astype(dtype)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if dtype.startswith("float") and op in ("sum", "mean", "prod"):
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@SETTINGS
@given(case=reduce_case(), data=st.data(), keepdims=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_arg_reduction_against_numpy(op: str, case: tuple, data: st.DataObject,
                                     keepdims: bool, seed: int) -> None:
    typed, concrete = case
    rank = len(concrete)
    dtype = data.draw(st.sampled_from(["float32", "float64", "int32", "int64"]), label="dtype")
    axis = data.draw(st.none() | st.integers(-rank, rank - 1) if rank else st.none(),
                     label="axis")
    x = operand(seed, concrete, dtype, op)
    got, out_type = run_op(op, x, TensorType(typed, dtype), axis=axis, keepdims=keepdims)
    assert out_type == TensorType(expected_shape(typed, axis, keepdims), "int64")
    expected = getattr(np, op)(x, axis=axis, keepdims=keepdims)
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_arg_reductions_default_to_the_last_axis() -> None:
    x = np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 7.0]], np.float32)
    got, _ = run_op("argmax", x, f32[2, 3])
    np.testing.assert_array_equal(got, [1, 0])
    got, _ = run_op("argmin", x, f32[2, 3])
    np.testing.assert_array_equal(got, [0, 1])


@pytest.mark.parametrize("axis", [(1,), (0, 1)])
def test_arg_reduction_over_a_tuple_of_axes(axis: tuple) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    try:
        got, out_type = run_op("argmax", x, f32[2, 3], axis=axis)
    except (KilnTypeError, KilnValueError):
        return  # rejecting the tuple with a kiln error is fine too
    flat = np.moveaxis(x, axis, range(-len(axis), 0)).reshape(*out_type.shape, -1)
    np.testing.assert_array_equal(got, np.argmax(flat, axis=-1))


# -- symbolic batch --------------------------------------------------------------------------
@pytest.mark.parametrize("axes, keepdims", [(0, False), ((0,), True), (None, False),
                                            ((0, 2), True), ((-3, -1), False)])
def test_mean_over_a_symbolic_batch_divides_by_the_runtime_size(axes: Any,
                                                                keepdims: bool) -> None:
    b = GraphBuilder("batch_mean")
    x = b.input("x", f64["N", 3, 2])
    y = b.mean(x, axes=axes, keepdims=keepdims)
    b.output(y, "y")
    b.output(b.sum(y), "loss")
    graph = b.build()
    with_grad = grad(graph, "loss", ["x"])
    for n in (1, 2, 5):
        xs = np.random.default_rng(n).standard_normal((n, 3, 2))
        outputs, _ = run_graph(with_grad, {"x": xs})
        np.testing.assert_allclose(outputs["y"], np.mean(xs, axis=axes, keepdims=keepdims),
                                   rtol=1e-12)
        count = xs.size / np.mean(xs, axis=axes, keepdims=True).size  # elements averaged
        np.testing.assert_allclose(outputs["grad.x"], np.full((n, 3, 2), 1 / count),
                                   rtol=1e-12)


def test_reducing_the_batch_removes_the_symbol_from_the_type() -> None:
    b = GraphBuilder()
    x = b.input("x", f32["N", 3])
    assert b.sum(x, axes=0).type == f32[3]
    assert b.sum(x, axes=0, keepdims=True).type == f32[1, 3]
    assert b.max(x, axes=-1).type == f32["N"]
    assert b.argmax(x, axis=1, keepdims=True).type == TensorType(("N", 1), "int64")


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_mean_needs_floats(dtype: str) -> None:
    b = GraphBuilder()
    x = b.input("a", TensorType((2,), dtype))
    with pytest.raises(KilnTypeError, match=r"^mean \(x=%a: .*floating-point"):
        b.mean(x)


@pytest.mark.parametrize("op", ["sum", "max", "min", "prod", "argmax", "argmin"])
def test_reductions_reject_bool(op: str) -> None:
    b = GraphBuilder()
    x = b.input("a", TensorType((2,), "bool"))
    with pytest.raises(KilnTypeError, match=rf"^{op} .*numeric"):
        b.op(op, x)


@pytest.mark.parametrize("axes", [2, -3, (0, 2), (1, -1)])
def test_bad_axes_are_rejected_with_the_op_name(axes: Any) -> None:
    b = GraphBuilder()
    x = b.input("a", f32[2, 3])
    with pytest.raises(KilnValueError, match=r"^sum \(x=%a: f32\[2,3\]\).*axes"):
        b.sum(x, axes=axes)
