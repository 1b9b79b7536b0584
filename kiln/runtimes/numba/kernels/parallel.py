"""When a kernel uses threads: the work size below which it stays on one thread."""

# A parallel launch costs about 2.6 us; below about this many inner-loop steps (multiply-adds
# or elements), one thread finishes first. Kernels branch on it at run time, so a small call
# (batch-1 inference) never starts the thread pool. Numba freezes it into each kernel's cached
# code and checks only the kernel's own file: clear the kernels' __pycache__ after changing it.
PARALLEL_MIN_WORK = 1 << 15
