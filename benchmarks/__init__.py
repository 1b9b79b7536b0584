"""kiln's benchmarks beside PyTorch, torch.compile, JAX and onnxruntime: `python -m benchmarks.run`.

Importing the package pins every framework's threads (benchmarks.threads) before numpy,
Numba or torch load. See benchmarks/README.md for what is measured and the latest table.
"""

from benchmarks import threads as threads  # noqa: F401  (side effect: the environment)
