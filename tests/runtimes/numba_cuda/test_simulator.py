"""Runs the tests of ./simulated (the kernel launchers, every op, the executable, the models'
train steps, the Keras frontend) under numba's CUDA simulator, in one process of their own:
NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, and this process may
have imported it already (the PTX tests do); one process pays numba's import and the
simulator's warm-up once. Where kernels can run here already (a GPU, or this process
started with the simulator on), ./simulated is collected directly instead.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/runtimes/numba_cuda/simulated

runs them by hand; the simulator executes a few thousand GPU threads a second, so they use
tiny shapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtimes.numba_cuda.simulated.conftest import kernels_can_run

ROOT = Path(__file__).resolve().parents[3]
FOLDER = Path(__file__).parent / "simulated"


@pytest.mark.skipif(kernels_can_run(), reason="./simulated runs in this process")
def test_kernel_tests_pass_under_the_cuda_simulator() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--durations=10", str(FOLDER)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
