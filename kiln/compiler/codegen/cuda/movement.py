"""The CUDA kernel of the movement ops (transpose, broadcast_to, slice, pad, tile, and the
pieces of concat and split): an affine map from each element of an iteration space to one
element of the source and one of the destination.

Per axis a of the space (index j): the source coordinate is `start + j * step`, taken modulo
`period` (tile) and checked against [0, limit) (pad: outside it the element is `fill`); the
destination coordinate is `offset + j`. Coordinates times strides give flat indices. Every
parameter is a scalar argument, so one kernel per (rank, dtype, variant) serves every shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.compiler.codegen.cuda.fused import NUMBA_TYPE
from kiln.compiler.codegen.numba.source import SourceWriter


@dataclass(frozen=True)
class MovementKernel:
    """A generated movement kernel: arguments (out, x, n, fill, then per axis: extent,
    source stride, start, step, [period], [limit], destination stride, offset)."""

    name: str
    source: str
    signature: str
    rank: int
    periodic: bool
    bounded: bool

    def per_axis(self) -> tuple[str, ...]:
        names = ["extent", "stride", "start", "step"]
        if self.periodic:
            names.append("period")
        if self.bounded:
            names.append("limit")
        return (*names, "out_stride", "offset")


def movement_kernel(rank: int, dtype: str, periodic: bool, bounded: bool) -> MovementKernel:
    """The movement kernel for a space of `rank` axes over arrays of `dtype`."""
    w = SourceWriter()
    w.line(f'"""kiln: generated CUDA movement kernel (rank {rank}, {dtype}'
           f'{", periodic" if periodic else ""}{", bounded" if bounded else ""})."""')
    w.line()
    w.line("from numba import cuda")
    w.line()
    w.line()
    kernel = MovementKernel("kernel", "", "", rank, periodic, bounded)
    params = [f"{p}{a}" for a in range(rank) for p in kernel.per_axis()]
    w.line("@cuda.jit(cache=True)")
    with w.block(f"def kernel({', '.join(['out', 'x', 'n', 'fill', *params])})"):
        w.comment("one thread per element of the space, in a grid-stride loop")
        with w.block("for i in range(cuda.grid(1), n, cuda.gridsize(1))"):
            w.line("rem = i")
            w.line("src = 0")
            w.line("dst = 0")
            if bounded:
                w.line("inside = True")
            for a in reversed(range(rank)):
                if a:
                    w.line(f"j = rem % extent{a}")
                    w.line(f"rem = rem // extent{a}")
                else:
                    w.line("j = rem")
                w.line(f"c = start{a} + j * step{a}")
                if periodic:
                    w.line(f"c = c % period{a}")
                if bounded:
                    w.line(f"inside = inside and 0 <= c < limit{a}")
                w.line(f"src += c * stride{a}")
                w.line(f"dst += (offset{a} + j) * out_stride{a}")
            if bounded:
                w.line("out[dst] = x[src] if inside else fill")
            else:
                w.line("out[dst] = x[src]")
    array = f"{NUMBA_TYPE[dtype]}[::1]"
    signature = (f"void({array}, {array}, int64, {NUMBA_TYPE[dtype]}"
                 f"{', int64' * (rank * len(kernel.per_axis()))})")
    return MovementKernel("kernel", w.text(), signature, rank, periodic, bounded)
