"""Views of device arrays with chosen shapes and element strides (zero strides broadcast),
for real numba-cuda device arrays and the simulator's fake ones alike, so kernels read
transposed and broadcast operands in place instead of copying them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def is_simulated(array: Any) -> bool:
    """Whether `array` is a CUDA-simulator array (it wraps a NumPy array as `_ary`)."""
    return hasattr(array, "_ary") and not hasattr(array, "gpu_data")


def element_strides(array: Any) -> tuple[int, ...]:
    """The array's strides in elements (device arrays keep them in bytes)."""
    itemsize = np.dtype(array.dtype).itemsize
    return tuple(int(s) // itemsize for s in array.strides)


def view(array: Any, shape: Sequence[int], strides: Sequence[int]) -> Any:
    """A view of `array`'s memory from its first element, with `shape` and element
    `strides`. The caller keeps every index inside the memory `array` spans."""
    shape = tuple(int(s) for s in shape)
    itemsize = np.dtype(array.dtype).itemsize
    byte_strides = tuple(int(s) * itemsize for s in strides)
    if is_simulated(array):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        base = array._ary
        return FakeCUDAArray(np.lib.stride_tricks.as_strided(base, shape, byte_strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    if math.prod(shape) == 0:
        return DeviceNDArray(shape, byte_strides, array.dtype, stream=array.stream)
    return DeviceNDArray(shape, byte_strides, array.dtype, stream=array.stream,
                         gpu_data=array.gpu_data)


def broadcast_strides(shape: Sequence[int], target: Sequence[int],
                      strides: Sequence[int]) -> tuple[int, ...]:
    """Element strides that read an array of `shape` (and `strides`) broadcast to `target`
    (NumPy rules: leading axes added, axes of size 1 repeated): 0 on broadcast axes."""
    lead = len(target) - len(shape)
    out = [0] * lead
    for d, (size, stride) in enumerate(zip(shape, strides, strict=True)):
        out.append(0 if size == 1 and target[lead + d] != 1 else int(stride))
    return tuple(out)


def broadcast_view(array: Any, target: Sequence[int]) -> Any:
    """`array` read as if broadcast to `target`, no copy."""
    return view(array, target, broadcast_strides(array.shape, target, element_strides(array)))


def merge_strides(shape: Sequence[int], strides: Sequence[int]) -> int | None:
    """The one stride that walks axes `shape` (strides `strides`) in row-major order as a
    single flat axis, or None when no single stride does (0 when every axis broadcasts)."""
    stride = None
    for d in range(len(shape) - 1, -1, -1):
        if shape[d] == 1:
            continue
        if stride is None:
            stride, extent = strides[d], strides[d] * shape[d]
        elif strides[d] != extent:
            return None
        else:
            extent = strides[d] * shape[d]
    return 0 if stride is None else stride


def flat(array: Any) -> Any:
    """A 1-D view of a C-contiguous array (its size elements)."""
    return array.reshape(math.prod(array.shape))
