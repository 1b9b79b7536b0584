"""The benchmark command still runs: a quick MLP run with kiln and the installed peers, the
subprocess worker, and the ratio / target arithmetic on made-up measurements.

No timing is asserted. torch.compile is left out (its first compile alone takes tens of
seconds here); torch, JAX and onnxruntime-on-a-torch-export run where installed and are
skipped with a note where not (CI installs none of them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ})


def test_quick_run_mlp(tmp_path: Path) -> None:
    peers = "kiln-numba,kiln-reference,torch,jax,onnxruntime-export"
    proc = _run("benchmarks.run", "--quick", "--only", "mlp,train,infer", "--peers", peers,
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    train = results["measurements"]["train/mlp"]["peers"]
    for label in ("kiln-numba (train_on_batch)", "kiln-numba (exe.run)",
                  "kiln-reference (train_on_batch)"):
        assert train[label]["n"] > 0 and train[label]["median"] > 0
    for size in (1, 128):
        infer = results["measurements"][f"infer/mlp/b{size}"]["peers"]
        assert "kiln-numba (predict_on_batch)" in infer
        if "onnxruntime (torch export)" in infer:  # kiln's import of the same file beside it
            assert infer["kiln-numba (onnx import)"]["n"] > 0
    # every framework present computed the same predictions and the same first loss
    diffs = results["correctness"]["predict/mlp"]["max_abs_diff"]
    assert ("onnxruntime-export" in diffs) == ("kiln-numba (onnx import)" in diffs), diffs
    assert max(diffs.values()) <= 1e-4, diffs
    rel = results["correctness"]["train/mlp"]["rel_diff"]
    assert max(rel.values()) <= 1e-4, rel
    assert not [n for n in results["notes"] if "differ" in n or "failed" in n], results["notes"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "## train/mlp" in markdown
    # kiln's own profile of the step: its slowest nodes, the GEMM among them
    profiled = results["measurements"]["train/mlp"]["kiln_profile"]
    assert len(profiled["nodes"]) == 5 and profiled["call_seconds"] > 0
    assert any(r["op"] in ("matmul", "fused:gemm") for r in profiled["nodes"])
    assert "Where kiln-numba's step goes" in markdown
    # which OpenBLAS kernels ran, recorded after the run (SciPy's, for the numba kernels)
    blas = results["machine"]["blas"]
    assert set(blas["settings"]) <= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    if importlib.util.find_spec("threadpoolctl"):
        assert any("scipy_openblas" in k and ": " in k for k in blas["kernels"]), blas
    assert "- OpenBLAS: " in markdown and "not recorded" not in markdown


def test_blas_line() -> None:
    line = report._blas_line({"kernels": ["libscipy_openblas 0.3.30: Haswell"],
                              "settings": {"OPENBLAS_CORETYPE": "Haswell"}})
    assert line == "libscipy_openblas 0.3.30: Haswell (OPENBLAS_CORETYPE=Haswell)"
    assert report._blas_line({"kernels": None, "settings": {}}) == (
        "kernels unknown (threadpoolctl not installed) (no OPENBLAS_* setting)")
    assert report._blas_line(None) == "not recorded"


def test_memory_worker() -> None:
    proc = _run("benchmarks.worker", "memory", "kiln-reference", "mlp", "2", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["peak_mb"] >= result["rss_base_mb"] > 0
    assert result["delta_mb"] == result["peak_mb"] - result["rss_base_mb"]


def _stats(median: float) -> dict[str, float]:
    return {"median": median, "min": median, "max": median, "n": 1}


def test_ratios_and_targets() -> None:
    measurements = {
        "train/mlp": {"peers": {"kiln-numba (train_on_batch)": _stats(2.0),
                                "kiln-numba (exe.run)": _stats(1.0),
                                "torch eager": _stats(3.0), "jax jit": _stats(2.0)}},
        "infer/mlp/b1": {"peers": {"kiln-numba (predict_on_batch)": _stats(10.0),
                                   "kiln-numba (exe.run)": _stats(5.0),
                                   "onnxruntime (torch export)": _stats(20.0)}},
        "fit/mlp": {"fit": {"kiln-numba": {
            "ratio": 1.2, "ratio_median_step": 1.2, "epoch_s": _stats(1.2),
            "loop_s": _stats(1.0), "steps": 469,
            "step_exe_run_s": _stats(1.0 / 469), "step_train_on_batch_s": _stats(1.1 / 469)}}},
        "compile/mlp": {"compile": {name: {"compile_s": s, "first_step_s": s + 0.01,
                                           "step_s": 0.01, "import_s": 0.5}
                                    for name, s in (("kiln-numba (cold)", 4.0),
                                                    ("kiln-numba (cached)", 0.6))}},
        "memory/mlp": {"memory": {name: {"delta_mb": d, "peak_mb": d + 100,
                                         "rss_base_mb": 100.0, "steps": 2}
                                  for name, d in (("kiln-numba", 10.0), ("torch", 20.0))}},
    }
    ratios = report.ratios(measurements)
    assert ratios["train/mlp"]["kiln-numba (exe.run)"]["torch eager"] == 3.0
    assert ratios["train/mlp"]["kiln-numba (train_on_batch)"]["jax jit"] == 1.0
    rows = {t["target"]: t for t in report.targets(measurements)}
    torch_row = rows["MLP train step >= 1.6x PyTorch eager"]
    assert (torch_row["api"], torch_row["met"], torch_row["met_exe"]) == (1.5, False, True)
    assert rows["MLP train step >= 1.3x JAX jit"]["met"] is False
    assert rows["MLP predict batch 1 >= 1.2x onnxruntime"]["met"] is True
    assert rows["LSTM train step >= 1.0x PyTorch eager"]["met"] is None  # not measured
    assert rows["fit epoch within 10% of 469 exe.run steps in a loop"]["met"] is False
    assert rows["MLP train step compile, cold, < 5.0 s"]["met"] is True
    assert rows["MLP train step compile, cached, < 0.5 s"]["met"] is False
    assert rows["MLP training peak memory <= PyTorch eager (MB over base)"]["met"] is True
    assert rows["MLP training peak memory <= PyTorch eager (whole process, MB)"]["met"] is True
    text = report.markdown({"measurements": measurements, "ratios": ratios,
                            "targets": list(rows.values())})
    assert ("| MLP train step >= 1.6x PyTorch eager | 1.50 (1.50) | 3.00 (3.00) | 1.60 | **no** "
            "| yes |") in text
    summary = report.summary({"measurements": measurements, "targets": list(rows.values())})
    assert "| train/mlp | 2000.000 | 1000.000 | - | 3000.000 | - | 2000.000 | - |" in summary
