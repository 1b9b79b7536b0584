"""The `fused` op: one kernel made of several ops, its body a closed graph.

Fusion passes (kiln/compiler/passes/fuse_*.py) replace a region of the graph by one `fused`
node whose operands are the region's external inputs, whose results are the values of the
region read outside it, and whose body computes them with the original ops and names, so a
dump after fusion shows which ops became one kernel and which layer each came from.

Contract for backends: a kernel reads its operands at an index before it writes its
results at that index (plan_buffers relies on it to write state updates in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.graph import Graph
from kiln.ir.registry import OPS, REQUIRED, define, fail
from kiln.ir.types import TensorType

# kind -> what the body may hold, besides elementwise ops and constants:
#   elementwise  one loop nest over the results' shape; operands broadcast into it
#   reduction    elementwise prologue, reductions over one set of axes, elementwise epilogue
#   gemm         a matmul first, then its epilogue (bias add, activation) on its result
#   conv         a conv2d first, the max_pool2d of its result (which nothing else reads),
#                then an epilogue on the pooled result: the convolution's output is made a
#                few images at a time and pooled while in cache, never stored whole
KINDS = ("elementwise", "reduction", "gemm", "conv")
# kind -> the ops a body of that kind starts with, in order, each reading the one before
HEADS = {"gemm": ("matmul",), "conv": ("conv2d", "max_pool2d")}


def _allowed(op: str, kind: str) -> bool:
    opdef = OPS.get(op)
    if opdef is None or opdef.has_body:
        return False
    if op == "constant" or "elementwise" in opdef.tags:
        return True
    return kind == "reduction" and "reduction" in opdef.tags


def _fused_rule(types: Sequence[TensorType], attrs: Any, body: Graph | None) -> list[TensorType]:
    """fused(operands...) {kind}: runs its body on the operands; results are the body's.

    The body takes one input per operand, of the operand's type, has no state and at least
    one output. `kind` says how a backend generates the kernel and limits the body's ops.
    """
    kind = attrs["kind"]
    if kind not in KINDS:
        fail(f"expected kind among {list(KINDS)}. Received: kind={kind!r}")
    if not isinstance(body, Graph):
        fail(f"expected a body graph. Received: body={body!r}")
    if body.state or body.updates:
        fail(f"expected a body without state. Received: @{body.name} with state "
             f"{', '.join(str(v) for v in body.state)}")
    if len(body.inputs) != len(types):
        fail(f"expected a body with {len(types)} inputs (one per operand). "
             f"Received: @{body.name} with {len(body.inputs)}")
    for k, (v, t) in enumerate(zip(body.inputs, types, strict=True)):
        if v.type != t:
            fail(f"expected body input %{v.name} to have the type of operand {k}, {t}. "
                 f"Received: %{v.name}: {v.type}")
    if not body.outputs:
        fail(f"expected a body with at least one output. Received: @{body.name} with none")
    ops = [n.op for n in body.nodes]
    head = HEADS.get(kind, ())
    if head:
        _check_head(body, kind, head)
        ops = ops[len(head):]
    bad = [op for op in ops if not _allowed(op, kind)]
    if bad:
        fail(f"expected a {kind} body of elementwise ops and constants"
             f"{' and reductions' if kind == 'reduction' else ''}. "
             f"Received: @{body.name} with {bad[0]}")
    if kind == "reduction" and not any("reduction" in OPS[op].tags for op in ops):
        fail(f"expected a reduction body to hold a reduction. Received: @{body.name} with "
             f"ops {ops}")
    return [v.type for v in body.output_values]


def _check_head(body: Graph, kind: str, head: tuple[str, ...]) -> None:
    """The body starts with the kind's head ops, each (but the first) reading the one before,
    whose results but the last nothing else reads."""
    ops = [n.op for n in body.nodes]
    names = " then ".join(head)
    if tuple(ops[:len(head)]) != head or any(op in head for op in ops[len(head):]):
        fail(f"expected a {kind} body to start with its one {names}. Received: "
             f"@{body.name} with ops {ops}")
    nodes = body.nodes[:len(head)]
    for before, after in zip(nodes, nodes[1:]):
        inner = before.output
        readers = [n for n in body.nodes if inner in n.inputs]
        if (after.inputs[0] != inner or readers != [after]
                or inner in body.output_values):
            fail(f"expected the {after.op} of a {kind} body to be the only reader of "
                 f"%{inner.name}. Received: @{body.name}")


def _fused_reference(ctx: Any, *arrays: np.ndarray, kind: str) -> tuple:
    return tuple(ctx.run_graph(ctx.node.body, list(arrays)))


# No VJP: fusion runs after autodiff (the training step is differentiated before any pass),
# so a fused graph is never differentiated; grad would treat the results as constants.
define("fused", family="fused", inputs=("operands*",), infer=_fused_rule,
       reference=_fused_reference, differentiable=False, has_body=True,
       attrs={"kind": REQUIRED}, tags=("fused",))
