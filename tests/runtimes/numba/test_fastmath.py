"""The kernel library's float32 exp, sigmoid and tanh (kiln.runtimes.numba.kernels.fastmath32)
against float64 NumPy, and the generated code's use of them.

They replace libm calls in generated float32 loops, so they must be as accurate as NumPy's
own float32 versions: within 2.5e-7 relative of the float64 result wherever that result is
a normal float32, with NumPy's answers at nan, the infinities, zero and the overflow and
underflow edges (exp flushes below about -87.3, where NumPy gives subnormals).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from kiln.ir import GraphBuilder, TensorType
from kiln.runtimes.numba import NumbaExecutable
from kiln.runtimes.numba.kernels import exp32, sigmoid32, tanh32

FUNCTIONS = {
    "exp": (exp32, np.exp),
    "sigmoid": (sigmoid32, lambda x: 1.0 / (1.0 + np.exp(-x))),
    "tanh": (tanh32, np.tanh),
}


@numba.njit(error_model="numpy")
def _apply(x, y, which):  # noqa: ANN001, ANN202
    for i in range(x.size):
        if which == 0:
            y[i] = exp32(x[i])
        elif which == 1:
            y[i] = sigmoid32(x[i])
        else:
            y[i] = tanh32(x[i])


def _run(name: str, x: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    _apply(x, y, list(FUNCTIONS).index(name))
    return y


def _grid() -> np.ndarray:
    """Every region: a dense sweep, the polynomial/exp switch of tanh, tiny magnitudes."""
    tiny = np.logspace(-30, 1, 4001)
    return np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1, 1, 20_001),
                           tiny, -tiny]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_accuracy_against_float64(name: str) -> None:
    x = _grid()
    got = _run(name, x).astype(np.float64)
    with np.errstate(over="ignore"):
        expected = FUNCTIONS[name][1](x.astype(np.float64))
    normal = (np.abs(expected) > np.finfo(np.float32).tiny) & \
        (np.abs(expected) < np.finfo(np.float32).max)
    relative = np.abs(got[normal] - expected[normal]) / np.abs(expected[normal])
    assert relative.max() < 2.5e-7, f"{name}: worst at x={x[normal][relative.argmax()]}"
    # Outside the normal range: the correctly rounded float32 (0 or inf), or a flush to 0.
    rest = ~normal & np.isfinite(x)
    with np.errstate(over="ignore"):
        rounded = expected[rest].astype(np.float32)
    flushed = (got[rest] == 0) & (np.abs(rounded) < np.finfo(np.float32).tiny)
    assert np.all((got[rest] == rounded) | flushed)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_special_values(name: str) -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72, 89.0, -87.4, -104.0], np.float32)
    got = _run(name, x)
    with np.errstate(over="ignore"):
        expected = FUNCTIONS[name][1](x.astype(np.float64)).astype(np.float32)
    expected[np.abs(expected) < np.finfo(np.float32).tiny] = 0.0  # exp's flush
    np.testing.assert_array_equal(got, expected)


def test_float32_loops_call_the_library_and_float64_loops_numpy() -> None:
    for dtype, fast in (("float32", True), ("float64", False)):
        b = GraphBuilder("cell")
        x = b.input("x", TensorType(("N", 4), dtype))
        b.output(b.mul(b.sigmoid(x), b.tanh(b.exp(x))), "y")
        exe = NumbaExecutable({"run": b.build()}, {})
        source = exe.source("run")
        assert ("K.sigmoid32(" in source and "K.tanh32(" in source
                and "K.exp32(" in source) == fast
        values = np.linspace(-3, 3, 24, dtype=dtype).reshape(6, 4)
        expected = 1 / (1 + np.exp(-values)) * np.tanh(np.exp(values))
        tol = {"rtol": 2e-6} if fast else {"rtol": 1e-12}
        np.testing.assert_allclose(exe.run("run", {"x": values})["y"], expected, **tol)
