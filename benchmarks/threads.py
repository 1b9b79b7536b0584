"""Thread pinning shared by every framework in the benchmarks, done before numpy loads.

Import this module first (benchmarks.run and benchmarks.worker do): BLAS, OpenMP and Numba
read their thread counts from the environment once, at import. torch, onnxruntime and JAX are
pinned where they are created (see `settings()` for the record written to the results).
"""

from __future__ import annotations

import os

# Two threads for every framework (the machine has 2 cores); never more than the
# cores this process may use, since Numba refuses more threads than cores.
THREADS = max(1, min(int(os.environ.get("KILN_BENCH_THREADS", "2")),
                     len(os.sched_getaffinity(0))))

ENV = {name: str(THREADS) for name in
       ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
os.environ.update(ENV)
# JAX has no thread-count setting for its CPU client: XLA sizes its pool by the cores this
# process may use, which run.py records (on the 2-core machine that is 2).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def settings() -> dict[str, object]:
    """What was set, for the results file."""
    return {
        "threads": THREADS,
        "env": dict(ENV),
        "cores_usable": len(os.sched_getaffinity(0)),
        "torch": f"torch.set_num_threads({THREADS}), set_num_interop_threads(1)",
        "onnxruntime": f"intra_op_num_threads={THREADS}, inter_op_num_threads=1, sequential, "
                       f"ORT_ENABLE_ALL (kiln's onnxruntime backend and the torch export alike)",
        "jax": "XLA CPU default pool (sized by usable cores; no thread setting exists)",
        "numba/OpenBLAS (kiln)": f"NUMBA_NUM_THREADS={THREADS}, OPENBLAS_NUM_THREADS={THREADS}",
    }
