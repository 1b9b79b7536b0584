"""TensorType: construction, canonical dtypes, printing, errors, symbolic broadcasting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import (
    KilnError,
    KilnTypeError,
    KilnValueError,
    TensorType,
    boolean,
    f32,
    f64,
    i32,
    i64,
)
from kiln.ir.types import broadcast_shapes, canonical_dtype, normalize_axes

SETTINGS = settings(max_examples=50, deadline=None)


# -- construction ----------------------------------------------------------------------------
def test_shape_becomes_a_tuple_of_python_ints() -> None:
    t = TensorType([np.int64(2), 3, "N"], "float32")
    assert t.shape == (2, 3, "N")
    assert all(type(d) is int for d in t.shape[:2])
    assert t.rank == 3
    assert t.symbols == ("N",)
    assert not t.is_static
    assert TensorType((), "int32").rank == 0
    assert TensorType((), "int32").is_static


@pytest.mark.parametrize(
    "given_dtype, name",
    [("float32", "float32"), ("f32", "float32"), (np.float32, "float32"),
     (np.dtype("float64"), "float64"), ("f64", "float64"), ("i32", "int32"),
     (np.int64, "int64"), ("bool", "bool"), (np.bool_, "bool")],
)
def test_dtype_aliases_are_canonical(given_dtype: object, name: str) -> None:
    assert TensorType((1,), given_dtype).dtype == name  # type: ignore[arg-type]
    assert canonical_dtype(given_dtype) == name


def test_default_dtype_is_float32() -> None:
    assert TensorType((2,)).dtype == "float32"


def test_is_float() -> None:
    assert f32[1].is_float and f64[1].is_float
    assert not i32[1].is_float and not i64[1].is_float and not boolean[1].is_float


def test_types_are_frozen_hashable_and_compare_by_value() -> None:
    t = TensorType(("N", 3), "f32")
    assert t == f32["N", 3]
    assert hash(t) == hash(f32["N", 3])
    assert t != f64["N", 3] and t != f32["M", 3] and t != f32[3, "N"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dtype = "float64"  # type: ignore[misc]


def test_with_shape_and_with_dtype_make_new_types() -> None:
    t = f32["N", 3]
    assert t.with_shape([4]) == f32[4]
    assert t.with_dtype("i64") == i64["N", 3]
    assert t == f32["N", 3]


def test_resolve_binds_symbols() -> None:
    assert f32["N", 3, "M"].resolve({"N": 5, "M": 2}) == (5, 3, 2)
    assert f32[2].resolve({}) == (2,)
    with pytest.raises(KilnValueError, match="symbol M"):
        f32["N", "M"].resolve({"N": 1})


# -- printing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "t, text",
    [(f32["N", 3], "f32[N,3]"), (f64[()], "f64[]"), (i32[7], "i32[7]"),
     (i64[1, 2, 3], "i64[1,2,3]"), (boolean["B", "T"], "bool[B,T]"), (f32[0], "f32[0]")],
)
def test_printing(t: TensorType, text: str) -> None:
    assert str(t) == text
    assert repr(t) == text


# -- sugar -----------------------------------------------------------------------------------
def test_sugar_builds_types() -> None:
    assert f32["N", 3] == TensorType(("N", 3), "float32")
    assert f32[3] == TensorType((3,), "float32")
    assert f32["N"] == TensorType(("N",), "float32")
    assert f32[()] == TensorType((), "float32")
    assert f64[2, 2] == TensorType((2, 2), "float64")
    assert i32[1] == TensorType((1,), "int32")
    assert i64[1] == TensorType((1,), "int64")
    assert boolean[1] == TensorType((1,), "bool")


def test_sugar_checks_dims() -> None:
    with pytest.raises(KilnValueError):
        f32[-1]
    with pytest.raises(KilnTypeError):
        f32["N", 2.5]


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [-1, -7])
def test_negative_dims_are_rejected(dim: int) -> None:
    with pytest.raises(KilnValueError, match=f"Received: {dim}"):
        TensorType((2, dim))


@pytest.mark.parametrize("dim", [1.5, 2.0, True, False, None, "", "1N", "N M", "N-1", (3,)])
def test_dims_that_are_not_ints_or_symbols_are_rejected(dim: object) -> None:
    with pytest.raises(KilnTypeError, match="Expected a dimension") as info:
        TensorType((dim,))  # type: ignore[arg-type]
    assert repr(dim) in str(info.value)


@pytest.mark.parametrize("dtype", ["float16", "f16", "int8", "uint8", "complex64", np.uint8,
                                   np.complex128])
def test_unsupported_dtypes_are_rejected(dtype: object) -> None:
    with pytest.raises(KilnTypeError, match="Expected a dtype among") as info:
        TensorType((1,), dtype)  # type: ignore[arg-type]
    assert "Received: dtype=" in str(info.value)


@pytest.mark.parametrize("dtype", ["flaot32", "i33", "f32x", "string", 3.5])
def test_misspelled_dtypes_are_rejected(dtype: object) -> None:
    with pytest.raises(KilnTypeError):
        TensorType((1,), dtype)  # type: ignore[arg-type]


def test_none_is_not_silently_float64() -> None:
    try:
        t = TensorType((1,), None)  # type: ignore[arg-type]
    except KilnTypeError:
        return
    assert t.dtype == "float32"


def test_errors_are_builtin_exceptions_too() -> None:
    with pytest.raises(TypeError):
        TensorType((1.5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TensorType((-1,))
    with pytest.raises(KilnError):
        TensorType((1,), "float16")


# -- broadcast_shapes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shapes, expected",
    [
        ((), ()),
        (((),), ()),
        (((), ("N", 3)), ("N", 3)),
        ((("N", 3), (3,)), ("N", 3)),
        ((("N", 1), (1, 4)), ("N", 4)),
        ((("N", 1), (4,)), ("N", 4)),
        ((("N",), (1,)), ("N",)),
        ((("N",), ("N",)), ("N",)),
        (((1, "T"), ("N", 1)), ("N", "T")),
        ((("N", 3), ("N", 1), (1,)), ("N", 3)),
        ((("N",), ("M",)), None),
        ((("N",), (2,)), None),
        (((2,), ("N",)), None),
        ((("N", 3), (4,)), None),
        (((0,), (1,)), (0,)),
        (((0,), (2,)), None),
    ],
)
def test_broadcast_shapes_with_symbols(shapes: tuple, expected: tuple | None) -> None:
    assert broadcast_shapes(*shapes) == expected


shape_lists = st.lists(st.lists(st.integers(0, 3), max_size=4).map(tuple), min_size=1,
                       max_size=3)


@SETTINGS
@given(shape_lists)
def test_broadcast_shapes_agrees_with_numpy(shapes: list[tuple[int, ...]]) -> None:
    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        expected = None
    assert broadcast_shapes(*shapes) == expected


@SETTINGS
@given(shape_lists, st.data())
def test_broadcast_shapes_keeps_a_shared_symbol(shapes: list[tuple[int, ...]],
                                                data: st.DataObject) -> None:
    """Prepending "N" (or 1) to some shapes puts "N" in front of the numeric result."""
    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        return
    rank = len(expected)
    padded = [(1,) * (rank - len(s)) + s for s in shapes]
    lead = [data.draw(st.sampled_from(["N", 1, None])) for _ in shapes]
    with_batch = [((d,) + s) if d is not None else s for d, s in zip(lead, padded, strict=True)]
    result = broadcast_shapes(*with_batch)
    if "N" in lead:
        assert result == ("N", *expected)
    elif 1 in lead:
        assert result == (1, *expected)
    else:
        assert result == tuple(expected)


# -- normalize_axes --------------------------------------------------------------------------
def test_normalize_axes() -> None:
    assert normalize_axes(None, 3, "t") == (0, 1, 2)
    assert normalize_axes(-1, 3, "t") == (2,)
    assert normalize_axes((2, -3), 3, "t") == (0, 2)
    assert normalize_axes((), 3, "t") == ()
    with pytest.raises(KilnValueError, match=r"t: expected axes in \[-3, 3\)"):
        normalize_axes(3, 3, "t")
    with pytest.raises(KilnValueError, match="distinct"):
        normalize_axes((0, -3), 3, "t")
