"""matmul against an einsum formulation, its type rule on symbolic and broadcast shapes, and
its gradient on random broadcast shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder
from kiln.ir.errors import KilnTypeError
from kiln.ir.types import TensorType, f32, f64, i32
from tests.ir.gradcheck import check_gradient, run_sample
from tests.ir.samples import Sample


@st.composite
def broadcast_operands(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Two matmul operands whose batch shapes broadcast to a drawn full batch shape."""
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))

    def operand_batch() -> tuple:
        rank = draw(st.integers(0, len(batch)))
        kept = batch[len(batch) - rank:]
        return tuple(1 if draw(st.booleans()) else d for d in kept)

    gen = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = gen.standard_normal((*operand_batch(), m, k))
    y = gen.standard_normal((*operand_batch(), k, n))
    return x, y, batch


@settings(max_examples=40, deadline=None)
@given(broadcast_operands())
def test_matmul_matches_einsum_on_broadcast_batches(operands: tuple) -> None:
    x, y, _ = operands
    batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    xb = np.broadcast_to(x, (*batch, *x.shape[-2:]))
    yb = np.broadcast_to(y, (*batch, *y.shape[-2:]))
    expected = np.einsum("...ij,...jk->...ik", xb, yb)
    (result,) = run_sample(Sample("matmul", [x, y]))
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(broadcast_operands())
def test_matmul_gradient_on_broadcast_batches(operands: tuple) -> None:
    x, y, _ = operands
    check_gradient(Sample("matmul", [x, y]))


def _matmul_type(x: TensorType, y: TensorType) -> TensorType:
    b = GraphBuilder()
    return b.matmul(b.input("x", x), b.input("y", y)).type


@pytest.mark.parametrize("x, y, expected", [
    (f32["N", "T", 8], f32[8, 4], f32["N", "T", 4]),
    (f32["N", 3, 4], f32["N", 4, 5], f32["N", 3, 5]),
    (f32[1, 3, 4], f32["N", 4, 5], f32["N", 3, 5]),
    (f32[3, "K"], f32["K", 5], f32[3, 5]),
    (f64[2, 1, 3, 4], f64[5, 4, 2], f64[2, 5, 3, 2]),
])
def test_matmul_type_rule(x: TensorType, y: TensorType, expected: TensorType) -> None:
    assert _matmul_type(x, y) == expected


@pytest.mark.parametrize("x, y, message", [
    (f32[4], f32[4, 5], "rank >= 2"),
    (f32[3, 4], f32[5, 6], "last dimension of x"),
    (f32[3, "K"], f32[4, 5], "last dimension of x"),
    (i32[3, 4], i32[4, 5], "floating-point"),
    (f32[3, 4], f64[4, 5], "one dtype"),
    (f32[2, 3, 4], f32[3, 4, 5], "batch dimensions"),
    (f32["N", 3, 4], f32[2, 4, 5], "batch dimensions"),
])
def test_matmul_type_errors(x: TensorType, y: TensorType, message: str) -> None:
    with pytest.raises(KilnTypeError, match=message) as err:
        _matmul_type(x, y)
    assert str(err.value).startswith("matmul")
    assert "Received" in str(err.value)
