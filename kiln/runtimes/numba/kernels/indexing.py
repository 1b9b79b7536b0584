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

# Threaded gather and scatter_add split their work into this many spans (a few per thread;
# reading the thread count in a kernel would keep it out of the disk cache).
SPANS = 8


@numba.njit(cache=True, fastmath=False)
def _check_range(indices, size):
    for k in range(indices.shape[0]):
        if indices[k] < 0 or indices[k] >= size:
            raise IndexError("expected indices in [0, size); an index is outside")


@numba.njit(cache=True, fastmath=False)
def _gather_span(x, indices, out, a, i0, i1):
    """out[a, i0:i1] = the rows of x[a] that indices[i0:i1] name."""
    for i in range(i0, i1):
        row = indices[i]
        for c in range(x.shape[2]):
            out[a, i, c] = x[a, row, c]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_gather(x, indices, out):
    """out[a, i, c] = x[a, indices[i], c]: x (outer, size, inner), indices (m,),
    out (outer, m, inner). Threads take spans of the indices."""
    _check_range(indices, x.shape[1])
    m = indices.shape[0]
    if out.size < PARALLEL_MIN_WORK:
        for a in range(out.shape[0]):
            _gather_span(x, indices, out, a, 0, m)
        return
    spans = SPANS
    for t in prange(out.shape[0] * spans):
        a, k = t // spans, t % spans
        _gather_span(x, indices, out, a, k * m // spans, (k + 1) * m // spans)


@numba.njit(cache=True, fastmath=False)
def _scatter_rows(updates, indices, out, a, r0, r1):
    """out[a, r0:r1] = 0, then each update whose index falls in [r0, r1) added to its row,
    in index order."""
    for r in range(r0, r1):
        for c in range(out.shape[2]):
            out[a, r, c] = 0
    for i in range(indices.shape[0]):
        row = indices[i]
        if r0 <= row < r1:
            for c in range(out.shape[2]):
                out[a, row, c] += updates[a, i, c]


@numba.njit(cache=True, fastmath=False, parallel=True)
def k_scatter_add(updates, indices, out):
    """out = 0, then out[a, indices[i], c] += updates[a, i, c] in index order (np.add.at):
    updates (outer, m, inner), indices (m,), out (outer, size, inner). Threads own spans of
    out's rows (each reads every index and adds the updates for its rows), so each element
    still sums in index order (bit-equal to the reference) and no two threads write one row."""
    _check_range(indices, out.shape[1])
    size = out.shape[1]
    if updates.size + out.size < PARALLEL_MIN_WORK:
        for a in range(out.shape[0]):
            _scatter_rows(updates, indices, out, a, 0, size)
        return
    spans = SPANS
    for t in prange(out.shape[0] * spans):
        a, k = t // spans, t % spans
        _scatter_rows(updates, indices, out, a, k * size // spans, (k + 1) * size // spans)


@numba.njit(cache=True, fastmath=False)
def k_one_hot(indices, out):
    """out[a, d, c] = 1 if indices[a, c] == d else 0: indices (outer, inner), out (outer,
    depth, inner) of any dtype. An index outside [0, depth) gives zeros."""
    for a in range(out.shape[0]):
        for d in range(out.shape[1]):
            for c in range(out.shape[2]):
                out[a, d, c] = 1 if indices[a, c] == d else 0
