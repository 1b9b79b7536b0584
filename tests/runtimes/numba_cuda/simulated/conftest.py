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
