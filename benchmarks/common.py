"""Timing, statistics and machine facts shared by the benchmark modules.

Timings interleave the peers of one measurement in rounds (each peer runs a block of calls in
turn, the order shuffled per round) so that noise from a shared machine spreads over all.
"""

from __future__ import annotations

import gc
import importlib.metadata
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How many samples a measurement takes: `rounds` x `block` timed calls per peer, after
    `warmup` untimed calls (and one untimed call at the start of every block)."""

    warmup: int
    rounds: int
    block: int


QUICK = {"step": Plan(2, 3, 2), "latency": Plan(5, 3, 10), "fit": Plan(0, 1, 1)}
FULL = {"step": Plan(10, 10, 5), "latency": Plan(50, 10, 30), "fit": Plan(1, 3, 1)}


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, min and max in seconds, and the sample count."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples)}


def measure(calls: Mapping[str, Callable[[], object]], plan: Plan,
            seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Time every call of `calls` (peer name -> zero-argument callable) interleaved in rounds.

    Returns (peer -> summary, peer -> error text) where a peer that raised is dropped from
    the timing and its error kept as a note."""
    errors: dict[str, str] = {}
    live = dict(calls)
    for name, fn in list(live.items()):
        try:
            for _ in range(plan.warmup):
                fn()
        except Exception as err:  # a peer failing is a result to report, not a crash
            errors[name] = f"{type(err).__name__}: {err}"[:300]
            del live[name]
    samples: dict[str, list[float]] = {name: [] for name in live}
    order = list(live)
    shuffle = random.Random(seed)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is noise, not the peer's cost
    try:
        for _ in range(plan.rounds):
            shuffle.shuffle(order)
            for name in order:
                fn = live[name]
                fn()  # re-warm caches after the other peers ran
                clock = time.perf_counter
                for _ in range(plan.block):
                    start = clock()
                    fn()
                    samples[name].append(clock() - start)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: summarize(s) for name, s in samples.items()}, errors


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def blas() -> dict[str, object]:
    """The OpenBLAS kernels each loaded OpenBLAS runs (threadpoolctl's report: NumPy's, and
    SciPy's, which kiln's numba kernels call), and the OPENBLAS_* settings that chose them;
    kernels None where threadpoolctl is not installed."""
    import os

    settings = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                if k in os.environ}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"kernels": None, "settings": settings}
    kernels = [f"{lib.get('prefix')} {lib.get('version')}: {lib.get('architecture')}"
               for lib in threadpool_info() if lib.get("internal_api") == "openblas"]
    return {"kernels": kernels, "settings": settings}


def machine() -> dict[str, object]:
    """CPU model, core count, OS, Python and the version of every framework involved."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    packages = ("kiln", "numpy", "scipy", "numba", "onnx", "onnxruntime", "torch", "jax",
                "jaxlib", "onnxscript")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in packages},
        "blas": blas(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
