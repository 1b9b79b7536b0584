"""The frontend's two-operand einsum (transposes, reshapes and one matmul) against NumPy's,
over random equations: batch, contracted, free and summed labels in any order, known and
unknown (symbolic) sizes, ellipses; and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.frontends.keras.einsum import einsum
from kiln.ir import GraphBuilder, KilnValueError, TensorType
from kiln.runtimes.reference import run_graph


def _run(equation: str, x: np.ndarray, y: np.ndarray, symbolic: tuple = ((), ())) -> tuple:
    """einsum on the reference runtime; the axes in `symbolic` get unknown (symbol) sizes,
    one symbol per label so the IR sees what a model with unknown sizes would."""
    b = GraphBuilder("einsum")
    types = []
    for k, (array, axes) in enumerate(zip((x, y), symbolic)):
        dims = tuple(f"S{label}" if i in axes else d
                     for i, (d, label) in enumerate(zip(array.shape, axes_labels(equation, k))))
        types.append(TensorType(dims, "float64"))
    vx, vy = b.input("x", types[0]), b.input("y", types[1])
    out = einsum(b, equation, vx, vy)
    b.output(out, "out")
    graph = b.build()
    return run_graph(graph, {"x": x, "y": y})[0]["out"], graph


def axes_labels(equation: str, k: int) -> str:
    return equation.split("->")[0].split(",")[k]


@st.composite
def equations(draw: st.DrawFn) -> tuple[str, dict, set]:
    letters = list("abcdefghijkl")
    counts = [draw(st.integers(0, 2)) for _ in range(6)]
    pool = iter(draw(st.permutations(letters)))
    batch, contracted, free_x, free_y, sum_x, sum_y = (
        [next(pool) for _ in range(n)] for n in counts)
    tx = draw(st.permutations(batch + contracted + free_x + sum_x))
    ty = draw(st.permutations(batch + contracted + free_y + sum_y))
    out = draw(st.permutations(batch + free_x + free_y))
    if not tx or not ty:
        tx, ty = tx or ["z"], ty or ["z"]  # a one-axis operand, contracted (or summed)
    sizes = {c: draw(st.integers(1, 3)) for c in "".join(tx + ty)}
    # Unknown sizes on some of the labels that never need merging with another.
    symbolic = set(draw(st.lists(st.sampled_from(sorted(sizes)), max_size=2, unique=True)))
    return f"{''.join(tx)},{''.join(ty)}->{''.join(out)}", sizes, symbolic


@settings(max_examples=150, deadline=None)
@given(equations())
def test_einsum_matches_numpy(case: tuple) -> None:
    equation, sizes, symbolic = case
    tx, ty = (axes_labels(equation, k) for k in (0, 1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=[sizes[c] for c in tx])
    y = rng.normal(size=[sizes[c] for c in ty])
    want = np.einsum(equation, x, y)
    try:
        got, _ = _run(equation, x, y, ({i for i, c in enumerate(tx) if c in symbolic},
                                       {i for i, c in enumerate(ty) if c in symbolic}))
    except KilnValueError as err:
        # Only several unknown contracted axes cannot be merged into one.
        contracted = [c for c in tx if c in ty and c not in equation.split("->")[1]]
        assert "several axes of unknown size" in str(err)
        assert sum(c in symbolic for c in contracted) >= 1 and len(contracted) >= 2
        return
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("equation, xs, ys", [
    ("abc,cde->abde", (2, 5, 4), (4, 3, 2)),  # MultiHeadAttention's projections
    ("abcd,cde->abe", (2, 5, 3, 2), (3, 2, 4)),  # and its output projection
    ("aecd,abcd->acbe", (2, 6, 3, 4), (2, 5, 3, 4)),  # its scores
    ("acbe,aecd->abcd", (2, 3, 5, 6), (2, 6, 3, 4)),  # and their combination
    ("...b,bc->...c", (2, 3, 4), (4, 5)),
    ("ab...,bc->ac...", (2, 4, 3, 2), (4, 5)),
    ("...ij,...jk->...ik", (2, 1, 3, 4), (3, 4, 2)),  # ellipses broadcasting
    ("ab,cd->abcd", (2, 3), (4, 5)),  # an outer product
    ("abc,c->ab", (2, 3, 4), (4,)),
    ("ab,ab->", (3, 4), (3, 4)),
])
def test_einsum_named_equations(equation: str, xs: tuple, ys: tuple) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=xs), rng.normal(size=ys)
    got, graph = _run(equation, x, y)
    np.testing.assert_allclose(got, np.einsum(equation, x, y), rtol=1e-10, atol=1e-12)
    assert [n.op for n in graph.nodes].count("matmul") == 1


def test_projections_are_one_gemm_of_stacked_rows() -> None:
    """With no batch labels, x's free axes stay matmul's leading axes (batch unknown) and
    y is a 2-D matrix: no transpose of x, one GEMM for the backends."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 5, 4)), rng.normal(size=(4, 2, 6))
    got, graph = _run("abc,cde->abde", x, y, ({0}, set()))
    np.testing.assert_allclose(got, np.einsum("abc,cde->abde", x, y), rtol=1e-10)
    (matmul,) = [n for n in graph.nodes if n.op == "matmul"]
    assert matmul.inputs[0].type.rank == 3 and matmul.inputs[1].type.shape == (4, 12)
    assert "transpose" not in [n.op for n in graph.nodes]


@pytest.mark.parametrize("equation, match", [
    ("ab,bc", "of the form"),
    ("ab,bc,cd->ad", "two operands"),
    ("aa,ac->c", "repeated within one term"),
    ("ab,bc->ad", "the output names d"),
    ("abc,cd->ad", "names 3 axes, but its operand has rank 2"),
    ("a.b,bc->ac", "one '...'"),
    ("...b,bc->bc", "must hold '...'"),
])
def test_einsum_errors_name_the_equation(equation: str, match: str) -> None:
    b = GraphBuilder("bad")
    x, y = b.input("x", TensorType((2, 3), "float32")), b.input("y", TensorType((3, 4), "float32"))
    with pytest.raises(KilnValueError, match=match):
        einsum(b, equation, x, y)


def test_einsum_size_mismatch() -> None:
    b = GraphBuilder("bad")
    x, y = b.input("x", TensorType((2, 3), "float32")), b.input("y", TensorType((4, 4), "float32"))
    with pytest.raises(KilnValueError, match="label 'b' has size 3 in one operand and 4"):
        einsum(b, "ab,bc->ac", x, y)
