"""When a kernel uses threads: the work sizes below which it stays on one thread."""

# A parallel launch on the workqueue layer (kernels/__init__.py picks it) costs 50-100 us
# here: the pool's threads sleep between launches and waking them dominates (an empty prange
# over two items: 47 us minimum, 89 us median; OpenMP's spinning threads launch in 2 us but
# fight OpenBLAS for the cores). Measured per kernel on the 2-core machines, threads lost at
# the benchmark sizes and won only on much larger ones: im2col of 2.2M values 0.31 ms on one
# thread, 0.49-0.75 on two; 8.9M break even (2.1-2.5 vs 1.6-2.5); 35.7M 8.6-9.5 vs 6.6-6.8.
# So a kernel that moves memory (or does a few vectorized operations per element: random
# draws, 0.3 ns each) threads from about 8M elements up. One whose steps cost nanoseconds
# each (softmax's scalar exp, 4.7 ns an element; a direct convolution's multiply-adds) pays
# from about 64K: softmax of 256K values took 1.2 ms on one thread, 0.7 on two. Kernels
# branch on these at run time, so a small call never starts the pool. Numba freezes them into
# each kernel's cached code and checks only the kernel's own file: clear the kernels'
# __pycache__ after changing them.
PARALLEL_MIN_WORK = 1 << 23  # elements moved
PARALLEL_MIN_COMPUTE = 1 << 16  # scalar steps of a few ns
