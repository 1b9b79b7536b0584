"""Runs a graph's nodes on the device: each node's launcher on its operands' device arrays
and the buffers its results go to. The executable runs entry points through it, and the scan
launcher each step of a body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kiln.compiler.codegen.numba.source import ir_line
from kiln.ir.errors import KilnError, KilnValueError
from kiln.ir.graph import Graph, Value
from kiln.runtimes.numba_cuda.context import Launcher, RunContext


def launchers() -> dict[str, Launcher]:
    from kiln.runtimes.numba_cuda.ops import LAUNCHERS

    return LAUNCHERS


def check_launchers(graph: Graph, where: str) -> None:
    """Refuse a graph (bodies included) holding an op without a launcher, naming it."""
    table = launchers()
    for node in graph.nodes:
        if node.op == "fused" and node.attr["kind"] == "gemm" and "fused:gemm" not in table:
            raise KilnValueError(f"{where}: backend 'numba-cuda' has no launcher for fused "
                                 f"gemm kernels; expected one for {ir_line(node)}")
        if node.op not in table:
            raise KilnValueError(f"{where}: backend 'numba-cuda' has no launcher for op "
                                 f"{node.op!r}; expected one for {ir_line(node)}")
        if node.body is not None and node.op != "fused":
            check_launchers(node.body, where)


def bind_shapes(values: Sequence[Value], shapes: Sequence[tuple[int, ...]]) -> dict[str, int]:
    """The size of each symbol of `values`' types, read from the arrays' shapes."""
    dims: dict[str, int] = {}
    for v, shape in zip(values, shapes, strict=True):
        for d, n in zip(v.type.shape, shape, strict=True):
            if isinstance(d, str):
                dims.setdefault(d, int(n))
    return dims


def run_nodes(ctx: RunContext, graph: Graph, env: dict[str, Any],
              buffer_of: Callable[[Value], Any], views: Mapping[int, str] | None = None,
              ) -> None:
    """Launch every node of `graph` in order; `env` maps value names to device arrays (the
    inputs and state on entry, every node's results on return). `views` (node index ->
    kind, see views.plan_views) names the nodes whose result is a view of their operand:
    they launch nothing."""
    from kiln.runtimes.numba_cuda.views import as_view

    table = launchers()
    views = views or {}
    for i, node in enumerate(graph.nodes):
        inputs = [env[v.name] for v in node.inputs]
        kind = views.get(i)
        if kind is not None:
            shape = tuple(buffer_of(node.output).shape)  # the slot's view: a resolved shape
            env[node.output.name] = as_view(kind, node, inputs[0], shape)
            continue
        outputs = [buffer_of(v) for v in node.outputs]
        ctx.pool.next_node()  # the previous node's scratch is free (one stream, in order)
        try:
            table[node.op](ctx, node, inputs, outputs)
        except KilnError:
            raise
        except Exception as err:
            err.add_note(f"numba-cuda: while launching {ir_line(node)}")
            raise
        for v, array in zip(node.outputs, outputs, strict=True):
            env[v.name] = array


def resolve(types: Mapping[str, Any], dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of named types."""
    return {name: t.resolve(dict(dims)) for name, t in types.items()}
