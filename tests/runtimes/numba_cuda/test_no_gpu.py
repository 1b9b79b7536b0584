"""Asking for numba-cuda where it cannot run is a clear error, never a silent fallback to the
CPU: no GPU (and no simulator), or no numba-cuda package at all; and benchmarks/gpu.sh, run
without a GPU, says so and runs nothing (exit status 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnError, TensorType
from kiln.runtimes import AVAILABLE, check_backend, create_executable
from kiln.runtimes.numba_cuda import NO_GPU, NumbaCudaExecutable, require_cuda


def _graph():  # noqa: ANN202
    b = GraphBuilder("g")
    b.output(b.relu(b.input("x", TensorType(("N", 2), "float32"))), "y")
    return b.build()


def test_numba_cuda_is_an_available_backend() -> None:
    assert "numba-cuda" in AVAILABLE
    assert check_backend("numba-cuda") == "numba-cuda"
    pytest.importorskip("numba.cuda")
    from kiln.runtimes.numba_cuda.ops import LAUNCHERS

    assert "fused:gemm" in LAUNCHERS  # fused gemm kernels, besides every op (completeness)


def test_no_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = pytest.importorskip("numba.cuda")
    from kiln.runtimes.numba_cuda import intrinsics

    monkeypatch.setattr(intrinsics, "SIMULATOR", False)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(KilnError) as info:
        create_executable("numba-cuda", {"g": _graph()}, {})
    assert str(info.value) == NO_GPU
    assert "backend='numba'" in NO_GPU and "NUMBA_ENABLE_CUDASIM=1" in NO_GPU
    with pytest.raises(KilnError, match="needs an NVIDIA GPU"):
        NumbaCudaExecutable({"g": _graph()}, {"w": np.zeros(2)})


def test_without_numba_cuda_the_error_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # import numba.cuda now fails
    monkeypatch.delattr(numba, "cuda", raising=False)
    with pytest.raises(KilnError, match=r"needs the numba-cuda package .*pip install "
                                        r"'numba-cuda\[cu13\]'"):
        require_cuda()


def test_the_gpu_script_says_there_is_no_gpu_and_runs_nothing(tmp_path: Path) -> None:
    cuda = pytest.importorskip("numba.cuda")
    if cuda.is_available() or shutil.which("bash") is None:
        pytest.skip("a GPU is here (benchmarks/gpu.sh would run), or no bash")
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(OUT=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), "tests"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no GPU" in done.stdout and "tests/runtimes/numba_cuda on the GPU" not in done.stdout
    assert "no GPU" in (tmp_path / "gpu.log").read_text()
