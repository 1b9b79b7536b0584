"""softmax and log_softmax over the last axis of a 2-D (rows, classes) view; the caller
reshapes (a softmax over another axis is first transposed there). Each row is shifted by its
max so exp cannot overflow; sums accumulate in float64.

Each row is passes that LLVM vectorizes: the shifted exps into the output (float32 through
exp32, within 2 ulp), their sum (reassociated), the division. Done as one scalar loop with
libm's exp, a (8192, 128) float32 softmax took 2.2-3.1 ms on the two cores; as passes, 1.2-1.4.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from kiln.runtimes.numba.kernels.fastmath32 import exp32
from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_COMPUTE


@numba.njit(cache=True, fastmath=False)
def _row_max(x, r):
    # np.max: a NaN anywhere gives NaN, and the NaN then spreads over the whole row.
    m = x[r, 0]
    for k in range(1, x.shape[1]):
        v = x[r, k]
        if v > m or v != v:
            m = v
            if v != v:
                break
    return m


def _exp(x):  # noqa: ANN001, ANN202
    return np.exp(x)


@overload(_exp, inline="always")
def _exp_by_dtype(x):  # noqa: ANN001, ANN202
    """float32: the library's exp32 (vectorizes; the generated loops use it too); else
    NumPy's exp."""
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: np.exp(x)


@numba.njit(cache=True, fastmath={"reassoc"})
def _row_sum(out, r):
    """The row's sum in float64, reassociated so that it vectorizes (the order of a sum of
    positive terms moves its value by a few ulp at most)."""
    total = 0.0
    for k in range(out.shape[1]):
        total += out[r, k]
    return total


@numba.njit(cache=True, fastmath=False)
def _exp_shifted_row(x, out, r, m):
    for k in range(x.shape[1]):
        out[r, k] = _exp(x[r, k] - m)


@numba.njit(cache=True, fastmath=False)
def _softmax_row(x, out, r):
    # Three vectorizable passes: the exps into out, their sum, the division. A NaN anywhere
    # makes its exp and so the sum NaN, and then the whole row.
    _exp_shifted_row(x, out, r, _row_max(x, r))
    s = out.dtype.type(_row_sum(out, r))
    for k in range(x.shape[1]):
        out[r, k] /= s


@numba.njit(cache=True, fastmath=False)
def _log_softmax_row(x, out, r):
    m = _row_max(x, r)
    _exp_shifted_row(x, out, r, m)  # out holds the exps until the last pass
    lse = out.dtype.type(np.log(_row_sum(out, r)))
    for k in range(x.shape[1]):
        out[r, k] = (x[r, k] - m) - lse


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_softmax_lastaxis(x, out):
    """out[R, K] = exp(x - max) / sum(exp(x - max)) per row."""
    if x.shape[1] == 0:
        return
    if x.size < PARALLEL_MIN_COMPUTE:
        for r in range(x.shape[0]):
            _softmax_row(x, out, r)
    else:
        for r in prange(x.shape[0]):
            _softmax_row(x, out, r)


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_log_softmax_lastaxis(x, out):
    """out[R, K] = (x - max) - log(sum(exp(x - max))) per row."""
    if x.shape[1] == 0:
        return
    if x.size < PARALLEL_MIN_COMPUTE:
        for r in range(x.shape[0]):
            _log_softmax_row(x, out, r)
    else:
        for r in prange(x.shape[0]):
            _log_softmax_row(x, out, r)
