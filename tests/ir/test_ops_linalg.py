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


@pytest.mark.parametrize("shape, product, summed", [
    (("N", 3, 4, 5), ("N", 5, 2), True),  # one GEMM per leading index, then a sum
    ((2, 3, 4, 5), (5, 2), False),  # all static: one GEMM
    (("N", 4, 5), ("N", 5, 2), True),  # a sequence: as before
    (("N", "T", 4, 5), ("N", "T", 5, 2), True),  # a symbolic inner axis: one per index
])
def test_the_gradient_of_a_shared_matrix_folds_the_batch_axes(
        shape: tuple, product: tuple, summed: bool) -> None:
    """x[..., M, K] @ y[K, C] (a Dense layer on images): y's cotangent contracts every batch
    axis in as few GEMMs as the shapes allow, and equals x^T g over all rows."""
    from kiln.ir import grad
    from kiln.runtimes.reference import run_graph

    b = GraphBuilder("dense")
    x, y = b.input("x", f64[shape]), b.input("y", f64[5, 2])
    b.output(b.sum(b.tanh(b.matmul(x, y))), "loss")
    graph = grad(b.build(), "loss", ["y"])
    products = [n.output.type.shape for n in graph.nodes
                if n.op == "matmul" and n.output.type.shape[-2:] == (5, 2)]
    assert products == [product]
    sizes = {"N": 2, "T": 3}
    xv = np.random.default_rng(0).standard_normal([sizes.get(d, d) for d in shape])
    yv = np.random.default_rng(1).standard_normal((5, 2))
    got = run_graph(graph, {"x": xv, "y": yv})[0]["grad.y"]
    cot = 1 - np.tanh(xv @ yv) ** 2
    np.testing.assert_allclose(got, xv.reshape(-1, 5).T @ cot.reshape(-1, 2), rtol=1e-12)
    sums = [n for n in graph.nodes if n.op == "sum" and n.output.type.shape == (5, 2)]
    assert bool(sums) == summed


def test_matmul_gradient_of_a_shared_matrix_against_differences() -> None:
    rng = np.random.default_rng(3)
    check_gradient(Sample("matmul", [rng.standard_normal((2, 3, 2, 4)),
                                     rng.standard_normal((4, 3))]))
