"""The tests in this folder run kernels: under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
which must be set before numba.cuda is first imported, hence a process of their own: see
../test_simulator.py) or on a real GPU. Anywhere else they are not collected, unless
KILN_CUDA_TESTS=gpu asks for the GPU (benchmarks/gpu.sh does): then each fails, saying so.

The simulator runs each GPU thread as a Python thread, and its block manager polls them
while holding the GIL; a short switch interval lets the threads run between polls.
"""

from __future__ import annotations

import os
import sys

import pytest

WANT_GPU = os.environ.get("KILN_CUDA_TESTS") == "gpu"


def kernels_can_run() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda
    except ImportError:
        return False
    return bool(cuda.is_available())


CAN_RUN = kernels_can_run()
collect_ignore_glob: list[str] = [] if CAN_RUN or WANT_GPU else ["test_*.py"]
if CAN_RUN and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.setswitchinterval(5e-5)


@pytest.fixture(autouse=True)
def _a_gpu_when_asked_for() -> None:
    if not CAN_RUN:
        pytest.fail("KILN_CUDA_TESTS=gpu, but numba.cuda finds no GPU (is_available() is "
                    "False) and NUMBA_ENABLE_CUDASIM is not set")


@pytest.fixture(autouse=True)
def _pinning_zero_bytes_fails_as_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's pinned_array is np.empty, which takes any size; CUDA refuses to pin
    zero bytes (cuMemHostAlloc returns CUDA_ERROR_INVALID_VALUE), which the simulator never
    showed until a real GPU failed the zero-length scans. Under the simulator the tests get
    the GPU's refusal."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return
    import numpy as np
    from numba import cuda

    real = cuda.pinned_array

    def pinned_array(shape, dtype=np.float64, *args, **kwargs):  # noqa: ANN001, ANN202
        count = int(np.prod(shape))
        if count * np.dtype(dtype).itemsize == 0:
            raise RuntimeError("[CUDA_ERROR_INVALID_VALUE] cuMemHostAlloc of 0 bytes "
                               "(as a GPU's driver answers; the simulator would allow it)")
        return real(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(cuda, "pinned_array", pinned_array)


@pytest.fixture(autouse=True)
def _new_device_memory_holds_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU's cuda.device_array is uninitialized memory; the simulator's is np.ndarray, often
    zeros. Under the simulator new device arrays are filled with 0xFF bytes (NaN floats, -1
    integers), so a kernel that reads before writing, or a launcher that forgets to clear an
    accumulator, shows up here rather than only on a GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return
    from numba import cuda

    real = cuda.device_array

    def device_array(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        array = real(*args, **kwargs)
        if array.size:
            array._ary.reshape(-1).view("uint8")[...] = 0xFF
        return array

    monkeypatch.setattr(cuda, "device_array", device_array)
