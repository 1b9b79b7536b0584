"""softmax and log_softmax over the last axis of a 2-D (rows, classes) view; the caller
reshapes (a softmax over another axis is first transposed there). Each row is shifted by its
max so exp cannot overflow; sums accumulate in float64.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

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


@numba.njit(cache=True, fastmath=False)
def _softmax_row(x, out, r):
    m = _row_max(x, r)
    total = 0.0
    for k in range(x.shape[1]):
        e = np.exp(x[r, k] - m)
        out[r, k] = e
        total += e
    s = out.dtype.type(total)
    for k in range(x.shape[1]):
        out[r, k] /= s


@numba.njit(cache=True, fastmath=False)
def _log_softmax_row(x, out, r):
    m = _row_max(x, r)
    total = 0.0
    for k in range(x.shape[1]):
        total += np.exp(x[r, k] - m)
    lse = out.dtype.type(np.log(total))
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
