"""Buffer planning: liveness-based reuse of the buffers of intermediate values, and in-place
state updates, recorded in the graph's attributes so that every backend allocates the same
arena instead of one array per value.

The plan, in graph attributes (they print after the signature and parse back):

    buffers.assumed      [[symbol, size], ...]: the sizes the byte counts assume (N=128
                         unless given); the slot assignment holds for every size
    buffers.slots        [[value, ...], ...]: the values each slot holds, in node order
    buffers.slot_bytes   [bytes, ...]: each slot's size, the largest value it holds
    buffers.in_place     [[state, value], ...]: updates written into the state's own buffer
    buffers.peak_bytes   the planned arena: the sum of slot_bytes
    buffers.total_bytes  every node output in a buffer of its own (no reuse, no in-place)

`read_buffer_plan(graph)` reads it back as a BufferPlan. Symbolic dimensions: byte counts
assume a size for each symbol (128 unless `sizes` says otherwise), recorded with the plan;
the slot assignment holds for any size, and `BufferPlan.slot_bytes_at` gives the slot sizes
for the batch at hand. Slots are raw bytes: values of any dtype share them, and a backend
lays them out at whatever alignment it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from kiln.compiler.passes import note, register
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.registry import OPS
from kiln.ir.types import TensorType, numpy_dtype

DEFAULT_SYMBOL_SIZE = 128  # the batch size assumed for byte counts when none is given
PREFIX = "buffers."


@dataclass(frozen=True)
class BufferPlan:
    """A buffer plan as recorded in a graph (see the module docstring for each field)."""

    assumed: tuple[tuple[str, int], ...]
    slots: tuple[tuple[str, ...], ...]
    slot_bytes: tuple[int, ...]
    in_place: tuple[tuple[str, str], ...]
    peak_bytes: int
    total_bytes: int

    def slot_of(self, value: str) -> int | None:
        """The slot of a value; None for values the plan does not place (inputs, state,
        in-place updates, which live in their state's buffer)."""
        for k, names in enumerate(self.slots):
            if value in names:
                return k
        return None

    def slot_bytes_at(self, graph: Graph, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """Each slot's size in bytes once the symbols have the given sizes (a real batch)."""
        types = {v.name: v.type for v in graph.values()}
        return tuple(max((value_bytes(types[n], sizes) for n in names), default=0)
                     for names in self.slots)


def value_bytes(t: TensorType, sizes: Mapping[str, int]) -> int:
    """The bytes of a value of type `t` with its symbols at `sizes`."""
    return math.prod(t.resolve(dict(sizes))) * numpy_dtype(t.dtype).itemsize


# -- liveness ---------------------------------------------------------------------------------
def live_ranges(graph: Graph) -> dict[str, tuple[int, int]]:
    """For each node output: (index of the node defining it, index of the last node reading
    it), len(graph.nodes) when an output or update reads it; a value nobody reads lives at
    its definition only. Both ends are inclusive: a node's outputs are live while it reads
    its inputs."""
    end = len(graph.nodes)
    ranges = {o.name: (i, i) for i, node in enumerate(graph.nodes) for o in node.outputs}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v.name in ranges:
                ranges[v.name] = (ranges[v.name][0], i)
    for v in (*graph.output_values, *(u for _, u in graph.updates)):
        if v.name in ranges:
            ranges[v.name] = (ranges[v.name][0], end)
    return ranges


def _views_extend(graph: Graph, ranges: dict[str, tuple[int, int]],
                  ) -> dict[str, tuple[int, int]]:
    """Live ranges where a node a backend may run as a view of its operand keeps the operand
    alive as long as itself, so the operand's buffer stays intact until the view's last
    reader: a reshape, expand_dims or squeeze (the same elements in the same order; a
    Flatten's reshape was a copy of the pooled image) and a transpose of the last two axes
    (BLAS's transpose flag for each matrix)."""
    extended = dict(ranges)
    for node in reversed(graph.nodes):  # a chain of views: the last one's end first
        source = node.inputs[0].name if node.inputs else None
        if source in ranges and _is_view(node):
            start, end = extended[source]
            extended[source] = (start, max(end, extended[node.output.name][1]))
    return extended


def _is_view(node: Node) -> bool:
    if node.op in ("reshape", "expand_dims", "squeeze"):
        return True
    if node.op != "transpose":
        return False
    rank = node.inputs[0].type.rank
    perm = node.attr["perm"]
    perm = tuple(range(rank - 1, -1, -1)) if perm is None else tuple(perm)
    return rank >= 2 and perm == (*range(rank - 2), rank - 1, rank - 2)


def _overwritable(node: Node, operand: str) -> bool:
    """Whether the node's result may overwrite `operand`, an operand of the result's type:
    the node reads each element of it only in computing the same element of its results.

    True for elementwise ops, and for fused kernels unless the operand feeds an op of the
    body that reads it at other indices (the matmul of a gemm kernel, the conv2d of a conv
    kernel): an elementwise or reduction kernel reads an operand at an index before it
    writes its results at that index (the contract of the fused op for backends), and an
    epilogue writes element r only after the reduction of r has read everything.
    """
    if node.op != "fused":
        return "elementwise" in OPS[node.op].tags
    body = node.body
    assert body is not None
    inner = {b.name for v, b in zip(node.inputs, body.inputs, strict=True) if v.name == operand}
    return not any(_reads_across(n) and any(v.name in inner for v in n.inputs)
                   for n in body.nodes)


def _reads_across(node: Node) -> bool:
    """An op of a fused body that reads its operands at other indices than it writes
    (matmul, conv2d, pooling)."""
    tags = OPS[node.op].tags
    return "elementwise" not in tags and "reduction" not in tags and node.op != "constant"


def in_place_updates(graph: Graph) -> list[tuple[str, str]]:
    """(state, value) pairs whose update can be written into the state's buffer: the value
    is a node's output read by no output and no other update, and the old state is read by
    no node after the one computing the value (that node itself only if it works element
    by element, see _overwritable), nor by an output or another update."""
    defined = {o.name: i for i, node in enumerate(graph.nodes) for o in node.outputs}
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            readers.setdefault(v.name, []).append(i)
    at_end = [v.name for v in graph.output_values] + [u.name for _, u in graph.updates]
    pairs, taken = [], set()
    for state, value in graph.updates:
        i = defined.get(value.name)
        if i is None or value.name in taken or at_end.count(value.name) > 1 or state in at_end:
            continue
        if all(j < i or (j == i and _overwritable(graph.nodes[i], state))
               for j in readers.get(state, ())):
            pairs.append((state, value.name))
            taken.add(value.name)
    return pairs


# -- the pass ---------------------------------------------------------------------------------
def _assumed(graph: Graph, sizes: Mapping[str, int] | None) -> dict[str, int]:
    symbols = sorted({d for v in graph.values() for d in v.type.symbols})
    given = dict(sizes or {})
    return {s: int(given.get(s, DEFAULT_SYMBOL_SIZE)) for s in symbols}


def _assign_slots(graph: Graph, planned: list[Value], sizes: Mapping[str, int],
                  ) -> tuple[list[list[str]], list[int]]:
    """Linear scan in node order: a value takes the free slot that fits it best (the
    smallest one large enough, else the largest, which grows), or a new slot. A slot is free
    once the last reader of its value has run."""
    ranges = _views_extend(graph, live_ranges(graph))
    nbytes = {v.name: value_bytes(v.type, sizes) for v in planned}
    by_start: dict[int, list[str]] = {}
    for v in planned:
        by_start.setdefault(ranges[v.name][0], []).append(v.name)
    slots: list[list[str]] = []
    slot_bytes: list[int] = []
    busy: dict[int, int] = {}  # slot -> last index of its current value
    for i in range(len(graph.nodes)):
        free = sorted(k for k in range(len(slots)) if busy.get(k, -1) < i)
        for name in by_start.get(i, ()):
            need = nbytes[name]
            fits = [k for k in free if slot_bytes[k] >= need]
            if fits:
                k = min(fits, key=lambda s: (slot_bytes[s], s))
            elif free:
                k = max(free, key=lambda s: (slot_bytes[s], -s))
            else:
                k = len(slots)
                slots.append([])
                slot_bytes.append(0)
            if k in free:
                free.remove(k)
            slots[k].append(name)
            slot_bytes[k] = max(slot_bytes[k], need)
            busy[k] = ranges[name][1]
    return slots, slot_bytes


@register("plan_buffers")
def plan_buffers(graph: Graph, sizes: Mapping[str, int] | None = None) -> Graph:
    """Assign every node output a buffer slot, reusing slots of dead values; record the plan.

    Sound because two values share a slot only when their live ranges (definition to last
    read, both inclusive; a reshape, and a transpose of the last two axes, extends its
    operand's to its own, so a backend may read it as a view) do not overlap, and an update
    overwrites its state only when the old state is read by nothing later (see
    in_place_updates). Which values may share a slot depends on the graph alone, so the plan
    holds for every batch size; `sizes` (symbol -> size, default 128 for each symbol) sets
    the byte counts recorded and guides the best fit. Graph inputs and state are the
    caller's buffers and are not planned; nested bodies (scan steps, fused kernels) keep
    their values to themselves. Run it last: a pass that rebuilds the graph drops the plan.
    """
    assumed = _assumed(graph, sizes)
    in_place = in_place_updates(graph)
    in_state = {value for _, value in in_place}
    outputs = [o for node in graph.nodes for o in node.outputs]
    planned = [o for o in outputs if o.name not in in_state]
    slots, slot_bytes = _assign_slots(graph, planned, assumed)
    total = sum(value_bytes(o.type, assumed) for o in outputs)
    attrs = {k: v for k, v in graph.attrs if not k.startswith(PREFIX)}
    attrs.update({
        PREFIX + "assumed": tuple(assumed.items()),
        PREFIX + "slots": tuple(tuple(s) for s in slots),
        PREFIX + "slot_bytes": tuple(slot_bytes),
        PREFIX + "in_place": tuple(in_place),
        PREFIX + "peak_bytes": sum(slot_bytes),
        PREFIX + "total_bytes": total,
    })
    note("peak_bytes", sum(slot_bytes))
    note("no_reuse_bytes", total)
    note("assumed", ", ".join(f"{k}={v}" for k, v in assumed.items()) or "static shapes")
    planned_graph = graph.with_attrs(attrs)
    return graph if planned_graph == graph else planned_graph


def read_buffer_plan(graph: Graph) -> BufferPlan | None:
    """The buffer plan recorded in `graph`, or None when it has none.

    Raises KilnValueError when the plan does not fit the graph (a pass rewrote the graph
    after planning and kept the attributes): every node output must be placed exactly once.
    """
    attrs = graph.attr
    if PREFIX + "slots" not in attrs:
        return None
    try:
        plan = BufferPlan(
            assumed=tuple((str(s), int(n)) for s, n in attrs[PREFIX + "assumed"]),
            slots=tuple(tuple(str(n) for n in names) for names in attrs[PREFIX + "slots"]),
            slot_bytes=tuple(int(b) for b in attrs[PREFIX + "slot_bytes"]),
            in_place=tuple((str(s), str(v)) for s, v in attrs[PREFIX + "in_place"]),
            peak_bytes=int(attrs[PREFIX + "peak_bytes"]),
            total_bytes=int(attrs[PREFIX + "total_bytes"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise KilnValueError(f"@{graph.name}: a malformed buffer plan ({err!r})") from None
    placed = [n for names in plan.slots for n in names] + [v for _, v in plan.in_place]
    outputs = [o.name for node in graph.nodes for o in node.outputs]
    if sorted(placed) != sorted(outputs) or len(plan.slot_bytes) != len(plan.slots):
        missing = sorted(set(outputs) - set(placed))
        extra = sorted(set(placed) - set(outputs))
        raise KilnValueError(
            f"@{graph.name}: expected a buffer plan placing every node output once. "
            f"Received: a plan missing {missing[:3]} and placing {extra[:3]} (was the graph "
            "rewritten after plan_buffers?)")
    return plan
