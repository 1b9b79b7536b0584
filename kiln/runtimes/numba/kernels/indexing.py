"""gather, scatter_add and one_hot along one axis, on 3-D views the caller makes by reshaping
(free for C-contiguous arrays): the axis becomes the middle one, the axes before it flatten
into `outer` and those after it into `inner`; indices flatten to 1-D (m,) for gather and
scatter_add and to 2-D (outer, inner) for one_hot. Indices are int32 or int64.

gather and scatter_add raise IndexError on an index outside [0, size) before writing
anything; one_hot maps such an index to an all-zero row.
"""

from __future__ import annotations

import numba
from numba import prange

from kiln.runtimes.numba.kernels.parallel import PARALLEL_MIN_WORK


@numba.njit(cache=True, fastmath=False)
def _check_range(indices, size):
    for k in range(indices.shape[0]):
        if indices[k] < 0 or indices[k] >= size:
            raise IndexError("expected indices in [0, size); an index is outside")


@numba.njit(cache=True, fastmath=False)
def _gather_rows(x, indices, out, t):
    m, inner = indices.shape[0], x.shape[2]
    a, i = t // m, t % m
    row = indices[i]
    for c in range(inner):
        out[a, i, c] = x[a, row, c]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_gather(x, indices, out):
    """out[a, i, c] = x[a, indices[i], c]: x (outer, size, inner), indices (m,),
    out (outer, m, inner)."""
    _check_range(indices, x.shape[1])
    tasks = out.shape[0] * out.shape[1]
    if out.size < PARALLEL_MIN_WORK:
        for t in range(tasks):
            _gather_rows(x, indices, out, t)
    else:
        for t in prange(tasks):
            _gather_rows(x, indices, out, t)


@numba.njit(cache=True, fastmath=False)
def _scatter_block(updates, indices, out, a, c0, c1):
    for r in range(out.shape[1]):
        for c in range(c0, c1):
            out[a, r, c] = 0
    for i in range(indices.shape[0]):
        row = indices[i]
        for c in range(c0, c1):
            out[a, row, c] += updates[a, i, c]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_scatter_add(updates, indices, out):
    """out = 0, then out[a, indices[i], c] += updates[a, i, c] in index order (np.add.at):
    updates (outer, m, inner), indices (m,), out (outer, size, inner). Threads split outer
    and column blocks of inner, so each element still sums in index order (bit-equal to the
    reference)."""
    _check_range(indices, out.shape[1])
    outer, inner = out.shape[0], out.shape[2]
    if updates.size + out.size < PARALLEL_MIN_WORK:
        for a in range(outer):
            _scatter_block(updates, indices, out, a, 0, inner)
        return
    blocks = min(4, max(1, inner // 16))
    for t in prange(outer * blocks):
        a, k = t // blocks, t % blocks
        _scatter_block(updates, indices, out, a, k * inner // blocks,
                       (k + 1) * inner // blocks)


@numba.njit(cache=True, fastmath=False)
def k_one_hot(indices, out):
    """out[a, d, c] = 1 if indices[a, c] == d else 0: indices (outer, inner), out (outer,
    depth, inner) of any dtype. An index outside [0, depth) gives zeros."""
    for a in range(out.shape[0]):
        for d in range(out.shape[1]):
            for c in range(out.shape[2]):
                out[a, d, c] = 1 if indices[a, c] == d else 0
