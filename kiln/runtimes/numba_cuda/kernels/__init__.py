"""Hand-written CUDA kernels of the numba-cuda backend, one module per family: gemm (tiled
GEMM with fused epilogue), conv (im2col, col2im), pool, softmax, indexing, random, and
layout (strided copies). The launchers in kiln/runtimes/numba_cuda/ops/ call them.
"""

# Under the CUDA simulator, intrinsics fixes a race in its shared memory that the tiled GEMM
# and the softmax trees would otherwise hit now and then: any use of these kernels gets it.
from kiln.runtimes.numba_cuda import intrinsics  # noqa: F401
