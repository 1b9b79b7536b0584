"""Every CUDA kernel the numba-cuda backend runs, with the Numba signatures it is launched
with, so that a test can compile each one for a real GPU (cuda.compile_ptx, no GPU needed).

`generated_kernels(graph)`: the kernels kiln generates for an optimized graph (fused
regions, lone elementwise ops and reductions, movement kernels), bodies of scans included.
`library_kernels()`: every hand-written kernel: fill and argmax/argmin of the launchers, and
each module of the kernel library (kiln/runtimes/numba_cuda/kernels/*.py) through its
`ptx_cases()`, in every dtype and layout the launchers use.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kiln.compiler.codegen.cuda import (
    REDUCTIONS,
    fused_kernel,
    movement_kernel,
    single_op_body,
)
from kiln.compiler.codegen.cuda.scalar import SCALAR
from kiln.ir.graph import Graph
from kiln.runtimes.numba import cache
from kiln.runtimes.numba_cuda.ops.control import conv_parts

DTYPES = ("float32", "float64", "int32", "int64", "bool")
NUMBA = {"float32": "float32", "float64": "float64", "int32": "int32", "int64": "int64",
         "bool": "boolean"}


@dataclass(frozen=True)
class KernelCase:
    """One kernel to compile: a name for messages, the Python function, a signature."""

    name: str
    function: Callable[..., Any]
    signature: str


def _py_func(kernel: Any) -> Callable[..., Any]:
    return getattr(kernel, "py_func", kernel)


def generated_kernels(graph: Graph, seen: set[str] | None = None) -> Iterator[KernelCase]:
    """The generated kernels of an optimized graph, bodies of scans included; kernels whose
    source is in `seen` (which grows) are left out."""
    seen = set() if seen is None else seen
    for node in graph.nodes:
        if node.op == "fused" and node.attr["kind"] == "conv":
            assert node.body is not None
            yield from generated_kernels(conv_parts(node.body), seen)
            continue
        if node.op == "fused" and node.attr["kind"] != "gemm":
            assert node.body is not None
            k = fused_kernel(node.body, node.attr["kind"], f"fused %{node.outputs[0].name}")
        elif node.op in SCALAR or node.op in REDUCTIONS:
            kind = "reduction" if node.op in REDUCTIONS else "elementwise"
            k = fused_kernel(single_op_body(node), kind, node.op)
        else:
            if node.body is not None and node.op != "fused":
                yield from generated_kernels(node.body, seen)
            continue
        if k.source in seen:
            continue
        seen.add(k.source)
        module = cache.load_module(k.source)
        yield KernelCase(f"{node.op} %{node.outputs[0].name}",
                         _py_func(getattr(module, k.name)), k.signature)


def movement_kernels() -> Iterator[KernelCase]:
    variants = [(2, dtype) for dtype in DTYPES] + [(0, "float32"), (4, "float32")]
    for rank, dtype in variants:
        for periodic, bounded in ((False, False), (True, False), (False, True)):
            k = movement_kernel(rank, dtype, periodic, bounded)
            module = cache.load_module(k.source)
            yield KernelCase(f"movement rank {rank} {dtype} periodic={periodic} "
                             f"bounded={bounded}", _py_func(getattr(module, k.name)),
                             k.signature)


def framework_kernels() -> Iterator[KernelCase]:
    """This half's hand-written kernels: fill and argmax/argmin, in every dtype."""
    from kiln.runtimes.numba_cuda import launch
    from kiln.runtimes.numba_cuda.ops import reduce

    for dtype in DTYPES:
        t = NUMBA[dtype]
        yield KernelCase(f"fill {dtype}", _py_func(launch._fill), f"void({t}[::1], {t}, int64)")
        if dtype != "bool":
            yield KernelCase(f"iota {dtype}", _py_func(launch._iota), f"void({t}[::1], int64)")
        if dtype != "bool":
            yield KernelCase(f"arg_reduce {dtype}", _py_func(reduce._arg_reduce),
                             f"void(int64[::1], {t}[::1], int64, int64, int64, boolean)")


def library_modules() -> list[str]:
    """The kernel library's modules that define kernels (arrays.py holds views only)."""
    import kiln.runtimes.numba_cuda.kernels as package

    names = {m.name for m in pkgutil.iter_modules(package.__path__)}
    return sorted(names - {"arrays"})


def library_kernels() -> list[KernelCase]:
    cases = list(framework_kernels())
    for name in library_modules():
        module = importlib.import_module(f"kiln.runtimes.numba_cuda.kernels.{name}")
        cases.extend(KernelCase(f"{name}.{case}", function, signature)
                     for case, function, signature in module.ptx_cases())
    return cases
