"""How the numba codegen lowers batched matmuls: a batch against one shared matrix (an RNN's
input projection over its time steps) is one GEMM over the stacked rows; other broadcasts
keep the per-entry loop. Differential against the reference runtime."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, TensorType
from kiln.runtimes.numba import NumbaExecutable
from kiln.runtimes.reference import run_graph

TOL = {"float32": {"rtol": 2e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-12}}


def _run_both(graph, feed):  # noqa: ANN001, ANN202
    exe = NumbaExecutable({"run": graph}, {})
    expected, _ = run_graph(graph, feed)
    got = exe.run("run", feed)
    for name, want in expected.items():
        assert got[name].shape == want.shape
        np.testing.assert_allclose(got[name], want, err_msg=name, **TOL[str(want.dtype)])
    return exe.source("run")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_batch_against_one_matrix_is_one_gemm(dtype: str) -> None:
    """x[T, N, K] @ w[K, M], @ v[1, K, M] and @ u.T (a transposed view) with N symbolic:
    each one k_matmul_2d call over T*N rows, no batch loop, at two batch sizes."""
    b = GraphBuilder("stacked")
    x = b.input("x", TensorType((3, "N", 5), dtype))
    w = b.input("w", TensorType((5, 7), dtype))
    v = b.input("v", TensorType((1, 5, 7), dtype))
    u = b.input("u", TensorType((7, 5), dtype))
    b.output(b.matmul(x, w), "xw")
    b.output(b.matmul(x, v), "xv")
    b.output(b.matmul(x, b.transpose(u, perm=(1, 0))), "xut")
    graph = b.build()
    rng = np.random.default_rng(0)
    for n in (4, 1):
        feed = {"x": rng.standard_normal((3, n, 5)).astype(dtype),
                "w": rng.standard_normal((5, 7)).astype(dtype),
                "v": rng.standard_normal((1, 5, 7)).astype(dtype),
                "u": rng.standard_normal((7, 5)).astype(dtype)}
        source = _run_both(graph, feed)
    calls = [line for line in source.splitlines() if "K.k_matmul_2d(" in line]
    assert len(calls) == 3
    assert all(line.startswith("    K.") for line in calls)  # at the driver's top level
    assert all("reshape((d_N * 3, 5))" in line or "reshape((3 * d_N, 5))" in line
               for line in calls), calls


def test_other_broadcasts_keep_the_batch_loop() -> None:
    """Both operands batched, a batch of one on the left, a transposed left operand: per
    entry GEMMs, still matching the reference."""
    b = GraphBuilder("looped")
    x = b.input("x", TensorType((2, 3, 4), "float64"))
    y = b.input("y", TensorType((2, 4, 5), "float64"))
    one = b.input("one", TensorType((1, 3, 4), "float64"))
    m = b.input("m", TensorType((4, 3), "float64"))
    b.output(b.matmul(x, y), "both")
    b.output(b.matmul(one, y), "left_one")
    b.output(b.matmul(b.transpose(m, perm=(1, 0)), y), "left_t")
    graph = b.build()
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((2, 3, 4)), "y": rng.standard_normal((2, 4, 5)),
            "one": rng.standard_normal((1, 3, 4)), "m": rng.standard_normal((4, 3))}
    source = _run_both(graph, feed)
    assert source.count("K.k_matmul_2d(") == 3
    assert all(not line.startswith("    K.k_matmul_2d(") for line in source.splitlines())
