"""The numba runtime (CPU): generated @njit drivers, one per entry point, cached on disk.

`NumbaExecutable(graphs, state)` optimizes each entry point, generates its driver
(kiln.compiler.codegen.numba) and imports it from the cache (kiln.runtimes.numba.cache;
`cache.clear()` empties it). The heavy ops' kernels live in kiln.runtimes.numba.kernels.
"""

from kiln.runtimes.numba.executable import NumbaExecutable

__all__ = ["NumbaExecutable"]
