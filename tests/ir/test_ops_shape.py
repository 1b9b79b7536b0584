"""Shape and movement ops against NumPy: random shapes and attributes through the builder
and the reference runtime, static and with a symbolic batch N; VJPs against the transposed
Jacobian built from NumPy; and the type rules' errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, TensorType, grad
from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.types import canonical_dtype
from kiln.runtimes.reference import run_graph

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = ("float64", "float32", "int64", "bool")


def make_array(draw: Callable, shape: Sequence[int], dtype: str = "float64") -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).standard_normal(tuple(shape))
    return (values > 0) if dtype == "bool" else (values * 4).astype(dtype)


def input_type(array: np.ndarray, symbolic: bool) -> TensorType:
    shape: list[Any] = list(array.shape)
    if symbolic:
        shape[0] = "N"
    return TensorType(tuple(shape), canonical_dtype(array.dtype))


def build(op: str, arrays: Sequence[np.ndarray], attrs: dict, symbolic: bool = False):  # noqa: ANN201
    b = GraphBuilder(op)
    xs = [b.input(f"x{i}", input_type(a, symbolic)) for i, a in enumerate(arrays)]
    result = b.op(op, *xs, **attrs)
    results = result if isinstance(result, tuple) else (result,)
    for k, value in enumerate(results):
        b.output(value, f"y{k}")
    return b.build()


def check(op: str, arrays: Sequence[np.ndarray], attrs: dict, expected: Any,
          symbolic: bool = False) -> None:
    """Run op through the reference runtime; compare with NumPy's result(s) exactly."""
    graph = build(op, arrays, attrs, symbolic)
    outputs, _ = run_graph(graph, {f"x{i}": a for i, a in enumerate(arrays)})
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    assert len(outputs) == len(expected)
    for k, want in enumerate(expected):
        got = outputs[f"y{k}"]
        assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
        np.testing.assert_array_equal(got, want)


def check_vjp(op: str, arrays: Sequence[np.ndarray], attrs: dict, fn: Callable,
              symbolic: bool = False, weighted: Sequence[int] | None = None) -> None:
    """kiln.ir.grad of sum_k <y_k, w_k> against J^T w from NumPy, for ops affine in each
    operand; `weighted` limits the loss to some outputs (the others get no cotangent)."""
    b = GraphBuilder("vjp")
    xs = [b.input(f"x{i}", input_type(a, symbolic)) for i, a in enumerate(arrays)]
    result = b.op(op, *xs, **attrs)
    ys = result if isinstance(result, tuple) else (result,)
    outs = fn(*arrays)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    weighted = range(len(ys)) if weighted is None else weighted
    gen = np.random.default_rng(0)
    weights, loss = {}, None
    for k in weighted:
        weights[f"w{k}"] = gen.standard_normal(outs[k].shape)
        w = b.input(f"w{k}", ys[k].type)
        term = b.sum(b.mul(ys[k], w))
        loss = term if loss is None else b.add(loss, term)
    if loss is None:
        return
    b.output(loss, "loss")
    graph = grad(b.build(), "loss", [x.name for x in xs])
    got, _ = run_graph(graph, {**{f"x{i}": a for i, a in enumerate(arrays)}, **weights})
    zeros = [np.zeros_like(a) for a in arrays]
    base = fn(*zeros)
    base = base if isinstance(base, (tuple, list)) else (base,)
    for i, a in enumerate(arrays):
        want = np.zeros_like(a)
        for index in np.ndindex(a.shape):
            basis = list(zeros)
            basis[i] = np.zeros_like(a)
            basis[i][index] = 1.0
            ys_e = fn(*basis)
            ys_e = ys_e if isinstance(ys_e, (tuple, list)) else (ys_e,)
            want[index] = sum(np.sum(weights[f"w{k}"] * (ys_e[k] - base[k])) for k in weighted)
        np.testing.assert_allclose(got[f"grad.x{i}"], want, rtol=1e-12, atol=1e-12)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0,
           max_side: int = 4) -> st.SearchStrategy:
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims)


# -- reshape, broadcast_to, expand_dims, size --------------------------------------------------
@st.composite
def reshape_cases(draw: Callable) -> tuple:
    factors = draw(st.lists(st.integers(1, 4), max_size=5))

    def grouping() -> list[int]:
        cuts = sorted(draw(st.sets(st.integers(1, max(len(factors) - 1, 1)))))
        bounds = [0, *(c for c in cuts if c < len(factors)), len(factors)]
        return [int(np.prod(factors[a:b])) for a, b in zip(bounds, bounds[1:], strict=False)
                if b > a]

    symbolic = draw(st.booleans())
    in_shape, target = grouping(), grouping()
    if symbolic:
        in_shape, target = [draw(st.integers(1, 3)), *in_shape], ["N", *target]
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return in_shape, target, symbolic


@SETTINGS
@given(st.data(), reshape_cases())
def test_reshape(data: st.DataObject, case: tuple) -> None:
    in_shape, target, symbolic = case
    x = make_array(data.draw, in_shape, data.draw(st.sampled_from(DTYPES)))
    resolved = [x.shape[0] if d == "N" else d for d in target]
    check("reshape", [x], {"shape": target}, np.reshape(x, resolved), symbolic)


@SETTINGS
@given(st.data(), shapes(0, 4, 1, 3))
def test_broadcast_to(data: st.DataObject, target: list) -> None:
    symbolic = bool(target) and data.draw(st.booleans())
    keep = 0 if symbolic else data.draw(st.integers(0, len(target)))
    in_shape = [d if (symbolic and i == 0) or data.draw(st.booleans()) else 1
                for i, d in enumerate(target[keep:])]
    x = make_array(data.draw, in_shape)
    shape = ["N", *target[1:]] if symbolic else target
    check("broadcast_to", [x], {"shape": shape}, np.broadcast_to(x, target), symbolic)
    check_vjp("broadcast_to", [x], {"shape": shape}, lambda a: np.broadcast_to(a, target),
              symbolic)


@SETTINGS
@given(st.data(), shapes(0, 3, 1, 3))
def test_expand_dims(data: st.DataObject, shape: list) -> None:
    symbolic = bool(shape) and data.draw(st.booleans())
    count = data.draw(st.integers(1, 2))
    axes = data.draw(st.lists(st.integers(-len(shape) - count, len(shape) + count - 1),
                              min_size=count, max_size=count,
                              unique_by=lambda a: a % (len(shape) + count)))
    x = make_array(data.draw, shape, data.draw(st.sampled_from(DTYPES)))
    check("expand_dims", [x], {"axes": axes}, np.expand_dims(x, tuple(axes)), symbolic)


@SETTINGS
@given(st.data(), shapes(1, 3, 0, 3))
def test_size(data: st.DataObject, shape: list) -> None:
    axes = data.draw(st.none() | st.sets(st.integers(0, len(shape) - 1)).map(sorted))
    x = make_array(data.draw, shape)
    count = x.size if axes is None else int(np.prod([shape[a] for a in axes]))
    check("size", [x], {"axes": axes, "dtype": "int64"}, np.asarray(count, np.int64),
          data.draw(st.booleans()))


# -- transpose, squeeze ------------------------------------------------------------------------
@SETTINGS
@given(st.data(), shapes(0, 4, 0, 3))
def test_transpose(data: st.DataObject, shape: list) -> None:
    perm = data.draw(st.none() | st.permutations(range(len(shape))))
    x = make_array(data.draw, shape, data.draw(st.sampled_from(DTYPES)))
    symbolic = bool(shape) and data.draw(st.booleans())
    check("transpose", [x], {"perm": perm}, np.transpose(x, perm), symbolic)
    if x.dtype == np.float64 and x.size <= 30:
        check_vjp("transpose", [x], {"perm": perm}, lambda a: np.transpose(a, perm), symbolic)


@SETTINGS
@given(st.data(), shapes(1, 4, 1, 3))
def test_squeeze(data: st.DataObject, shape: list) -> None:
    symbolic = data.draw(st.booleans())
    ones = [i for i, d in enumerate(shape) if d == 1 and not (symbolic and i == 0)]
    axes = data.draw(st.none() | st.sets(st.sampled_from(ones)).map(sorted) if ones
                     else st.none())
    x = make_array(data.draw, shape)
    squeezed = tuple(ones if axes is None else axes)
    check("squeeze", [x], {"axes": axes}, np.squeeze(x, squeezed), symbolic)
    check_vjp("squeeze", [x], {"axes": axes}, lambda a: np.squeeze(a, squeezed), symbolic)


# -- concat, split -----------------------------------------------------------------------------
@SETTINGS
@given(st.data(), shapes(1, 3, 1, 3), st.integers(1, 3))
def test_concat(data: st.DataObject, base: list, count: int) -> None:
    axis = data.draw(st.integers(-len(base), len(base) - 1))
    symbolic = data.draw(st.booleans()) and (axis % len(base) != 0 or count == 1)
    dtype = data.draw(st.sampled_from(DTYPES))
    xs = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 3))
        xs.append(make_array(data.draw, shape, dtype))
    check("concat", xs, {"axis": axis}, np.concatenate(xs, axis=axis), symbolic)
    if dtype == "float64":
        check_vjp("concat", xs, {"axis": axis}, lambda *a: np.concatenate(a, axis=axis),
                  symbolic)


@st.composite
def partitions(draw: Callable, total: int) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=0, max_size=3)))
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


@SETTINGS
@given(st.data(), shapes(1, 3, 0, 4))
def test_split(data: st.DataObject, shape: list) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    symbolic = data.draw(st.booleans()) and axis % len(shape) != 0
    sizes = data.draw(partitions(shape[axis]))
    x = make_array(data.draw, shape)

    def split(a: np.ndarray) -> list[np.ndarray]:
        return np.split(a, np.cumsum(sizes)[:-1].astype(int), axis=axis)

    check("split", [x], {"axis": axis, "sizes": sizes}, split(x), symbolic)
    # Only some pieces in the loss: the VJP fills the others' cotangents with zeros.
    weighted = data.draw(st.sets(st.integers(0, len(sizes) - 1)))
    check_vjp("split", [x], {"axis": axis, "sizes": sizes}, split, symbolic, sorted(weighted))


# -- slice, pad, tile --------------------------------------------------------------------------
bounds = st.none() | st.integers(-7, 7)


@SETTINGS
@given(st.data(), shapes(1, 3, 0, 6))
def test_slice(data: st.DataObject, shape: list) -> None:
    rank = len(shape)
    begin = data.draw(st.lists(bounds, min_size=rank, max_size=rank))
    end = data.draw(st.lists(bounds, min_size=rank, max_size=rank))
    strides = data.draw(st.none() | st.lists(st.sampled_from([-3, -2, -1, 1, 2, 3]),
                                             min_size=rank, max_size=rank))
    symbolic = data.draw(st.booleans())
    if symbolic:
        begin[0], end[0] = data.draw(st.sampled_from([None, 0])), None
        if strides is not None:
            strides[0] = 1
    x = make_array(data.draw, shape)
    steps = strides or [None] * rank

    def take(a: np.ndarray) -> np.ndarray:
        return a[tuple(slice(*s) for s in zip(begin, end, steps, strict=True))]

    attrs = {"begin": begin, "end": end, "strides": strides}
    check("slice", [x], attrs, take(x), symbolic)
    check_vjp("slice", [x], attrs, take, symbolic)


@SETTINGS
@given(st.data(), shapes(0, 3, 0, 3))
def test_pad(data: st.DataObject, shape: list) -> None:
    pads = [data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in shape]
    symbolic = bool(shape) and data.draw(st.booleans())
    if symbolic:
        pads[0] = (0, 0)
    dtype = data.draw(st.sampled_from(DTYPES))
    value = {"bool": st.booleans(), "int64": st.integers(-5, 5)}.get(
        dtype, st.floats(-3, 3) | st.sampled_from([-np.inf, np.inf]))
    value = data.draw(value)
    x = make_array(data.draw, shape, dtype)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [tuple(p) for p in pads], constant_values=value) if shape else a

    check("pad", [x], {"pads": pads, "value": value}, pad(x), symbolic)
    if dtype == "float64" and np.isfinite(value):
        check_vjp("pad", [x], {"pads": pads, "value": value}, pad, symbolic)


@SETTINGS
@given(st.data(), shapes(0, 3, 0, 3))
def test_tile(data: st.DataObject, shape: list) -> None:
    reps = data.draw(st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape)))
    symbolic = bool(shape) and data.draw(st.booleans())
    if symbolic:
        reps[0] = 1
    dtype = data.draw(st.sampled_from(DTYPES))
    x = make_array(data.draw, shape, dtype)
    check("tile", [x], {"reps": reps}, np.tile(x, reps) if shape else x, symbolic)
    if dtype == "float64":
        check_vjp("tile", [x], {"reps": reps}, lambda a: np.tile(a, reps) if shape else a,
                  symbolic)


def test_slice_keeps_the_symbol_of_a_whole_axis() -> None:
    b = GraphBuilder("g")
    x = b.input("x", TensorType(("N", 5), "float32"))
    assert b.slice(x, begin=(0, -2), end=(None, None)).type == TensorType(("N", 2), "float32")
    assert b.pad(x, pads=((0, 0), (1, 1))).type == TensorType(("N", 7), "float32")
    assert b.concat(x, x, axis=1).type == TensorType(("N", 10), "float32")
    assert b.concat(x, axis=0).type == x.type


# -- type-rule errors --------------------------------------------------------------------------
def _emit(op: str, types: Sequence[TensorType], **attrs: Any) -> Any:
    b = GraphBuilder("g")
    xs = [b.input(f"x{i}", t) for i, t in enumerate(types)]
    return b.op(op, *xs, **attrs)


f32 = "float32"
ERRORS = [
    ("transpose", [TensorType((2, 3, 4), f32)], {"perm": (0, 0, 1)}, "permutation"),
    ("transpose", [TensorType((2, 3), f32)], {"perm": (1, 0, 2)}, "list of 2 ints"),
    ("squeeze", [TensorType((2, 1), f32)], {"axes": (0,)}, "size 1"),
    ("squeeze", [TensorType((2, 1), f32)], {"axes": (2,)}, "axes"),
    ("concat", [TensorType((2, 3), f32), TensorType((3, 3), f32)], {"axis": 1},
     "one shape except along axis 1"),
    ("concat", [TensorType((2, 3), f32), TensorType((2,), f32)], {"axis": 0}, "one shape"),
    ("concat", [TensorType((2, 3), f32), TensorType((2, 3), "int64")], {}, "one dtype"),
    ("concat", [TensorType(("N", 3), f32), TensorType((2, 3), f32)], {"axis": 0},
     "static sizes along the concat axis"),
    ("concat", [TensorType((2,), f32)], {"axis": 1}, "axis in"),
    ("concat", [], {}, "at least one operand"),
    ("split", [TensorType((2, 5), f32)], {"axis": 1, "sizes": (2, 2)}, "summing to 5"),
    ("split", [TensorType(("N", 5), f32)], {"axis": 0, "sizes": (2, 2)}, "static size"),
    ("slice", [TensorType((4, 5), f32)], {"begin": (0, 0), "end": (None, None),
                                          "strides": (1, 0)}, "non-zero strides"),
    ("slice", [TensorType((4, 5), f32)], {"begin": (0,), "end": (None,)}, "list of 2"),
    ("slice", [TensorType(("N", 5), f32)], {"begin": (1, 0), "end": (None, None)},
     "symbolic axis 0"),
    ("slice", [TensorType(("N", 5), f32)], {"begin": (None, 0), "end": (None, None),
                                            "strides": (-1, 1)}, "full range with stride 1"),
    ("pad", [TensorType((4, 5), f32)], {"pads": ((0, 0), (-1, 2))}, "non-negative"),
    ("pad", [TensorType(("N", 5), f32)], {"pads": ((1, 0), (0, 0))}, "symbolic axis 0"),
    ("pad", [TensorType((4,), "int64")], {"pads": ((1, 0),), "value": 0.5}, "integral"),
    ("tile", [TensorType(("N", 5), f32)], {"reps": (2, 1)}, "rep 1 on symbolic axis 0"),
    ("tile", [TensorType((4, 5), f32)], {"reps": (2,)}, "list of 2 ints"),
    ("reshape", [TensorType((4, 5), f32)], {"shape": (3, 7)}, "sizes differ"),
    ("reshape", [TensorType((4, 5), f32)], {"shape": (-1, -1)}, "at most one -1"),
    ("reshape", [TensorType((4, 5), f32)], {"shape": (3, -1)}, "not divisible"),
    ("reshape", [TensorType(("N", 5), f32)], {"shape": (5, "M")}, "symbol"),
    ("broadcast_to", [TensorType((3, 2), f32)], {"shape": (3, 4)}, "cannot broadcast"),
]


@pytest.mark.parametrize("op, types, attrs, message", ERRORS,
                         ids=[f"{e[0]}-{e[3]}" for e in ERRORS])
def test_type_rule_errors_name_the_op(op: str, types: list, attrs: dict, message: str) -> None:
    with pytest.raises((KilnTypeError, KilnValueError), match=rf"^{op}\b") as info:
        _emit(op, types, **attrs)
    assert message in str(info.value)
