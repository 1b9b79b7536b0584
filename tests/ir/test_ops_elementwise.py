"""Elementwise ops against NumPy: random shapes, broadcasting (rank 0, symbolic batch N),
float32/float64 and ints where allowed; type errors name the op, operands and types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import OPS, GraphBuilder, KilnTypeError, TensorType
from kiln.runtimes.reference import run_graph

SETTINGS = settings(max_examples=40, deadline=None)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")


# -- operand values ---------------------------------------------------------------------------
def values(gen: np.random.Generator, shape: tuple[int, ...], dtype: str,
           domain: str = "any") -> np.ndarray:
    """Random operands in the op's domain; floats are rounded to quarters half the time so
    comparisons and maximum/minimum see ties."""
    if dtype == "bool":
        return gen.random(shape) < 0.5
    if dtype in INTS:
        low = 1 if domain in ("positive", "nonzero") else -5
        out = gen.integers(low, 6, shape)
        if domain == "nonzero":
            out *= gen.choice([-1, 1], shape)
        return out.astype(dtype)
    if domain == "positive":
        out = gen.uniform(0.1, 3.0, shape)
    elif domain == "nonzero":
        out = gen.uniform(0.25, 2.0, shape) * gen.choice([-1.0, 1.0], shape)
    elif domain == "exponent":
        out = gen.uniform(-2.0, 2.0, shape)
    else:
        out = gen.standard_normal(shape) * 2
        if gen.random() < 0.5:
            out = np.round(out * 4) / 4
    return np.asarray(out, dtype=dtype)


def run_op(op: str, arrays: list[np.ndarray], types: list[TensorType], **attrs: Any) -> np.ndarray:
    b = GraphBuilder(f"test_{op}")
    operands = [b.input(f"x{i}", t) for i, t in enumerate(types)]
    b.output(b.op(op, *operands, **attrs), "y")
    outputs, _ = run_graph(b.build(), {f"x{i}": a for i, a in enumerate(arrays)})
    return outputs["y"]


def check_close(got: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if dtype in FLOATS and got.dtype.kind == "f":
        rtol = 2e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    else:
        np.testing.assert_array_equal(got, expected)


# -- shapes: broadcasting, with an optional symbolic batch dimension --------------------------
@st.composite
def broadcast_case(draw: st.DrawFn, num: int) -> tuple[list[tuple], list[tuple]]:
    """(types' shapes, arrays' shapes): NumPy-broadcastable shapes; sometimes the operands get
    a leading batch dimension that the graph calls "N" (operands without it broadcast)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=num, min_dims=0, max_dims=3,
                                                    max_side=3)).input_shapes
    if draw(st.booleans()):
        return list(shapes), list(shapes)
    batch = draw(st.integers(1, 4))
    rank = max(len(s) for s in shapes)
    has = draw(st.lists(st.booleans(), min_size=num, max_size=num).filter(any))
    typed, concrete = [], []
    for s, with_batch in zip(shapes, has, strict=True):
        padded = (1,) * (rank - len(s)) + tuple(s)
        typed.append(("N", *padded) if with_batch else s)
        concrete.append((batch, *padded) if with_batch else s)
    return typed, concrete


# -- unary -----------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# name -> (NumPy meaning, domain, dtypes allowed, attribute strategy)
UNARY: dict[str, tuple[Callable, str, tuple[str, ...], st.SearchStrategy]] = {
    "neg": (np.negative, "any", FLOATS + INTS, st.just({})),
    "abs": (np.abs, "any", FLOATS + INTS, st.just({})),
    "exp": (np.exp, "any", FLOATS, st.just({})),
    "log": (np.log, "positive", FLOATS, st.just({})),
    "log1p": (np.log1p, "positive", FLOATS, st.just({})),
    "sqrt": (np.sqrt, "positive", FLOATS, st.just({})),
    "rsqrt": (lambda x: 1 / np.sqrt(x), "positive", FLOATS, st.just({})),
    "square": (np.square, "any", FLOATS + INTS, st.just({})),
    "tanh": (np.tanh, "any", FLOATS, st.just({})),
    "sin": (np.sin, "any", FLOATS, st.just({})),
    "cos": (np.cos, "any", FLOATS, st.just({})),
    "sigmoid": (_sigmoid, "any", FLOATS, st.just({})),
    "relu": (lambda x: np.maximum(x, 0).astype(x.dtype), "any", FLOATS + INTS, st.just({})),
    "elu": (None, "any", FLOATS,  # type: ignore[dict-item]
            st.fixed_dictionaries({"alpha": st.floats(0.1, 2.0)})),
    "selu": (lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)), "any",
             FLOATS, st.just({})),
    "softplus": (lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0), "any", FLOATS,
                 st.just({})),
    "sign": (np.sign, "any", FLOATS + INTS, st.just({})),
    "floor": (np.floor, "any", FLOATS, st.just({})),
    "ceil": (np.ceil, "any", FLOATS, st.just({})),
    "round": (np.round, "any", FLOATS, st.just({})),
    "reciprocal": (lambda x: 1 / x, "nonzero", FLOATS, st.just({})),
    "clip": (None, "any", FLOATS + INTS,  # type: ignore[dict-item]
             st.tuples(st.integers(-3, 0), st.integers(0, 3)).map(
                 lambda mm: {"min": mm[0], "max": mm[1]})),
}


def unary_expected(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    if op == "elu":
        wide = x.astype(np.float64)
        return np.where(wide > 0, wide, attrs["alpha"] * np.expm1(wide)).astype(x.dtype)
    if op == "clip":
        return np.minimum(np.maximum(x, attrs["min"]), attrs["max"]).astype(x.dtype)
    fn = UNARY[op][0]
    if x.dtype.kind == "f":  # compute in float64, compare at the operand's precision
        return np.asarray(fn(x.astype(np.float64))).astype(x.dtype)
    return np.asarray(fn(x)).astype(x.dtype)


def test_the_tables_cover_every_elementwise_op() -> None:
    elementwise = {name for name, op in OPS.items() if op.family == "elementwise"}
    covered = set(UNARY) | set(BINARY) | {"logical_not", "where", "cast"}
    assert elementwise == covered


@pytest.mark.parametrize("op", sorted(UNARY))
@SETTINGS
@given(case=broadcast_case(1), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_unary_against_numpy(op: str, case: tuple, data: st.DataObject, seed: int) -> None:
    _, domain, dtypes, attr_strategy = UNARY[op]
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    attrs = data.draw(attr_strategy, label="attrs")
    (typed,), (concrete,) = case
    x = values(np.random.default_rng(seed), concrete, dtype, domain)
    got = run_op(op, [x], [TensorType(typed, dtype)], **attrs)
    check_close(got, unary_expected(op, x, attrs), dtype)


@pytest.mark.parametrize("op", sorted(op for op, row in UNARY.items() if INTS[0] not in row[2]))
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_float_only_unary_ops_reject_other_dtypes(op: str, dtype: str) -> None:
    b = GraphBuilder()
    x = b.input("a", TensorType((2,), dtype))
    with pytest.raises(KilnTypeError, match="floating-point") as info:
        b.op(op, x)
    message = str(info.value)
    assert message.startswith(op) and "x=%a" in message and f"{x.type}" in message


def test_clip_of_ints_with_default_bounds_is_the_identity() -> None:
    x = np.array([-7, 0, 9], np.int32)
    np.testing.assert_array_equal(run_op("clip", [x], [TensorType((3,), "int32")]), x)


@SETTINGS
@given(case=broadcast_case(1), seed=st.integers(0, 2**32 - 1))
def test_logical_not(case: tuple, seed: int) -> None:
    (typed,), (concrete,) = case
    x = values(np.random.default_rng(seed), concrete, "bool")
    got = run_op("logical_not", [x], [TensorType(typed, "bool")])
    check_close(got, np.logical_not(x), "bool")


# -- binary ----------------------------------------------------------------------------------
# name -> (NumPy meaning, x domain, y domain, dtypes allowed)
BINARY: dict[str, tuple[Callable, str, str, tuple[str, ...]]] = {
    "add": (np.add, "any", "any", FLOATS + INTS),
    "sub": (np.subtract, "any", "any", FLOATS + INTS),
    "mul": (np.multiply, "any", "any", FLOATS + INTS),
    "div": (np.divide, "any", "nonzero", FLOATS),
    "pow": (np.power, "positive", "exponent", FLOATS),
    "maximum": (np.maximum, "any", "any", FLOATS + INTS),
    "minimum": (np.minimum, "any", "any", FLOATS + INTS),
    "equal": (np.equal, "any", "any", FLOATS + INTS + ("bool",)),
    "less": (np.less, "any", "any", FLOATS + INTS + ("bool",)),
    "greater": (np.greater, "any", "any", FLOATS + INTS + ("bool",)),
    "logical_and": (np.logical_and, "any", "any", ("bool",)),
    "logical_or": (np.logical_or, "any", "any", ("bool",)),
}


@pytest.mark.parametrize("op", sorted(BINARY))
@SETTINGS
@given(case=broadcast_case(2), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_binary_against_numpy(op: str, case: tuple, data: st.DataObject, seed: int) -> None:
    fn, x_domain, y_domain, dtypes = BINARY[op]
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    gen = np.random.default_rng(seed)
    typed, concrete = case
    x = values(gen, concrete[0], dtype, x_domain)
    y = values(gen, concrete[1], dtype, y_domain)
    got = run_op(op, [x, y], [TensorType(typed[0], dtype), TensorType(typed[1], dtype)])
    expected = fn(x.astype(np.float64), y.astype(np.float64)) if dtype in FLOATS else fn(x, y)
    expected = np.asarray(expected)
    if expected.dtype != np.bool_:
        expected = expected.astype(dtype)
    check_close(got, expected, dtype)


@pytest.mark.parametrize("op", ["add", "mul", "pow", "maximum", "less", "logical_or"])
@pytest.mark.parametrize("scalar_first", [True, False])
def test_binary_with_a_rank_0_operand(op: str, scalar_first: bool) -> None:
    fn, x_domain, y_domain, dtypes = BINARY[op]
    dtype = dtypes[0]
    gen = np.random.default_rng(7)
    shapes = [(), (2, 3)] if scalar_first else [(2, 3), ()]
    typed = [(), ("N", 3)] if scalar_first else [("N", 3), ()]
    x = values(gen, shapes[0], dtype, x_domain)
    y = values(gen, shapes[1], dtype, y_domain)
    got = run_op(op, [x, y], [TensorType(typed[0], dtype), TensorType(typed[1], dtype)])
    assert got.shape == (2, 3)
    expected = np.asarray(fn(x, y))
    check_close(got, expected if expected.dtype == np.bool_ else expected.astype(dtype), dtype)


def test_result_type_keeps_the_symbol() -> None:
    b = GraphBuilder()
    x = b.input("x", TensorType(("N", 1, 4), "float32"))
    y = b.input("y", TensorType((3, 1), "float32"))
    assert b.add(x, y).type == TensorType(("N", 3, 4), "float32")
    assert b.less(x, y).type == TensorType(("N", 3, 4), "bool")


def binary_types(op: str) -> tuple[str, str]:
    """Two different dtypes the op would accept one at a time."""
    dtypes = BINARY[op][3]
    return (dtypes[0], dtypes[1]) if len(dtypes) > 1 else ("bool", "float32")


@pytest.mark.parametrize("op", sorted(BINARY))
def test_mismatched_dtypes_name_op_operands_and_types(op: str) -> None:
    first, second = binary_types(op)
    b = GraphBuilder()
    x = b.input("lhs", TensorType(("N", 3), first))
    y = b.input("rhs", TensorType((3,), second))
    with pytest.raises(KilnTypeError, match="one dtype") as info:
        b.op(op, x, y)
    message = str(info.value)
    assert message.startswith(op + " ")
    for part in ("x=%lhs", "y=%rhs", str(x.type), str(y.type)):
        assert part in message, (part, message)


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((3,), (4,)), ((2, 3), (3, 2)), (("N",), (3,)),
                                    (("N", 2), ("M", 2)), ((3, "N"), (1, 3))])
def test_shapes_that_do_not_broadcast_name_op_operands_and_types(op: str,
                                                                 shapes: tuple) -> None:
    dtype = BINARY[op][3][0]
    b = GraphBuilder()
    x = b.input("lhs", TensorType(shapes[0], dtype))
    y = b.input("rhs", TensorType(shapes[1], dtype))
    with pytest.raises(KilnTypeError, match="broadcast") as info:
        b.op(op, x, y)
    message = str(info.value)
    assert message.startswith(op + " ")
    for part in ("x=%lhs", "y=%rhs", str(x.type), str(y.type)):
        assert part in message, (part, message)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum"])
def test_numeric_binary_ops_reject_bool(op: str) -> None:
    b = GraphBuilder()
    x = b.input("x", TensorType((2,), "bool"))
    with pytest.raises(KilnTypeError, match=op):
        b.op(op, x, x)


@pytest.mark.parametrize("op", ["div", "pow"])
@pytest.mark.parametrize("dtype", INTS)
def test_float_only_binary_ops_reject_ints(op: str, dtype: str) -> None:
    b = GraphBuilder()
    x = b.input("x", TensorType((2,), dtype))
    with pytest.raises(KilnTypeError, match=f"^{op} .*floating-point"):
        b.op(op, x, x)


@pytest.mark.parametrize("op", ["logical_and", "logical_or"])
def test_logical_ops_need_bool(op: str) -> None:
    b = GraphBuilder()
    x = b.input("x", TensorType((2,), "float32"))
    with pytest.raises(KilnTypeError, match=f"^{op} .*bool"):
        b.op(op, x, x)


# -- where, cast -----------------------------------------------------------------------------
@SETTINGS
@given(case=broadcast_case(3), dtype=st.sampled_from(FLOATS + INTS + ("bool",)),
       seed=st.integers(0, 2**32 - 1))
def test_where_against_numpy(case: tuple, dtype: str, seed: int) -> None:
    gen = np.random.default_rng(seed)
    typed, concrete = case
    cond = values(gen, concrete[0], "bool")
    x, y = values(gen, concrete[1], dtype), values(gen, concrete[2], dtype)
    types = [TensorType(typed[0], "bool"), TensorType(typed[1], dtype),
             TensorType(typed[2], dtype)]
    check_close(run_op("where", [cond, x, y], types), np.where(cond, x, y), dtype)


def test_where_errors_name_the_operands() -> None:
    b = GraphBuilder()
    c = b.input("c", TensorType((3,), "float32"))
    m = b.input("m", TensorType((3,), "bool"))
    x = b.input("x", TensorType((3,), "float32"))
    y = b.input("y", TensorType((3,), "float64"))
    z = b.input("z", TensorType((4,), "float32"))
    with pytest.raises(KilnTypeError, match=r"^where .*cond=%c.*bool operand cond"):
        b.where(c, x, x)
    with pytest.raises(KilnTypeError, match=r"one dtype") as info:
        b.where(m, x, y)
    assert "f32[3]" in str(info.value) and "f64[3]" in str(info.value)
    with pytest.raises(KilnTypeError, match=r"broadcast.*cond: bool\[3\], x: f32\[3\], "
                                            r"y: f32\[4\]"):
        b.where(m, x, z)


ALL_DTYPES = FLOATS + INTS + ("bool",)


@SETTINGS
@given(case=broadcast_case(1), source=st.sampled_from(ALL_DTYPES),
       target=st.sampled_from(ALL_DTYPES), seed=st.integers(0, 2**32 - 1))
def test_cast_against_numpy(case: tuple, source: str, target: str, seed: int) -> None:
    (typed,), (concrete,) = case
    x = values(np.random.default_rng(seed), concrete, source)
    got = run_op("cast", [x], [TensorType(typed, source)], dtype=target)
    check_close(got, x.astype(target), target)


def test_cast_accepts_short_dtype_names() -> None:
    b = GraphBuilder()
    x = b.input("x", TensorType((2,), "float32"))
    assert b.cast(x, dtype="i32").type == TensorType((2,), "int32")
