"""Launchers of the reductions. sum, mean, max, min and prod get a generated kernel each (a
fused reduction of one node: one block per output element, a tree in shared memory);
argmax and argmin a hand-written kernel of the same shape that keeps indices in shared
memory and reads the values they point at, so one kernel serves every dtype."""

from __future__ import annotations

import math
from typing import Any

from numba import cuda, int64

from kiln.compiler.codegen.cuda import REDUCTIONS
from kiln.ir.graph import Node
from kiln.ir.types import normalize_axes
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.launch import MAX_BLOCKS, MAX_THREADS, flat, launch_generated
from kiln.runtimes.numba_cuda.ops.elementwise import single_op_kernel

THREADS = MAX_THREADS  # a power of two: the tree halves it


def launch_reduction(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    launch_generated(ctx, node, single_op_kernel(ctx, node, "reduction"), inputs, outputs)


@cuda.jit(cache=True)
def _arg_reduce(out: Any, x: Any, n_out: int, m: int, inner: int,
                want_max: bool) -> None:  # pragma: no cover - runs on the device
    # One block per output element; its threads stride along the axis, then a tree over
    # the candidates' indices (-1: none). Candidate j beats i when it is NaN and i is not,
    # when it is larger (argmax) or smaller (argmin), or equal with a smaller index: the
    # choices of np.argmax and np.argmin. (Written out twice: a device function would need
    # a GPU to compile for, and cuda.compile_ptx checks this kernel without one.)
    best = cuda.shared.array(THREADS, dtype=int64)
    tid = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, n_out, cuda.gridDim.x):
        base = (r // inner) * m * inner + r % inner
        mine = -1
        for j in range(tid, m, THREADS):
            if mine < 0:
                mine = j
                continue
            a, b = x[base + mine * inner], x[base + j * inner]
            if a == a and (b != b or (b > a if want_max else b < a)):
                mine = j  # j > mine here: ties keep mine
        best[tid] = mine
        cuda.syncthreads()
        s = THREADS // 2
        while s > 0:
            if tid < s:
                i, j = best[tid], best[tid + s]
                if j >= 0:
                    if i < 0:
                        best[tid] = j
                    else:
                        a, b = x[base + i * inner], x[base + j * inner]
                        if a != a:
                            take = b != b and j < i
                        elif b != b:
                            take = True
                        elif a == b:
                            take = j < i
                        else:
                            take = (b > a) if want_max else (b < a)
                        if take:
                            best[tid] = j
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            out[r] = best[0]
        cuda.syncthreads()


def launch_arg_reduction(ctx: RunContext, node: Node, inputs: list[Any],
                         outputs: list[Any]) -> None:
    (x,), (out,) = inputs, outputs
    shape = tuple(x.shape)
    axis = node.attr["axis"]
    if axis is None:
        outer, m, inner = 1, math.prod(shape), 1
    else:
        (a,) = normalize_axes(axis, len(shape), node.op)
        outer, m, inner = math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:])
    n_out = outer * inner
    if n_out == 0:
        return
    ctx.launch(_arg_reduce, min(MAX_BLOCKS, n_out), THREADS,
               flat(out), flat(x), n_out, m, inner, node.op == "argmax")


LAUNCHERS: dict[str, Launcher] = {
    **{op: launch_reduction for op in REDUCTIONS},
    "argmax": launch_arg_reduction,
    "argmin": launch_arg_reduction,
}
