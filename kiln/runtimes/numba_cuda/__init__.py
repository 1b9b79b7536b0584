"""The numba-cuda backend: entry points run on an NVIDIA GPU through numba-cuda, the state
resident on the device (NumbaCudaExecutable). Without a GPU it refuses with a clear error,
unless NUMBA_ENABLE_CUDASIM=1 runs numba's CUDA simulator. numba.cuda is imported only when
an executable is made, so importing kiln never needs the CUDA bindings.
"""

import numpy as _np

# numba-cuda 0.30 registers an overload for np.row_stack while it compiles its first kernel;
# NumPy 2.5 removed that alias of np.vstack, so without it every launch fails with an
# AttributeError (seen on the GPU machines: numpy 2.5.2, numba-cuda 0.30.4).
if not hasattr(_np, "row_stack"):
    _np.row_stack = _np.vstack

from kiln.runtimes.numba_cuda.executable import NO_GPU, NumbaCudaExecutable, require_cuda

__all__ = ["NO_GPU", "NumbaCudaExecutable", "require_cuda"]
