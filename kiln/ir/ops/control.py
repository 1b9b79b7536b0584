"""Control flow: `scan`, a loop over the leading axis of sequences with a body graph, the
basis of recurrent layers. Its gradient is a reverse scan over residuals the forward saves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.autodiff import backprop, remove_dead_nodes
from kiln.ir.builder import GraphBuilder
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import REQUIRED, define, fail
from kiln.ir.types import TensorType, numpy_dtype


# -- type rule -----------------------------------------------------------------------------
def _split(items: Sequence[Any], num_carry: int, num_seq: int) -> tuple:
    """(carries, sequences, constants) of a scan's operands or body inputs."""
    return (items[:num_carry], items[num_carry:num_carry + num_seq],
            items[num_carry + num_seq:])


def _scan_rule(types: Sequence[TensorType], attrs: Any, body: Graph | None) -> list[TensorType]:
    """scan(carry..., sequence..., constant...) {num_carry, num_seq, reverse}.

    The body maps (carry..., one slice of each sequence..., constant...) to (new carry...,
    y...). Results: the final carries, then each y stacked along a new leading axis of the
    sequences' length T. reverse=True walks the sequences from the end; ys still sit at their
    time index (like jax.lax.scan(reverse=True)).
    """
    num_carry, num_seq, reverse = attrs["num_carry"], attrs["num_seq"], attrs["reverse"]
    if not isinstance(num_carry, int) or isinstance(num_carry, bool) or num_carry < 0:
        fail(f"expected an int num_carry >= 0. Received: num_carry={num_carry!r}")
    if not isinstance(num_seq, int) or isinstance(num_seq, bool) or num_seq < 1:
        fail(f"expected an int num_seq >= 1 (the sequences set the length). "
             f"Received: num_seq={num_seq!r}")
    if not isinstance(reverse, bool):
        fail(f"expected a bool reverse. Received: reverse={reverse!r}")
    if len(types) < num_carry + num_seq:
        fail(f"expected at least num_carry + num_seq = {num_carry + num_seq} operands. "
             f"Received: {len(types)}")
    if not isinstance(body, Graph):
        fail(f"expected a body graph. Received: body={body!r}")
    if body.state or body.updates:
        fail(f"expected a body without state. Received: @{body.name} with state "
             f"{', '.join(str(v) for v in body.state)}")
    carries, seqs, consts = _split(types, num_carry, num_seq)
    for i, s in enumerate(seqs):
        if s.rank == 0:
            fail(f"expected sequences of rank >= 1. Received: sequence {i} "
                 f"(operand {num_carry + i}): {s}")
    length = seqs[0].shape[0]
    for i, s in enumerate(seqs[1:], 1):
        if s.shape[0] != length:
            fail(f"expected sequences of one length {length}. Received: sequence {i} "
                 f"(operand {num_carry + i}): {s}")
    if len(body.inputs) != len(types):
        fail(f"expected a body with {len(types)} inputs (one per operand). "
             f"Received: @{body.name} with {len(body.inputs)}")
    expected = [*carries, *(s.with_shape(s.shape[1:]) for s in seqs), *consts]
    roles = ([f"carry {i}" for i in range(num_carry)]
             + [f"a slice of sequence {i}" for i in range(num_seq)]
             + [f"constant {i}" for i in range(len(consts))])
    for k, (v, t, role) in enumerate(zip(body.inputs, expected, roles, strict=True)):
        if v.type != t:
            fail(f"expected body input %{v.name} to have the type of {role} (operand {k}), "
                 f"{t}. Received: %{v.name}: {v.type}")
    if len(body.outputs) < num_carry:
        fail(f"expected a body with at least {num_carry} outputs (the new carries). "
             f"Received: @{body.name} with {len(body.outputs)}")
    outs = body.output_values
    for i, (v, t) in enumerate(zip(outs, carries, strict=False)):
        if v.type != t:
            fail(f"expected body output {body.outputs[i][0]} (new carry {i}) to have the "
                 f"carry's type {t}. Received: %{v.name}: {v.type}")
    return [*carries, *(TensorType((length, *v.type.shape), v.type.dtype)
                        for v in outs[num_carry:])]


# -- reference -----------------------------------------------------------------------------
def _scan_reference(ctx: Any, *arrays: np.ndarray, num_carry: int, num_seq: int,
                    reverse: bool) -> tuple:
    node = ctx.node
    carries, seqs, consts = _split(arrays, num_carry, num_seq)
    ys = [np.zeros(shape, numpy_dtype(out.type.dtype))
          for out, shape in zip(node.outputs[num_carry:], ctx.out_shapes[num_carry:], strict=True)]
    carry = [np.array(c) for c in carries]
    length = seqs[0].shape[0]
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        outs = ctx.run_graph(node.body, [*carry, *(s[t] for s in seqs), *consts])
        carry = [np.array(c) for c in outs[:num_carry]]
        for y, out in zip(ys, outs[num_carry:], strict=True):
            y[t] = out
    return (*carry, *ys)


# -- gradient ------------------------------------------------------------------------------
def _unique(hint: str, used: set[str]) -> str:
    name, k = hint, 1
    while name in used:
        name = f"{hint}.{k}"
        k += 1
    used.add(name)
    return name


# Elementwise ops whose VJP reads only their output: the forward scan stacks their results,
# so the backward step needs neither them nor what fed them recomputed.
SAVED_ACTIVATIONS = frozenset({"sigmoid", "tanh"})
# Ops whose VJPs read none of their operands' or results' values.
_NO_VALUES_VJP = frozenset({"add", "sub", "neg", "split"})


def _saved_values(body: Graph, num_carry: int) -> list[Value]:
    """The body values the forward scan stacks for its VJP besides the carries.

    - Each sigmoid and tanh result (a recurrent cell's gates and its tanh of the cell
      state): their VJPs read only these, so the backward step runs no exp.
    - Each matmul's result, or the sum a lone add makes of it (a cell's gate
      pre-activations), so the backward step does not recompute the step's GEMM; unless
      every path from it through ops whose VJPs read no values (add, sub, neg, split) ends
      at such an activation, whose saved result is then all the backward step needs. The
      VJPs of matmul, add and split need only their operands, which the backward step has.

    (Outputs do not enter the choice: the augmented body, which has more, gives the same
    list.) None without carries: such a scan is not augmented."""
    if not num_carry:
        return []
    readers: dict[str, list[Node]] = {}
    for n in body.nodes:
        for v in n.inputs:
            readers.setdefault(v.name, []).append(n)

    def feeds_activations_only(value: Value) -> bool:
        pending = [value]
        while pending:
            for n in readers.get(pending.pop().name, []):
                if n.op in _NO_VALUES_VJP:
                    pending.extend(n.outputs)
                elif n.op not in SAVED_ACTIVATIONS:
                    return False
        return True

    saved: list[Value] = []
    for n in body.nodes:
        if n.op == "matmul" and n.output.type.is_float:
            value = n.output
            after = readers.get(value.name, [])
            if len(after) == 1 and after[0].op == "add":
                value = after[0].output
            if value not in saved and not feeds_activations_only(value):
                saved.append(value)
        elif n.op in SAVED_ACTIVATIONS and n.output.type.is_float and n.output not in saved:
            saved.append(n.output)
    return saved


def _augment(b: GraphBuilder, node: Node) -> Node:
    """The same scan, also returning stacked residuals: the values of `_saved_values`, then
    the carries entering each step (the body's outputs end with them, in that order).

    The VJP reads the last num_carry results as the carries and the saved values before
    them, so it does not recompute the forward pass's GEMMs.
    """
    num_carry = node.attr["num_carry"]
    if num_carry == 0:
        return node
    body = node.body
    assert body is not None
    used = set(body.output_names)
    saved = tuple((_unique(f"{v.name}.saved", used), v) for v in _saved_values(body, num_carry))
    extra = tuple((_unique(f"{v.name}.in", used), v) for v in body.inputs[:num_carry])
    new_body = Graph(body.name, body.inputs, body.state, body.nodes,
                     body.outputs + saved + extra, body.updates)
    length = node.inputs[num_carry].type.shape[0]
    stacked = tuple(Value(b.fresh_name(f"{node.outputs[0].name}.{name}"),
                          TensorType((length, *v.type.shape), v.type.dtype))
                    for name, v in saved)
    residuals = tuple(
        Value(b.fresh_name(f"{out.name}.in"), TensorType((length, *c.type.shape), c.type.dtype))
        for out, c in zip(node.outputs, node.inputs[:num_carry], strict=False))
    return Node(node.op, node.inputs, node.outputs + stacked + residuals, node.attrs, new_body)


def _zeros(b: GraphBuilder, t: TensorType) -> Value:
    return b.constant(0.0, t.dtype, shape=t.shape)


def _backward_body(body: Graph, num_carry: int, num_seq: int, carry_ids: list[int],
                   seq_ids: list[int], const_ids: list[int], y_ids: list[int],
                   saved: list[Value]) -> Graph:
    """One backward step: (carry cotangent..., constant accumulator..., carry in...,
    sequence slice..., y cotangent..., saved value..., constant...) -> (carry-in
    cotangent..., accumulator + constant cotangent..., sequence slice cotangent...).

    The ids pick the float carries, sequences and constants and the ys with a cotangent.
    `body` is the augmented one; the step recomputes the forward body and its VJPs, then the
    recomputed `saved` values are replaced by the stacked ones the forward scan returned (the
    nodes that computed them die, unless something else needs them).
    """
    carries, seqs, consts = _split(body.inputs, num_carry, num_seq)
    y_outs = body.outputs[num_carry:len(body.outputs) - num_carry - len(saved)]
    used = {v.name for v in body.inputs}
    bb = GraphBuilder(f"{body.name}.grad")
    g_carry = [bb.input(_unique(f"{carries[j].name}.grad", used), carries[j].type)
               for j in carry_ids]
    acc = [bb.input(_unique(f"{consts[i].name}.grad", used), consts[i].type)
           for i in const_ids]
    ins = [bb.input(v.name, v.type) for v in (*carries, *seqs)]
    g_y = [bb.input(_unique(f"{y_outs[i][0]}.grad", used), y_outs[i][1].type) for i in y_ids]
    given = [bb.input(_unique(f"{v.name}.saved", used), v.type) for v in saved]
    ins += [bb.input(v.name, v.type) for v in consts]
    outs, _ = bb.call(body, ins)
    values = list(outs.values())
    first_saved = len(body.outputs) - num_carry - len(saved)
    recomputed = values[first_saved:first_saved + len(saved)]
    seeds = [(values[j], g) for j, g in zip(carry_ids, g_carry, strict=True)]
    seeds += [(values[num_carry + i], g) for i, g in zip(y_ids, g_y, strict=True)]
    c_in, x_in, k_in = _split(ins, num_carry, num_seq)
    wrt = ([c_in[j] for j in carry_ids] + [x_in[i] for i in seq_ids]
           + [k_in[i] for i in const_ids])
    grads = backprop(bb, seeds, wrt)
    g_c, g_x, g_k = (grads[:len(carry_ids)], grads[len(carry_ids):len(carry_ids) + len(seq_ids)],
                     grads[len(carry_ids) + len(seq_ids):])
    names: set[str] = set()
    for j, g in zip(carry_ids, g_c, strict=True):
        bb.output(g if g is not None else _zeros(bb, carries[j].type),
                  _unique(f"{carries[j].name}.grad", names))
    for i, a, g in zip(const_ids, acc, g_k, strict=True):
        bb.output(bb.add(a, g) if g is not None else a, _unique(f"{consts[i].name}.grad", names))
    for i, g in zip(seq_ids, g_x, strict=True):
        bb.output(g if g is not None else _zeros(bb, seqs[i].type),
                  _unique(f"{seqs[i].name}.grad", names))
    return remove_dead_nodes(_substitute(bb.build(), {
        r.name: g for r, g in zip(recomputed, given, strict=True)}))


def _substitute(graph: Graph, values: dict[str, Value]) -> Graph:
    """`graph` with every read of the named values reading the given ones instead."""
    def swap(v: Value) -> Value:
        return values.get(v.name, v)

    nodes = tuple(Node(n.op, tuple(swap(v) for v in n.inputs), n.outputs, n.attrs, n.body)
                  for n in graph.nodes)
    return Graph(graph.name, graph.inputs, graph.state, nodes,
                 tuple((name, swap(v)) for name, v in graph.outputs),
                 tuple((name, swap(v)) for name, v in graph.updates))


def _scan_vjp(b: GraphBuilder, node: Node, cots: Sequence[Value | None]) -> list[Value | None]:
    """A scan the other way round over (residual carries, sequences, y cotangents); its
    carries are the carry cotangents and accumulators of the constants' cotangents."""
    num_carry, num_seq = node.attr["num_carry"], node.attr["num_seq"]
    body = node.body
    assert body is not None
    if num_carry and body.output_values[-num_carry:] != body.inputs[:num_carry]:
        raise AssertionError("scan's VJP expects the node that its augment returns")
    saved = _saved_values(body, num_carry)
    carries, seqs, consts = _split(node.inputs, num_carry, num_seq)
    n_out = len(node.outputs)
    residuals = node.outputs[n_out - num_carry:]
    stacked = node.outputs[n_out - num_carry - len(saved):n_out - num_carry]
    ys = node.outputs[num_carry:n_out - num_carry - len(saved)]
    carry_ids = [j for j, c in enumerate(carries) if c.type.is_float]
    seq_ids = [i for i, s in enumerate(seqs) if s.type.is_float]
    const_ids = [i for i, k in enumerate(consts) if k.type.is_float]
    y_ids = [i for i, y in enumerate(ys) if y.type.is_float and cots[num_carry + i] is not None]
    step = _backward_body(body, num_carry, num_seq, carry_ids, seq_ids, const_ids, y_ids, saved)
    init = [cots[j] if cots[j] is not None else _zeros(b, carries[j].type) for j in carry_ids]
    init += [_zeros(b, consts[i].type) for i in const_ids]
    scanned = [*residuals, *seqs, *(cots[num_carry + i] for i in y_ids), *stacked]
    result = b.op("scan", *init, *scanned, *consts, body=step, num_carry=len(init),
                  num_seq=len(scanned), reverse=not node.attr["reverse"])
    results = list(result) if isinstance(result, tuple) else [result]
    grads: list[Value | None] = [None] * len(node.inputs)
    n_c, n_k = len(carry_ids), len(const_ids)
    for j, g in zip(carry_ids, results[:n_c], strict=True):
        grads[j] = g
    for i, g in zip(const_ids, results[n_c:n_c + n_k], strict=True):
        grads[num_carry + num_seq + i] = g
    for i, g in zip(seq_ids, results[n_c + n_k:], strict=True):
        grads[num_carry + i] = g
    return grads


define("scan", family="control", inputs=("operands*",), infer=_scan_rule,
       reference=_scan_reference, vjp=_scan_vjp, augment=_augment, has_body=True,
       attrs={"num_carry": REQUIRED, "num_seq": REQUIRED, "reverse": False})

