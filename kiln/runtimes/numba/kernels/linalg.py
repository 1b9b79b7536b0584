"""Matrix products through BLAS (np.dot inside njit; needs SciPy at run time)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False)
def k_matmul_2d(a, b, out):
    """out[M, N] = a[M, K] @ b[K, N]. a and b may be C- or F-contiguous (a transposed view
    `x.T` of a C array goes to BLAS as a transpose flag, without a copy)."""
    np.dot(a, b, out)


@numba.njit(cache=True, fastmath=False)
def k_matmul_batched(a, b, out):
    """out[B, M, N] = a[Ba, M, K] @ b[Bb, K, N] per batch entry, where Ba and Bb are each B or
    1 (a batch of 1 broadcasts). The caller flattens leading batch axes into one; a broadcast
    that does not flatten that way goes to k_matmul_batched_indexed."""
    for i in range(out.shape[0]):
        np.dot(a[0 if a.shape[0] == 1 else i], b[0 if b.shape[0] == 1 else i], out[i])


@numba.njit(cache=True, fastmath=False)
def k_matmul_batched_indexed(a, b, out, a_index, b_index):
    """out[i] = a[a_index[i]] @ b[b_index[i]] for i in range(B): any broadcast of the batch
    axes, with a_index and b_index (int64[B]) mapping each output entry to its operands'."""
    for i in range(out.shape[0]):
        np.dot(a[a_index[i]], b[b_index[i]], out[i])
