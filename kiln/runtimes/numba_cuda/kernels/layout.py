"""Layout helpers for the launchers: 1-D grid-stride launches, C-contiguous copies of strided
views (the kernels that reshape need them) and copies into strided views, by one kernel
that walks any rank through shape and stride tuples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import cuda

from kiln.runtimes.numba_cuda.kernels.arrays import element_strides, view

MAX_BLOCKS = 65535 * 8  # grid-stride kernels: more blocks than this only add scheduling


@cuda.jit
def copy_strided(src, dst, shape, src_strides, dst_strides):
    """dst[flat(idx)] = src[flat(idx)] for every index idx of `shape`, src and dst 1-D views
    of the two arrays' memory walked with their element strides."""
    total = 1
    for d in shape:
        total *= d
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        rest, s_off, d_off = t, 0, 0
        for k in range(len(shape) - 1, -1, -1):
            i = rest % shape[k]
            rest //= shape[k]
            s_off += i * src_strides[k]
            d_off += i * dst_strides[k]
        dst[d_off] = src[s_off]


def launch_1d(ctx: Any, kernel: Any, n: int, *args: Any) -> None:
    """ctx.launch(kernel, blocks, threads, *args) with one thread per element of `n` (capped:
    the kernels stride over the rest)."""
    blocks, threads = ctx.grid(n)
    ctx.launch(kernel, min(blocks, MAX_BLOCKS), threads, *args)


def _span(array: Any) -> Any:
    """A 1-D view of every element `array` spans (its first to its last)."""
    strides = element_strides(array)
    if any(s < 0 for s in strides):
        raise ValueError("negative strides are not supported")
    extent = 1 + sum((d - 1) * s for d, s in zip(array.shape, strides, strict=True))
    return view(array, (extent,), (1,))


def copy_into(ctx: Any, src: Any, dst: Any) -> None:
    """dst[...] = src, both any strided views of one shape (src may broadcast: 0 strides)."""
    n = math.prod(dst.shape)
    if n == 0:
        return
    shape = tuple(int(d) for d in dst.shape) or (1,)
    s_strides = element_strides(src) or (0,)
    d_strides = element_strides(dst) or (0,)
    launch_1d(ctx, copy_strided, n, _span(src), _span(dst), shape, s_strides, d_strides)


def scratch(ctx: Any, tag: str, shape: Sequence[int], dtype: str) -> Any:
    """A C-contiguous device array for one node's temporaries (patch matrices, split-K
    partials): the pool's one buffer of `tag` (RunContext.empty), shared by every node
    under that tag and grown to the largest request. A node takes one array per tag."""
    return ctx.empty(shape, dtype, tag=tag)


def is_contiguous(array: Any) -> bool:
    return bool(array.is_c_contiguous()) or math.prod(array.shape) <= 1


def contiguous(ctx: Any, array: Any) -> Any:
    """`array` itself when C-contiguous, else a C-contiguous copy in scratch memory."""
    if is_contiguous(array):
        return array
    copy = ctx.empty(array.shape, np.dtype(array.dtype).name)
    copy_into(ctx, array, copy)
    return copy


def reshaped(ctx: Any, array: Any, shape: Sequence[int]) -> Any:
    """`array` with a new shape (same size), copying first when it is not C-contiguous."""
    shape = tuple(int(s) for s in shape)
    array = contiguous(ctx, array)
    if math.prod(shape) <= 1 or not shape:
        return view(array, shape, (0,) * len(shape))
    return array.reshape(shape)


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for name in ("float32", "float64", "int64", "bool"):
        for rank in (1, 4):
            t = f"UniTuple(int64, {rank})"
            cases.append((f"copy_strided[{name},{rank}]", copy_strided.py_func,
                          f"void({name}[::1], {name}[::1], {t}, {t}, {t})"))
    return cases
