"""Loading and launching generated CUDA kernels: the module cache, flat views of device
arrays, array constants uploaded once, and the fill and copy primitives every launcher uses.

Generated modules go through kiln.runtimes.numba.cache (one file per content hash, imported
from there), and their kernels are `@cuda.jit(cache=True)`, so a second process on a GPU
loads the compiled code instead of compiling it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import cuda

from kiln.compiler.codegen.cuda import CudaKernel, MovementKernel, movement_kernel
from kiln.ir.graph import Node
from kiln.runtimes.numba import cache
from kiln.runtimes.numba_cuda.context import RunContext
from kiln.runtimes.numba_cuda.intrinsics import SIMULATOR

# Threads per block: the simulator runs every thread as a Python thread, so it gets few.
# Blocks per launch (grid-stride loops cover the rest); the simulator runs blocks one after
# another at a high cost each, so it gets two.
MAX_THREADS = 4 if SIMULATOR else 256
MAX_BLOCKS = 2 if SIMULATOR else 4096


def flat(array: Any) -> Any:
    """A 1-D view of a C-contiguous device array."""
    return array if array.ndim == 1 else array.reshape((array.size,))


def row(array: Any, t: int) -> Any:
    """array[t] as a view (a device array's integer index on 1-D arrays copies to the host)."""
    return array[t:t + 1].reshape(tuple(array.shape[1:]))


def grid(n: int, threads: int = MAX_THREADS) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over n elements."""
    threads = min(threads, max(32 if not SIMULATOR else 1, 1 << max(0, (n - 1).bit_length())))
    return max(1, min(MAX_BLOCKS, -(-n // threads))), threads


def kernel_function(source: str, name: str = "kernel") -> Any:
    """The kernel `name` of a generated module (imported from the cache, written if new)."""
    return getattr(cache.load_module(source), name)


def copy(ctx: RunContext, dst: Any, src: Any) -> None:
    """Device-to-device copy of equal-sized C-contiguous arrays, on the context's stream."""
    ctx.copy(flat(dst), flat(src))


@cuda.jit(cache=True)
def _fill(out: Any, value: Any, n: int) -> None:  # pragma: no cover - runs on the device
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = value


@cuda.jit(cache=True)
def _iota(out: Any, n: int) -> None:  # pragma: no cover - runs on the device
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = i


def iota(ctx: RunContext, out: Any) -> None:
    """out[i] = i, for a 1-D out (in out's dtype)."""
    if out.size:
        blocks, threads = grid(out.size)
        ctx.launch(_iota, blocks, threads, out, out.size)


def fill(ctx: RunContext, out: Any, value: float | int | bool) -> None:
    """Set every element of `out` to `value` (in out's dtype)."""
    if not out.size:
        return
    blocks, threads = grid(out.size)
    scalar = np.dtype(out.dtype).type(value)
    ctx.launch(_fill, blocks, threads, flat(out), scalar, out.size)


def upload(ctx: RunContext, key: Any, array: np.ndarray) -> Any:
    """A device copy of a constant host array, made once per executable and key."""
    if key not in ctx.memo:
        ctx.memo[key] = cuda.to_device(np.ascontiguousarray(array), stream=ctx.stream)
    return ctx.memo[key]


def launch_generated(ctx: RunContext, node: Node, kernel: CudaKernel, inputs: Sequence[Any],
                     outputs: Sequence[Any]) -> None:
    """Launch a generated fused (or single-op) kernel computing `node`."""
    key = ("function", kernel.source)
    if key not in ctx.memo:
        ctx.memo[key] = kernel_function(kernel.source, kernel.name)
    function = ctx.memo[key]
    constants = [flat(upload(ctx, ("constant", kernel.source, k), array))
                 for k, array in enumerate(kernel.constants)]
    blocks, threads = kernel.grid(ctx.dims, MAX_BLOCKS)
    if blocks == 0:
        return
    ctx.launch(function, blocks, threads, *(flat(a) for a in outputs),
               *(flat(a) for a in inputs), *constants, *kernel.scalars(ctx.dims))


def movement(ctx: RunContext, out: Any, x: Any, axes: Sequence[dict[str, int]],
             fill_value: float = 0) -> None:
    """Launch the movement kernel over a space with one dict per axis: extent, stride,
    start, step, and optionally period, limit (see kiln.compiler.codegen.cuda.movement),
    out_stride, offset. Strides count elements."""
    n = 1
    for a in axes:
        n *= a["extent"]
    if n == 0:
        return
    periodic = any("period" in a for a in axes)
    bounded = any("limit" in a for a in axes)
    dtype = str(np.dtype(out.dtype))
    dtype = "bool" if dtype == "bool" else dtype
    key = ("movement", len(axes), dtype, periodic, bounded)
    if key not in ctx.memo:
        k: MovementKernel = movement_kernel(len(axes), dtype, periodic, bounded)
        ctx.memo[key] = (k, kernel_function(k.source, k.name))
    k, function = ctx.memo[key]
    params: list[int] = []
    for a in axes:
        full = {"period": 1 << 62, "limit": 1 << 62, **a}
        params.extend(int(full[p]) for p in k.per_axis())
    blocks, threads = grid(n)
    ctx.launch(function, blocks, threads, flat(out), flat(x), n,
               np.dtype(out.dtype).type(fill_value), *params)


def strides_of(shape: Sequence[int]) -> list[int]:
    """Row-major element strides of a C-contiguous shape."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]
