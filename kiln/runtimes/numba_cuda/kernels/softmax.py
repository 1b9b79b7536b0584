"""softmax and log_softmax for CUDA over the middle axis of an [outer, K, inner] view (the
normalized axes merged into K, the axes before and after into outer and inner): one row
(a, c) per 32 threads, with tree reductions in shared memory for the row's max and sum.

Block (LANES, ROWS): threadIdx.x strides over K, threadIdx.y picks one of ROWS rows; the
grid strides over all outer * inner rows. Max and sum accumulate in float64; a NaN in a
row spreads over the whole row, as np.max does in the references.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from kiln.runtimes.numba_cuda.intrinsics import SIMULATOR

# A warp per row on a GPU; the simulator, which runs each thread as a Python thread, gets
# the same trees over 4 lanes and 2 rows.
LANES, ROWS = (4, 2) if SIMULATOR else (32, 4)


@cuda.jit(device=True)
def _tree(buf, ty, tx, take_max):
    """Reduce buf[ty, :LANES] into buf[ty, 0] (every thread of the block must call it)."""
    step = LANES // 2
    while step > 0:
        cuda.syncthreads()
        if tx < step:
            a, b = buf[ty, tx], buf[ty, tx + step]
            if take_max:
                if b > a or b != b:
                    buf[ty, tx] = b
            else:
                buf[ty, tx] = a + b
        step //= 2
    cuda.syncthreads()


@cuda.jit
def softmax(x, out, log):
    """out = softmax(x) (log == 0) or log_softmax(x) (log == 1) along axis 1."""
    buf = cuda.shared.array((ROWS, LANES), float64)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    size, inner = x.shape[1], x.shape[2]
    rows = x.shape[0] * inner
    # Every thread of a block runs the same number of iterations (syncthreads inside).
    for base in range(cuda.blockIdx.x * ROWS, rows, cuda.gridDim.x * ROWS):
        row = base + ty
        live = row < rows
        a, c = row // inner, row % inner
        m = -math.inf
        if live:
            for k in range(tx, size, LANES):
                v = x[a, k, c]
                if v > m or v != v:
                    m = v
        buf[ty, tx] = m
        _tree(buf, ty, tx, True)
        m = buf[ty, 0]
        cuda.syncthreads()
        total = 0.0
        if live:
            for k in range(tx, size, LANES):
                total += math.exp(x[a, k, c] - m)
        buf[ty, tx] = total
        _tree(buf, ty, tx, False)
        total = buf[ty, 0]
        if live:
            if log:
                lse = math.log(total)
                for k in range(tx, size, LANES):
                    out[a, k, c] = (x[a, k, c] - m) - lse
            else:
                for k in range(tx, size, LANES):
                    out[a, k, c] = math.exp(x[a, k, c] - m) / total
        cuda.syncthreads()


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    return [(f"softmax[{name}]", softmax.py_func,
             f"void({name}[:, :, :], {name}[:, :, ::1], int64)")
            for name in ("float32", "float64")]
