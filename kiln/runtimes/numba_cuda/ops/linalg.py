"""Launchers of matmul and of `fused` nodes of kind "gemm" (matmul, bias add, activation, as
kiln.compiler.passes.fuse_gemm_epilogue makes them) on the tiled GEMM of kernels/gemm.py, or
on cuBLAS through CuPy followed by the epilogue kernel.

GEMM choice: KILN_CUDA_GEMM=kiln (the tiled kernel), cublas (CuPy's matmul; an error when
CuPy cannot be imported), or auto (the default: cuBLAS when CuPy imports and the arrays are
real device arrays, never under the simulator). Operands may be strided views (a transpose
is read in place) and broadcast over batch dimensions; the products are C-contiguous.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Node
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.kernels import gemm as K
from kiln.runtimes.numba_cuda.kernels.arrays import (
    broadcast_strides,
    element_strides,
    is_simulated,
    merge_strides,
    view,
)
from kiln.runtimes.numba_cuda.kernels.layout import scratch

# Split-K: a GEMM with fewer output tiles than this (over all batches) and K of at least
# SPLIT_K_MIN splits K so that the GPU has about TARGET_BLOCKS blocks to run.
TARGET_BLOCKS = 264
SPLIT_K_MIN = 1024
SPLIT_K_DEPTH = 256  # the least K per slice
EPILOGUE_THREADS = 256


@dataclass(frozen=True)
class Epilogue:
    """What a gemm kernel does after the product: `mode` bits of kernels/gemm.py, the
    activation code and its alpha, a scalar shift; which operand is the bias (or None); and
    which node result each of (prod, pre, out) is (or None)."""

    mode: int = K.WRITE_PROD
    act: int = 0
    alpha: float = 1.0
    shift: float = 0.0
    bias: int | None = None
    results: tuple[int | None, int | None, int | None] = (0, None, None)


# -- the batched product -------------------------------------------------------------------
def _batch_slices(batch: tuple[int, ...], operands: list[tuple[Any, tuple[int, ...], int]],
                  ) -> list[tuple[int, list[tuple[int, int, int, int]]]]:
    """Split the output's batch dimensions into runs that each operand walks with one
    stride: [(B, [(offset, batch stride, stride 1, stride 2) per operand])].

    operands: (array, element strides broadcast to the full output-aligned rank, offset).
    Where some operand's batch strides do not merge (e.g. x [2,1,M,K] @ y [1,3,K,N]), the
    leading batch dimension is looped over on the host and the rest split again.
    """
    merged = [merge_strides(batch, strides[:len(batch)]) for _, strides, _ in operands]
    if all(m is not None for m in merged):
        return [(math.prod(batch), [(off, m, st[-2], st[-1])  # type: ignore[misc]
                                    for (_, st, off), m in zip(operands, merged, strict=True)])]
    runs = []
    for i in range(batch[0]):
        runs += _batch_slices(batch[1:], [(a, st[1:], off + i * st[0])
                                          for a, st, off in operands])
    return runs


def _cublas_wanted(array: Any) -> bool:
    choice = os.environ.get("KILN_CUDA_GEMM", "auto")
    if choice not in ("auto", "kiln", "cublas"):
        raise KilnValueError(f"expected KILN_CUDA_GEMM to be auto, kiln or cublas. "
                             f"Received: KILN_CUDA_GEMM={choice!r}")
    if choice == "kiln" or (choice == "auto" and is_simulated(array)):
        return False
    try:
        import cupy  # noqa: F401
    except ImportError:
        if choice == "cublas":
            raise KilnValueError("KILN_CUDA_GEMM=cublas needs CuPy, which cannot be "
                                 "imported here; set KILN_CUDA_GEMM=kiln or install CuPy"
                                 ) from None
        return False
    return not is_simulated(array)


def _offset_view(array: Any, offset: int, shape: Sequence[int], strides: Sequence[int]) -> Any:
    """A view starting `offset` elements after `array`'s first element."""
    if offset:
        array = _flat_from(array, offset)
    return view(array, shape, strides)


def _flat_from(array: Any, offset: int) -> Any:
    """A 1-element view of `array`'s memory at element `offset` (a base for `view`)."""
    if is_simulated(array):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        base = np.lib.stride_tricks.as_strided(array._ary, (offset + 1,),
                                               (array._ary.itemsize,))
        return FakeCUDAArray(base[offset:])
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    itemsize = np.dtype(array.dtype).itemsize
    return DeviceNDArray((1,), (itemsize,), array.dtype, stream=array.stream,
                         gpu_data=array.gpu_data.view(offset * itemsize))


def gemm(ctx: RunContext, x: Any, y: Any, outs: Sequence[Any], epi: Epilogue,
         bias: Any = None) -> None:
    """outs[k] for each k with epi.results[k] set: prod = x @ y, pre = prod (+ bias)
    (+ shift), out = act(pre); x [..., M, K], y [..., K, N], the batch dimensions
    broadcasting as in np.matmul, bias broadcasting to [..., M, N]; outs C-contiguous."""
    target = next(o for o in outs if o is not None)
    shape = tuple(target.shape)
    batch, (m, n), k = shape[:-2], shape[-2:], tuple(x.shape)[-1]
    if math.prod(shape) == 0:
        return
    dtype = np.dtype(target.dtype)
    kernels = K.KERNELS[dtype]
    if k > 0 and _cublas_wanted(target) and (bias is None or _as3(bias, shape) is not None):
        _cublas_gemm(ctx, x, y, outs, epi, bias, kernels)
        return
    full_x, full_y = (*batch, m, k), (*batch, k, n)
    operands = [(x, broadcast_strides(x.shape, full_x, element_strides(x)), 0),
                (y, broadcast_strides(y.shape, full_y, element_strides(y)), 0)]
    if bias is not None:
        operands.append((bias, broadcast_strides(bias.shape, shape, element_strides(bias)), 0))
    for o in outs:
        if o is not None:
            operands.append((o, element_strides(o), 0))
    for count, strides in _batch_slices(batch, operands):
        views = []
        for (array, _, _), (off, sb, s1, s2), dims in zip(
                operands, strides, [(m, k), (k, n), *([(m, n)] * (len(operands) - 2))],
                strict=True):
            views.append(_offset_view(array, off, (count, *dims), (sb, s1, s2)))
        xv, yv = views[0], views[1]
        rest = views[2:]
        bv = rest.pop(0) if bias is not None else None
        ov = [rest.pop(0) if o is not None else None for o in outs]
        _launch(ctx, kernels, xv, yv, bv, ov, epi, dtype)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _launch(ctx: RunContext, kernels: dict, x: Any, y: Any, bias: Any, outs: list[Any],
            epi: Epilogue, dtype: np.dtype) -> None:
    batch, m, k = x.shape
    n = y.shape[2]
    any_out = next(o for o in outs if o is not None)
    prod, pre, out = (o if o is not None else any_out for o in outs)
    bias = any_out if bias is None else bias
    tiles = -(-m // K.BM) * -(-n // K.BN)
    splits = 1
    if k >= SPLIT_K_MIN and tiles * batch < TARGET_BLOCKS // 2:
        splits = max(1, min(TARGET_BLOCKS // (tiles * batch), _ceil(k, SPLIT_K_DEPTH)))
    alpha, shift = dtype.type(epi.alpha), dtype.type(epi.shift)
    a_kfast = int(abs(x.strides[2]) <= abs(x.strides[1]))
    b_nfast = int(abs(y.strides[2]) <= abs(y.strides[1]))
    grid_z = lambda z: min(z, 65535)  # noqa: E731 - blocks stride over the rest
    grid = (_ceil(m, K.BM), _ceil(n, K.BN))  # M on x: up to 2**31 - 1 tiles
    if splits == 1:
        ctx.launch(kernels["gemm"], (*grid, grid_z(batch)), (K.TX, K.TY),
                   x, y, bias, prod, pre, out, epi.mode, epi.act, alpha, shift, 1, max(k, 1),
                   a_kfast, b_nfast)
        return
    kchunk = _ceil(_ceil(k, splits), K.BK) * K.BK  # whole BK tiles per slice
    splits = -(-k // kchunk)
    part = scratch(ctx, "split-k", (batch * splits, m, n), dtype.name)
    ctx.launch(kernels["gemm"], (*grid, grid_z(batch * splits)), (K.TX, K.TY),
               x, y, bias, part, part, part, 0, 0, alpha, shift, splits, kchunk, a_kfast,
               b_nfast)
    _epilogue(ctx, kernels, part, splits, bias, (prod, pre, out), epi.mode, epi, dtype)


def _epilogue(ctx: RunContext, kernels: dict, part: Any, splits: int, bias: Any,
              outs: Sequence[Any], mode: int, epi: Epilogue, dtype: np.dtype) -> None:
    blocks, threads = ctx.grid(part.size // splits, EPILOGUE_THREADS)
    ctx.launch(kernels["epilogue"], min(blocks, 65535 * 4), threads,
               part, splits, bias, *outs, mode, epi.act, dtype.type(epi.alpha),
               dtype.type(epi.shift))


# -- cuBLAS through CuPy -------------------------------------------------------------------
def _cupy_array(cp: Any, array: Any) -> Any:
    """A CuPy array on the same device memory (no copy, no stream synchronization)."""
    itemsize = np.dtype(array.dtype).itemsize
    span = itemsize + sum((d - 1) * abs(s) for d, s in zip(array.shape, array.strides,
                                                           strict=True))
    pointer = array.__cuda_array_interface__["data"][0]
    memory = cp.cuda.UnownedMemory(pointer, span, array)
    return cp.ndarray(tuple(array.shape), array.dtype, cp.cuda.MemoryPointer(memory, 0),
                      strides=tuple(array.strides))


def _stream_pointer(stream: Any) -> int:
    handle = getattr(stream, "handle", None)
    try:
        return int(handle) if handle is not None else 0
    except TypeError:
        return int(getattr(handle, "value", 0) or 0)


def _cublas_gemm(ctx: RunContext, x: Any, y: Any, outs: Sequence[Any], epi: Epilogue,
                 bias: Any, kernels: dict) -> None:
    """The product by cuBLAS (CuPy's matmul, batched and broadcast as np.matmul) into the
    prod result (or scratch), then the epilogue kernel for the rest."""
    import cupy as cp

    target = next(o for o in outs if o is not None)
    shape, dtype = tuple(target.shape), np.dtype(target.dtype)
    prod = outs[0] if outs[0] is not None else scratch(ctx, "product", shape, dtype.name)
    stream = cp.cuda.ExternalStream(_stream_pointer(ctx.stream))
    operands = _cupy_array(cp, x), _cupy_array(cp, y), _cupy_array(cp, prod)

    def product() -> None:
        with stream:
            cp.matmul(operands[0], operands[1], out=operands[2])

    ctx.call(product)
    mode = epi.mode & ~K.WRITE_PROD
    if not mode & (K.WRITE_PRE | K.WRITE_OUT):
        return
    b3 = _as3(bias, shape) if bias is not None else None
    p3 = prod.reshape(math.prod(shape[:-2]), *shape[-2:])
    o3 = [o.reshape(p3.shape) if o is not None else p3 for o in outs]
    _epilogue(ctx, kernels, p3, 1, p3 if b3 is None else b3, o3, mode, epi, dtype)


def _as3(array: Any, shape: tuple[int, ...]) -> Any:
    """`array` broadcast to `shape` as a [B, M, N] view (B the merged batch dimensions), or
    None when its batch strides do not merge (the tiled kernel handles that bias)."""
    strides = broadcast_strides(array.shape, shape, element_strides(array))
    sb = merge_strides(shape[:-2], strides[:-2])
    if sb is None:
        return None
    return view(array, (math.prod(shape[:-2]), *shape[-2:]), (sb, *strides[-2:]))


# -- launchers -----------------------------------------------------------------------------
def launch_matmul(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    x, y = inputs
    gemm(ctx, x, y, [outputs[0], None, None], Epilogue())


def gemm_epilogue(node: Node) -> tuple[Epilogue, int, int]:
    """How a fused gemm node's body maps onto the kernel: (epilogue, x operand, y operand)."""
    from kiln.compiler.passes.fuse_gemm_epilogue import ACTIVATIONS

    body = node.body
    assert body is not None
    operand = {v.name: k for k, v in enumerate(body.inputs)}
    matmul = body.nodes[0]
    product = matmul.output.name
    constants: dict[str, float] = {}
    mode, act, alpha, shift, bias = K.WRITE_PROD, 0, 1.0, 0.0, None
    pre, out = product, None
    for inner in body.nodes[1:]:
        if inner.op == "constant" and inner.output.type.rank == 0:
            constants[inner.output.name] = float(inner.attr["value"])
        elif inner.op == "add" and out is None and pre == product:
            other = next(v for v in inner.inputs if v.name != product)
            if other.name in operand:
                bias, mode = operand[other.name], mode | K.ADD_BIAS
            elif other.name in constants:
                shift, mode = constants[other.name], mode | K.ADD_SHIFT
            else:
                break
            pre = inner.output.name
        elif inner.op in ACTIVATIONS and out is None and inner.inputs[0].name == pre:
            act, out = K.ACT_CODES[inner.op], inner.output.name
            alpha = float(inner.attr.get("alpha", 1.0))
        else:
            raise KilnValueError(
                f"numba-cuda: expected a gemm body of matmul, bias add and activation. "
                f"Received: @{body.name} with {inner.op} (%{inner.output.name})")
    names = [v.name for v in body.output_values]

    def result(name: str | None) -> int | None:
        return names.index(name) if name is not None and name in names else None

    results = (result(product), result(pre) if pre != product else None, result(out))
    mode = mode & ~K.WRITE_PROD | (K.WRITE_PROD if results[0] is not None else 0)
    mode |= (K.WRITE_PRE if results[1] is not None else 0) | (
        K.WRITE_OUT if results[2] is not None else 0)
    if out is None and results[2] is None and results[1] is None and results[0] is None:
        raise KilnValueError(f"numba-cuda: gemm body @{body.name} has no result")
    return (Epilogue(mode, act, alpha, shift, bias, results),
            operand[matmul.inputs[0].name], operand[matmul.inputs[1].name])


def launch_fused_gemm(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any],
                      ) -> None:
    epi, xi, yi = gemm_epilogue(node)
    outs = [outputs[r] if r is not None else None for r in epi.results]
    bias = inputs[epi.bias] if epi.bias is not None else None
    gemm(ctx, inputs[xi], inputs[yi], outs, epi, bias)


LAUNCHERS: dict[str, Launcher] = {"matmul": launch_matmul, "fused:gemm": launch_fused_gemm}
