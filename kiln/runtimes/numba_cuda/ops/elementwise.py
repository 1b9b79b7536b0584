"""Launchers of the elementwise ops: each op, attributes and types get one generated kernel
(kiln.compiler.codegen.cuda, a fused region of one node), broadcasting its operands."""

from __future__ import annotations

from typing import Any

from kiln.compiler.codegen.cuda import CudaKernel, elementwise_kernel, single_op_body
from kiln.compiler.codegen.cuda.scalar import SCALAR
from kiln.ir.graph import Node
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.launch import MAX_THREADS, launch_generated


def single_op_kernel(ctx: RunContext, node: Node, kind: str) -> CudaKernel:
    """The generated kernel of a lone node, shared by every node of the same op, attributes
    and types (the body has canonical names)."""
    key = ("single", node.op, node.attrs, tuple(v.type for v in node.inputs),
           node.output.type)
    if key not in ctx.memo:
        from kiln.compiler.codegen.cuda import reduction_kernel

        body = single_op_body(node)
        make = elementwise_kernel if kind == "elementwise" else reduction_kernel
        ctx.memo[key] = make(body, f"generated CUDA kernel of {node.op} "
                                   f"({', '.join(str(v.type) for v in node.inputs)})",
                             MAX_THREADS)
    return ctx.memo[key]


def launch_elementwise(ctx: RunContext, node: Node, inputs: list[Any],
                       outputs: list[Any]) -> None:
    launch_generated(ctx, node, single_op_kernel(ctx, node, "elementwise"), inputs, outputs)


LAUNCHERS: dict[str, Launcher] = {op: launch_elementwise for op in SCALAR}
