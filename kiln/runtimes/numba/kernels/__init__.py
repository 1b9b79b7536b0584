"""Hand-written Numba kernels for the heavy ops, called by the generated drivers (as `K.k_<op>`).

Calling convention, for every kernel:
- an `@numba.njit(cache=True, fastmath=False)` function `k_<op>(inputs..., outputs...,
  attributes...)`: input arrays, then PREALLOCATED output arrays, which it fills completely
  (no need to zero them), then the op's static attributes as plain ints and floats. It
  returns nothing. Output sizes are read from the output arrays' shapes.
- arrays are C-contiguous (a kernel that reshapes needs it), float32 or float64 (one dtype per
  call), indices int32 or int64; ranks are fixed per kernel, as listed. Outputs must not
  alias inputs.
- C-contiguous means what Numba types as layout 'C': a non-contiguous view does not compile
  where a kernel reshapes. Import this package before running any generated driver: importing
  it picks the threading layer and starts the thread pool (see the end of this file).
- kernels that use threads decide at run time: below about 2**23 inner steps they stay on
  one thread (a launch costs 50-100 us here: parallel.py). Do not call a threaded kernel
  from inside a `prange` loop (nested parallel launches). Results do not depend on the thread count.

The kernels (N batch, H/W image rows/columns, C/O channels in/out, KH/KW kernel size):

    k_matmul_2d(a[M,K], b[K,N], out[M,N])                    BLAS; a, b may be x.T views
    k_matmul_batched(a[Ba,M,K], b[Bb,K,N], out[B,M,N])       Ba, Bb in {B, 1}; 1 broadcasts
    k_matmul_batched_indexed(a, b, out, a_index[B], b_index[B])  out[i] = a[ai[i]] @ b[bi[i]]

    k_conv2d(x[N,H,W,C], w[KH,KW,C,O], out[N,OH,OW,O], stride_h, stride_w, pad_top, pad_left,
             dilation_h, dilation_w)
    k_conv2d_grad_input(dy[N,OH,OW,O], w[KH,KW,C,O], dx[N,H,W,C], <the same six>)
    k_conv2d_grad_filter(x[N,H,W,C], dy[N,OH,OW,O], dw[KH,KW,C,O], <the same six>)
        pad_top/pad_left: the padding before (the caller computes TF's 'same' split; padding
        after follows from the shapes). Defaults: im2col + one BLAS GEMM. The direct-loop
        versions (k_conv2d_direct, k_conv2d_grad_input_direct, k_conv2d_grad_filter_direct)
        take the same arguments and are slower at every shape measured (below).
    k_conv2d_max_pool2d(x, w, out[N,PH,PW,O], <k_conv2d's six>, conv_h, conv_w,
                        <k_max_pool2d's six>)
        max_pool2d(conv2d(x, w)), the convolution's output (conv_h x conv_w per image)
        made a few images at a time and pooled while in cache (a fused kernel of kind conv).

    k_depthwise_conv2d(x[N,H,W,C], w[KH,KW,C,M], out[N,OH,OW,C*M], <k_conv2d's six>)
    k_depthwise_conv2d_grad_input(dy[N,OH,OW,C*M], w[KH,KW,C,M], dx[N,H,W,C], <the six>)
    k_depthwise_conv2d_grad_filter(x[N,H,W,C], dy[N,OH,OW,C*M], dw[KH,KW,C,M], <the six>)
        direct loops (depthwise.py), innermost over the channels.

    k_max_pool2d(x[N,H,W,C], out[N,OH,OW,C], pool_h, pool_w, stride_h, stride_w, pad_top,
                 pad_left)
    k_max_pool2d_grad(x, dy[N,OH,OW,C], dx[N,H,W,C], <the same six>)
    k_max_pool2d_select(x, g[N,H,W,C], out[N,OH,OW,C], <the same six>)
    k_avg_pool2d(x, out, <the same six>)
    k_avg_pool2d_grad(dy[N,OH,OW,C], dx[N,H,W,C], <the same six>)
        Padded cells never count; max ties go to the first maximum in row-major window order.

    k_softmax_lastaxis(x[R,K], out[R,K]), k_log_softmax_lastaxis(x[R,K], out[R,K])

    k_gather(x[A,S,I], indices[M], out[A,M,I])           the axis moved to the middle by
    k_scatter_add(updates[A,M,I], indices[M], out[A,S,I])  reshaping; IndexError outside [0,S)
    k_one_hot(indices[A,I], out[A,D,I])                   any out dtype; outside [0,D) -> 0

    k_affine_transform(x[N,H,W,C], t[N,6], out[N,OH,OW,C], nearest, fill_mode, fill_value)
    k_affine_transform_grad(g[N,OH,OW,C], t[N,6], dx[N,H,W,C], nearest, fill_mode)
        fill_mode: its index in kiln.ir.ops.image.FILL_MODES; direct loops, bit-equal to the
        reference.

    exp32(x), sigmoid32(x), tanh32(x)          float32 scalars, inlined into generated loops
                                               (vectorizable; libm's calls keep loops scalar)

    tick(ticks, i)                             the monotonic clock into ticks[2i:2i+2] (the
                                               timed drivers of profiles; clock.py)

    k_uniform(key, out, low, high, stream)     key: int64 array of one element; out: any rank,
    k_normal(key, out, mean, stddev, stream)   float32 or float64 (bernoulli: bool), filled
    k_bernoulli(key, out, p, stream)           in row-major order; kiln.ir.ops.random's bits

Conv timings, ms, im2col / direct (convnet benchmark, batch 64, float32, 2 threads, workqueue
layer; medians of 40 interleaved runs, the two quietest of several on a shared 2-core machine):
                                forward         grad_input       grad_filter
    conv1 28x28x1 -> 26x26x32   1.5-1.9 / 2.5   1.5 / 28         1.9-2.0 / 2.6
    conv2 13x13x32 -> 11x11x64  3.1-3.4 / 25    2.3-2.5 / 19-24  2.8-3.0 / 10.6-12
At one input channel the columns are built transposed (conv.im2col_t, contiguous runs):
conv1's forward then took 0.6 ms and its filter gradient 0.85 (minima of 60 on the shared
machine, against 0.84 and 1.3 with im2col's rows in the same run), and with its copy
vectorized (unsigned indices, no wraparound check) 0.54 and 0.80 (medians). Otherwise the
columns are built 4 MiB of whole images at a time, each part's GEMM run before the next
(conv.COLUMN_PART_BYTES): conv2 then took 2.0 / 1.8-1.9 / 2.3 ms alone, and the convnet's
train step 0.57 ms less (alternating calls in one process). Max pooling over 2x2 tiling
windows has its own loops: 0.57 ms less again. Below 16 channels a window row inside the
image is one run copy (conv.RUN_COPY_MAX_C), and col2im adds runs back at any C: the
augmented convnet's conv1 (32x64x64x3 -> 16, 3x3) went 3.4 -> 1.7 ms forward, 4.7 -> 3.2
filter gradient, 3.4 -> 2.5 input gradient, the MNIST convnet's conv1 input gradient 0.93 ->
0.46 (medians of 40 interleaved calls in one process; OpenBLAS's Haswell kernels).
Cold compile, per dtype: conv2d 2.0-2.5 s, grad_input 1.6 s, grad_filter 0.4 s, each pool op
0.4-1.0 s, softmax 0.7-1.0 s, gather 0.7 s, scatter_add 1.4 s, draws 0.4-1.1 s (a parallel=True
kernel costs about 1.5 s more than a serial one, so kernels thread only where it paid). Every
kernel in both dtypes loads from the cache in about 0.5 s.
"""

import os

import numba
from numba.np.ufunc.parallel import _launch_threads

from kiln.runtimes.numba.kernels.clock import tick
from kiln.runtimes.numba.kernels.conv import (
    k_conv2d,
    k_conv2d_direct,
    k_conv2d_grad_filter,
    k_conv2d_grad_filter_direct,
    k_conv2d_grad_filter_im2col,
    k_conv2d_grad_input,
    k_conv2d_grad_input_direct,
    k_conv2d_grad_input_im2col,
    k_conv2d_im2col,
    k_conv2d_max_pool2d,
)
from kiln.runtimes.numba.kernels.depthwise import (
    k_depthwise_conv2d,
    k_depthwise_conv2d_grad_filter,
    k_depthwise_conv2d_grad_input,
)
from kiln.runtimes.numba.kernels.fastmath32 import exp32, sigmoid32, tanh32
from kiln.runtimes.numba.kernels.image import k_affine_transform, k_affine_transform_grad
from kiln.runtimes.numba.kernels.indexing import k_gather, k_one_hot, k_scatter_add
from kiln.runtimes.numba.kernels.linalg import (
    k_matmul_2d,
    k_matmul_batched,
    k_matmul_batched_indexed,
)
from kiln.runtimes.numba.kernels.pool import (
    k_avg_pool2d,
    k_avg_pool2d_grad,
    k_max_pool2d,
    k_max_pool2d_grad,
    k_max_pool2d_select,
)
from kiln.runtimes.numba.kernels.random import k_bernoulli, k_normal, k_uniform
from kiln.runtimes.numba.kernels.softmax import k_log_softmax_lastaxis, k_softmax_lastaxis

# The workqueue threading layer, unless the user chose one: with OpenMP's (the default here)
# the threads that spin after a parallel loop fight OpenBLAS's threads for the cores: a GEMM
# right after a small parallel loop took 4.7 ms instead of 0.55 (median), and the convolutions
# (threaded im2col next to a GEMM) ran 2-4x slower on 2 cores. workqueue cannot nest parallel
# launches (it aborts): never call a threaded kernel inside a prange loop.
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

# A cached function that calls a threaded kernel does not start Numba's thread pool when it is
# loaded from the cache (numba issue #8578, open in 0.68): its first parallel launch then
# segfaults. Starting the pool here, before any kernel or driver runs, avoids that; the
# generated modules import this package first.
_launch_threads()

__all__ = [
    "exp32",
    "k_affine_transform",
    "k_affine_transform_grad",
    "k_avg_pool2d",
    "k_avg_pool2d_grad",
    "k_bernoulli",
    "k_conv2d",
    "k_conv2d_direct",
    "k_conv2d_grad_filter",
    "k_conv2d_grad_filter_direct",
    "k_conv2d_grad_filter_im2col",
    "k_conv2d_grad_input",
    "k_conv2d_grad_input_direct",
    "k_conv2d_grad_input_im2col",
    "k_conv2d_im2col",
    "k_conv2d_max_pool2d",
    "k_depthwise_conv2d",
    "k_depthwise_conv2d_grad_filter",
    "k_depthwise_conv2d_grad_input",
    "k_gather",
    "k_log_softmax_lastaxis",
    "k_matmul_2d",
    "k_matmul_batched",
    "k_matmul_batched_indexed",
    "k_max_pool2d",
    "k_max_pool2d_grad",
    "k_max_pool2d_select",
    "k_normal",
    "k_one_hot",
    "k_scatter_add",
    "k_softmax_lastaxis",
    "k_uniform",
    "sigmoid32",
    "tanh32",
    "tick",
]
