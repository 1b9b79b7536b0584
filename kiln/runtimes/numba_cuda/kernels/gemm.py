"""Tiled shared-memory GEMM for CUDA with a fused epilogue (bias add, activation), one kernel
set per float dtype; operands are strided 3-D views, so transposed and batch-broadcast
operands are read in place.

Kernels of `KERNELS[dtype]` (B batch, M x K times K x N):

    gemm(x[B,M,K], y[B,K,N], bias[B,M,N], prod, pre, out, mode, act, alpha, shift,
         splits, kchunk, a_kfast, b_nfast)
        Block tile BM x BN (64 x 64), BK = 16 deep, 16 x 16 threads each owning a 4 x 4
        register block (rows ty + 16i, columns tx + 16j: conflict-free shared reads,
        coalesced stores; the simulator gets 8 x 8 x 4 tiles and 2 x 2 threads). Grid
        (ceil(M/BM), ceil(N/BN), <= B * splits), blocks striding over batch x split-K
        slices. a_kfast/b_nfast pick the tile load order that is
        coalesced for the operands' layout (1: K resp. N is the faster axis).
        splits == 1: the epilogue runs on each accumulator (see `store`); prod/pre/out are
        [B,M,N]. splits > 1: slice k of batch b covers K-range [k*kchunk, (k+1)*kchunk) and
        its raw partial goes to prod[b*splits + k] (prod is then [B*splits,M,N] scratch);
        `epilogue` sums the partials and runs the epilogue.
    epilogue(part[B*splits,M,N], splits, bias, prod, pre, out, mode, act, alpha, shift)
        One thread per output element; also the epilogue after a cuBLAS product.

`mode` bits: 1 write prod (the raw product), 2 add bias[b,r,c], 16 add the scalar shift,
4 write pre (the value after the adds), 8 write out (act(pre)). Unused array arguments may
be any array of the same type (they are never touched).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kiln.ir.ops.elementwise import SELU_ALPHA, SELU_SCALE
from kiln.runtimes.numba_cuda.intrinsics import SIMULATOR

# The simulator runs each thread as a Python thread (a 256-thread block costs about half a
# second there), so it gets the same kernel with 2 x 2 threads on 8 x 8 x 4 tiles.
if SIMULATOR:
    BM, BN, BK = 8, 8, 4
    TX, TY = 2, 2
else:
    BM, BN, BK = 64, 64, 16
    TX, TY = 16, 16
RM, RN = BM // TY, BN // TX
THREADS = TX * TY

WRITE_PROD, ADD_BIAS, WRITE_PRE, WRITE_OUT, ADD_SHIFT = 1, 2, 4, 8, 16
# Activation codes: the ACTIVATIONS of kiln.compiler.passes.fuse_gemm_epilogue.
ACT_CODES = {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3, "elu": 4, "selu": 5, "softplus": 6,
             "exp": 7}


def _build(dtype: np.dtype) -> dict:
    """The kernels for one float dtype (shared tiles and constants need it at compile time)."""
    from numba import from_dtype

    nbtype = from_dtype(dtype)
    zero, one = dtype.type(0), dtype.type(1)
    scale, scaled_alpha = dtype.type(SELU_SCALE), dtype.type(SELU_ALPHA)

    @cuda.jit(device=True)
    def activate(v, act, alpha):
        # As kiln.ir.ops.elementwise's references, in the operand's dtype.
        if act == 1:
            return zero if v < zero else v  # relu; NaN stays NaN as in np.maximum
        if act == 2:
            e = math.exp(-abs(v))
            if v >= zero:
                return one / (one + e)
            return e / (one + e)
        if act == 3:
            return math.tanh(v)
        if act == 4:
            return v if v > zero else alpha * math.expm1(v)
        if act == 5:
            return scale * (v if v > zero else scaled_alpha * math.expm1(v))
        if act == 6:
            return (v if v > zero else zero) + math.log1p(math.exp(-abs(v)))
        if act == 7:
            return math.exp(v)
        return v

    @cuda.jit(device=True)
    def store(v, b, r, c, bias, prod, pre, out, mode, act, alpha, shift):
        # The bias is read before any write: a result may share its buffer (in place).
        p = v
        if mode & 2:
            v = v + bias[b, r, c]
        if mode & 16:
            v = v + shift
        if mode & 1:
            prod[b, r, c] = p
        if mode & 4:
            pre[b, r, c] = v
        if mode & 8:
            out[b, r, c] = activate(v, act, alpha)

    @cuda.jit
    def gemm(x, y, bias, prod, pre, out, mode, act, alpha, shift, splits, kchunk, a_kfast,
             b_nfast):
        a_tile = cuda.shared.array((BK, BM), nbtype)
        b_tile = cuda.shared.array((BK, BN), nbtype)
        acc = cuda.local.array((RM, RN), nbtype)
        a_reg = cuda.local.array(RM, nbtype)
        b_reg = cuda.local.array(RN, nbtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        m, k_total, n = x.shape[1], x.shape[2], y.shape[2]
        row0, col0 = cuda.blockIdx.x * BM, cuda.blockIdx.y * BN
        for z in range(cuda.blockIdx.z, x.shape[0] * splits, cuda.gridDim.z):
            b = z // splits
            k_begin = (z % splits) * kchunk
            k_end = min(k_total, k_begin + kchunk)
            for i in range(RM):
                for j in range(RN):
                    acc[i, j] = zero
            for k0 in range(k_begin, k_end, BK):
                for step in range(BM * BK // THREADS):
                    e = tid + step * THREADS
                    if a_kfast:
                        r, kk = e // BK, e % BK
                    else:
                        kk, r = e // BM, e % BM
                    if row0 + r < m and k0 + kk < k_end:
                        a_tile[kk, r] = x[b, row0 + r, k0 + kk]
                    else:
                        a_tile[kk, r] = zero
                for step in range(BK * BN // THREADS):
                    e = tid + step * THREADS
                    if b_nfast:
                        kk, c = e // BN, e % BN
                    else:
                        c, kk = e // BK, e % BK
                    if col0 + c < n and k0 + kk < k_end:
                        b_tile[kk, c] = y[b, k0 + kk, col0 + c]
                    else:
                        b_tile[kk, c] = zero
                cuda.syncthreads()
                for kk in range(BK):
                    for i in range(RM):
                        a_reg[i] = a_tile[kk, ty + TY * i]
                    for j in range(RN):
                        b_reg[j] = b_tile[kk, tx + TX * j]
                    for i in range(RM):
                        for j in range(RN):
                            acc[i, j] += a_reg[i] * b_reg[j]
                cuda.syncthreads()
            for i in range(RM):
                r = row0 + ty + TY * i
                if r < m:
                    for j in range(RN):
                        c = col0 + tx + TX * j
                        if c < n:
                            if splits > 1:
                                prod[z, r, c] = acc[i, j]
                            else:
                                store(acc[i, j], b, r, c, bias, prod, pre, out, mode, act,
                                      alpha, shift)

    @cuda.jit
    def epilogue(part, splits, bias, prod, pre, out, mode, act, alpha, shift):
        rows, cols = part.shape[1], part.shape[2]
        total = (part.shape[0] // splits) * rows * cols
        for t in range(cuda.grid(1), total, cuda.gridsize(1)):
            c = t % cols
            r = (t // cols) % rows
            b = t // (cols * rows)
            v = part[b * splits, r, c]
            for s in range(1, splits):
                v += part[b * splits + s, r, c]
            store(v, b, r, c, bias, prod, pre, out, mode, act, alpha, shift)

    return {"gemm": gemm, "epilogue": epilogue, "activate": activate, "store": store}


KERNELS = {np.dtype(np.float32): _build(np.dtype(np.float32)),
           np.dtype(np.float64): _build(np.dtype(np.float64))}


def ptx_cases() -> list[tuple[str, object, str]]:
    """(name, Python function, signature) of every kernel here, for compile_ptx checks."""
    cases = []
    for dtype, name in ((np.float32, "float32"), (np.float64, "float64")):
        kernels = KERNELS[np.dtype(dtype)]
        a3 = f"{name}[:, :, :]"
        c3 = f"{name}[:, :, ::1]"
        scalars = f"int64, int64, {name}, {name}"
        cases.append((f"gemm[{name}]", kernels["gemm"].py_func,
                      f"void({a3}, {a3}, {a3}, {c3}, {c3}, {c3}, {scalars}, int64, int64, "
                      f"int64, int64)"))
        cases.append((f"epilogue[{name}]", kernels["epilogue"].py_func,
                      f"void({c3}, int64, {a3}, {c3}, {c3}, {c3}, {scalars})"))
    return cases
