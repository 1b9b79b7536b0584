"""The CUDA code generator (numba-cuda): one readable @cuda.jit kernel per fused elementwise
or reduction region, per lone elementwise op or reduction, and per movement-kernel variant.
The numba-cuda runtime (kiln.runtimes.numba_cuda) writes each module to the cache and runs it.
"""

from kiln.compiler.codegen.cuda.fused import (
    MAX_BLOCKS,
    REDUCTIONS,
    CudaKernel,
    elementwise_kernel,
    fused_kernel,
    reduction_kernel,
    single_op_body,
)
from kiln.compiler.codegen.cuda.movement import MovementKernel, movement_kernel

__all__ = ["MAX_BLOCKS", "REDUCTIONS", "CudaKernel", "MovementKernel", "elementwise_kernel",
           "fused_kernel", "movement_kernel", "reduction_kernel", "single_op_body"]
