#!/usr/bin/env bash
# The numba-cuda backend on a real NVIDIA GPU, in one run of under 8 minutes: the card and
# versions, the CUDA tests on the device (every test of tests/runtimes/numba_cuda with the
# tiled GEMM, the kernel and model tests again with cuBLAS), the training-step benchmark
# beside PyTorch CUDA eager and torch.compile (benchmarks/gpu_steps.py), then the book's
# examples end to end on numba-cuda with the time left.
# See docs/cuda.md.
#
# Usage, from the repository root:
#   bash benchmarks/gpu.sh            # on the GPU machine: everything
#   bash benchmarks/gpu.sh tests      # on the GPU machine: versions and tests only
#   bash benchmarks/gpu.sh bench      # on the GPU machine: versions and benchmark only
#   bash benchmarks/gpu.sh wheels     # here, with a network: fetch the wheels the GPU
#                                     # machine lacks into benchmarks/wheels/
# With $OUT set (the device tool sets it), the log and the benchmark's rows (JSON) go there.
# Exit status: 0 all passed; 1 a test or the benchmark failed; 2 no GPU here (nothing ran).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
what="${1:-all}"
PY="${PYTHON:-python}"
WHEELS=benchmarks/wheels
# What kiln's tests need beyond the machine's numba, numba-cuda, CuPy, torch, jax, onnx,
# onnxruntime (numpy and scipy come with those): module -> the wheels that provide it.
NEEDED="pytest:pytest,pluggy,iniconfig"

if [ "$what" = "wheels" ]; then
    mkdir -p "$WHEELS"
    for entry in $NEEDED; do
        for pkg in $(echo "${entry#*:}" | tr , ' '); do
            "$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 \
                --platform manylinux2014_x86_64 -d "$WHEELS" "$pkg" || exit 1
        done
    done
    ls -l "$WHEELS"
    exit 0
fi

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu.log") 2>&1
fi
status=0
start=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - start ))s] $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: not found or no device"
# Install only what is missing (no index is reachable there; never replace what the
# machine has: its numba-cuda matches its driver).
for entry in $NEEDED; do
    module="${entry%%:*}"
    if ! "$PY" -c "import $module" 2>/dev/null; then
        if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
            "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" \
                $(echo "${entry#*:}" | tr , ' ') || echo "could not install $module's wheels"
        else
            echo "$module is missing and $WHEELS/ has no wheels (bash benchmarks/gpu.sh wheels)"
        fi
    fi
done
"$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "scipy", "numba", "numba_cuda", "cupy", "torch", "onnx", "onnxruntime",
             "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except Exception as err:  # noqa: BLE001
        print(f"  {name} MISSING ({type(err).__name__}: {err})")
EOF
if ! "$PY" - <<'EOF'
import sys
try:
    from numba import cuda
except Exception as err:  # noqa: BLE001
    sys.exit(f"numba.cuda cannot be imported: {err}")
if not cuda.is_available():
    sys.exit("no GPU: numba.cuda.is_available() is False")
device = cuda.get_current_device()
print("device:", device.name.decode() if isinstance(device.name, bytes) else device.name,
      "cc", device.compute_capability)
EOF
then
    stamp "no GPU here: nothing ran (the CI path is the simulator: see docs/cuda.md)"
    exit 2
fi

if [ "$what" != "bench" ]; then
    if "$PY" -c "import pytest" 2>/dev/null; then
        # KILN_CUDA_TESTS=gpu: ./simulated runs on the device (and fails if it cannot).
        stamp "tests/runtimes/numba_cuda on the GPU, KILN_CUDA_GEMM=kiln"
        KILN_CUDA_TESTS=gpu KILN_CUDA_GEMM=kiln timeout 180 "$PY" -m pytest -q \
            -p no:cacheprovider --durations=10 tests/runtimes/numba_cuda || status=1
        stamp "kernel and model tests on the GPU, KILN_CUDA_GEMM=cublas"
        KILN_CUDA_TESTS=gpu KILN_CUDA_GEMM=cublas timeout 80 "$PY" -m pytest -q \
            -p no:cacheprovider tests/runtimes/numba_cuda/simulated/test_kernels.py \
            tests/runtimes/numba_cuda/simulated/test_models.py || status=1
    else
        echo "pytest is not installed: tests skipped (bash benchmarks/gpu.sh wheels, here)"
        status=1
    fi
fi

if [ "$what" != "tests" ]; then
    stamp "training steps: kiln numba-cuda vs PyTorch CUDA"
    rows=()
    [ -n "${OUT:-}" ] && rows=(--out "$OUT/gpu_steps.json")
    timeout 170 "$PY" -m benchmarks.gpu_steps --batches 128 1024 --budget 150 "${rows[@]}" \
        || status=1
fi

# The book's examples through the Keras frontend on numba-cuda, with what is left of the
# 8 minutes (they compile every kernel of seven models on first use).
if [ "$what" != "bench" ] && "$PY" -c "import pytest" 2>/dev/null; then
    left=$(( 450 - ($(date +%s) - start) ))
    if [ "$left" -gt 45 ]; then
        stamp "tests/e2e/test_book_examples.py on numba-cuda (${left}s at most)"
        KILN_CUDA_TESTS=gpu timeout "$left" "$PY" -m pytest -q -p no:cacheprovider \
            tests/e2e/test_book_examples.py -k numba-cuda || status=1
    else
        stamp "e2e on numba-cuda skipped: ${left}s left of the 8 minutes"
    fi
fi
stamp "done (status $status)"
exit $status
