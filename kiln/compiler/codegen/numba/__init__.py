"""The Numba (CPU) code generator: one @njit driver per entry point, as readable Python.

`LOWERINGS` is the backend's lowering table, op name -> `lower(em, frame, node)`, which
writes the statements computing the node; `MISSING` lists the ops of the IR it cannot
lower yet (a completeness test keeps it empty). `generate_driver(graph)` turns an optimized
graph with its buffer plan into a GeneratedDriver (source and calling convention);
kiln.runtimes.numba compiles, caches and runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from kiln.compiler.codegen.numba import lower_control, lower_nn, lower_tensor
from kiln.compiler.codegen.numba.driver import GeneratedDriver, generate_driver, module_source
from kiln.compiler.codegen.numba.frame import Emitter, Frame
from kiln.compiler.codegen.numba.scalar import SCALAR
from kiln.ir.graph import Node
from kiln.ir.registry import OPS

Lowering = Callable[[Emitter, Frame, Node], None]

LOWERINGS: dict[str, Lowering] = {
    **{op: lower_tensor.lower_elementwise for op in SCALAR},
    **{op: lower_tensor.lower_reduction for op in ("sum", "mean", "max", "min", "prod")},
    "argmax": lower_tensor.lower_arg,
    "argmin": lower_tensor.lower_arg,
    "constant": lower_tensor.lower_constant,
    "size": lower_tensor.lower_size,
    "iota": lower_tensor.lower_iota,
    "reshape": lower_tensor.lower_view,
    "expand_dims": lower_tensor.lower_view,
    "squeeze": lower_tensor.lower_view,
    "broadcast_to": lower_tensor.lower_broadcast_to,
    "transpose": lower_tensor.lower_transpose,
    "concat": lower_tensor.lower_concat,
    "split": lower_tensor.lower_split,
    "slice": lower_tensor.lower_slice,
    "pad": lower_tensor.lower_pad,
    "tile": lower_tensor.lower_tile,
    "matmul": lower_tensor.lower_matmul,
    **lower_nn.LOWERINGS,
    "fused": lower_control.lower_fused,
    "scan": lower_control.lower_scan,
}

MISSING: list[str] = sorted(set(OPS) - set(LOWERINGS))

__all__ = ["LOWERINGS", "MISSING", "GeneratedDriver", "generate_driver", "module_source"]
