"""The numba-cuda backend: entry points run on an NVIDIA GPU through numba-cuda, the state
resident on the device (NumbaCudaExecutable). Without a GPU it refuses with a clear error,
unless NUMBA_ENABLE_CUDASIM=1 runs numba's CUDA simulator. numba.cuda is imported only when
an executable is made, so importing kiln never needs the CUDA bindings.
"""

from kiln.runtimes.numba_cuda.executable import NO_GPU, NumbaCudaExecutable, require_cuda

__all__ = ["NO_GPU", "NumbaCudaExecutable", "require_cuda"]
