"""The math functions generated CUDA kernels call, whether numba's CUDA simulator is on, and
a fix of the simulator's shared memory for kiln's kernels.

On a GPU they are Python's `math` functions, which Numba's CUDA target lowers to libdevice in
the operand's precision. The simulator runs kernels as Python, where `math.log(0.0)` raises
and `math.exp(1e3)` overflows with an error; NumPy's functions give -inf, inf and nan there
as the GPU does, so the simulator gets those instead.
"""

from __future__ import annotations

import math
import sys
import threading
import traceback
from typing import Any

import numpy as np
from numba import cuda

# The simulator's jit lives in numba.cuda.simulator (stable across numba-cuda versions).
SIMULATOR = cuda.jit.__module__.startswith("numba.cuda.simulator")

if SIMULATOR:
    exp, expm1, log, log1p = np.exp, np.expm1, np.log, np.log1p
    sqrt, tanh, pow = np.sqrt, np.tanh, np.power  # noqa: A001 - the kernels' name for it
    sin, cos, floor, ceil = np.sin, np.cos, np.floor, np.ceil
else:
    exp, expm1, log, log1p = math.exp, math.expm1, math.log, math.log1p
    sqrt, tanh, pow = math.sqrt, math.tanh, math.pow  # noqa: A001
    sin, cos, floor, ceil = math.sin, math.cos, math.floor, math.ceil



def _lock_simulated_shared_memory() -> None:
    """The simulator makes a block's shared array when the first of its threads asks for it,
    by a check-then-set on a dict that threads race on: two threads can each make their own
    array and never see each other's writes, and a reduction loses partial sums. This
    replaces the allocation with the same one under a lock (numba-cuda 0.30's logic: arrays
    keyed by the caller's file and line; size 0 is the dynamic shared memory)."""
    try:
        from numba.cuda.simulator import kernelapi
    except ImportError:
        return
    if not hasattr(kernelapi, "FakeCUDAShared"):
        return
    # The simulator's own modules, so dtypes compare with its classes.
    types, numpy_support = kernelapi.types, kernelapi.numpy_support
    lock = threading.Lock()

    def array(self: Any, shape: Any, dtype: Any, alignment: Any = None) -> np.ndarray:
        if alignment is not None:
            raise RuntimeError("Array alignment is not supported in cudasim")
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        if shape == 0:
            count = self._dynshared_size // dtype.itemsize
            return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]

    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _lock_simulated_shared_memory()

__all__ = ["SIMULATOR", "cos", "exp", "expm1", "floor", "log", "log1p", "pow", "sin", "sqrt",
           "tanh"]
