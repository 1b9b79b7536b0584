"""The driver of an entry point: one @njit function running the whole graph in one call.

    @njit(cache=True, error_model="numpy")
    def train_step(x, y, dense_kernel, ..., arena_f32, arena_i64, offsets, d_N):
        o0_f32 = offsets[0] // 4
        # %dense.add, %dense.relu = fused(...) {kind="gemm"} : f32[N,32], f32[N,32]
        np.dot(x[:d_N * 20].reshape((d_N, 20)), ..., arena_f32[o0_f32:...].reshape((d_N, 32)))
        for i in range(d_N):
            ...
        return (arena_f32[o11_f32:o11_f32 + 1].copy(), ...)

Arguments, all arrays flat (1-D): the inputs, every state array (updated in place), the
array constants, the arena seen in each dtype it holds, the byte offset of each arena slot
(computed by the runtime once per batch size, GeneratedDriver.slot_offsets), then the size
of each symbol. Outputs come back flat, copied out of the arena (which the next call
reuses); the runtime gives them their shapes. error_model="numpy" gives inf and nan where
Python would raise ZeroDivisionError, as NumPy does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiln.compiler.codegen.numba.frame import DTYPE_SHORT, Emitter, Frame, Ref, Root
from kiln.compiler.codegen.numba.source import ir_line, tuple_text
from kiln.compiler.passes.plan_buffers import (
    BufferPlan,
    plan_buffers,
    read_buffer_plan,
    value_bytes,
)
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph
from kiln.ir.types import TensorType

ALIGN = 64  # bytes between slots of the arena: a cache line


@dataclass(frozen=True)
class GeneratedDriver:
    """The source of one entry point's driver and what calling it needs.

    Attributes:
        graph: the graph generated (optimized, with its buffer plan).
        function: the driver's name in `source`.
        source: the function's source, without the module's imports (see module_source).
        constants: arrays passed after the state, in order.
        arena_dtypes: the dtypes in which the arena is passed, in order.
        symbols: the symbols whose sizes are passed last, in order.
        slots: per arena slot, the types of the values it holds.
        uses_kernels: whether the source calls the kernel library (K).
    """

    graph: Graph
    function: str
    source: str
    constants: tuple[np.ndarray, ...]
    arena_dtypes: tuple[str, ...]
    symbols: tuple[str, ...]
    slots: tuple[tuple[TensorType, ...], ...]
    uses_kernels: bool

    def slot_offsets(self, dims: dict[str, int]) -> tuple[np.ndarray, int]:
        """Each slot's byte offset with the symbols at `dims`, and the arena's size."""
        offsets, total = [], 0
        for types in self.slots:
            offsets.append(total)
            size = max((value_bytes(t, dims) for t in types), default=0)
            total += -(-size // ALIGN) * ALIGN
        return np.array(offsets, np.int64), max(total, ALIGN)


def emit_nodes(em: Emitter, frame: Frame, timer: str | None = None) -> None:
    """Every node of the frame's graph, each after its IR line. With `timer` (a timed
    driver's "clock, ticks" arguments), the clock is read after each node i into tick
    i + 1."""
    from kiln.compiler.codegen.numba import LOWERINGS

    for i, node in enumerate(frame.graph.nodes):
        frame.index = i
        if node.op not in LOWERINGS:
            raise KilnValueError(f"numba backend: no lowering for op {node.op!r} "
                                 f"({ir_line(node)})")
        em.w.comment(ir_line(node))
        LOWERINGS[node.op](em, frame, node)
        if timer is not None:
            em.w.line(f"K.tick({timer}, {i + 1})")


def generate_driver(graph: Graph, timed: bool = False) -> GeneratedDriver:
    """The driver of `graph` (optimized, with its buffer plan; planned here if it has none).

    timed: a driver for profiles: its last constant is a clock buffer of 2 (len(graph.nodes)
    + 2) int64, where tick 0 is read before the first node, tick i + 1 after node i, and the
    last tick after the outputs and state updates; right after it comes an argument `clock`,
    the ctypes function kernels.clock.GETTIME.

    Generated twice: the buffer plan does not know which values become views, so the first
    generation assumes every value writes its slot; the second knows that the first's
    views never do, which lets more values be views (a transpose that a later view shares
    a slot with, say). The second is kept only if its views include the first's (it
    assumed those never write)."""
    plan = read_buffer_plan(graph)
    if plan is None:
        graph = plan_buffers(graph)
        plan = read_buffer_plan(graph)
        assert plan is not None
    driver, views = _generate(graph, plan, frozenset(), timed)
    if views:
        second, more = _generate(graph, plan, frozenset(views), timed)
        if more >= views:  # else a value the second assumed a view wrote its slot
            driver = second
    return driver


def _generate(graph: Graph, plan: BufferPlan, views: frozenset[str], timed: bool,
              ) -> tuple[GeneratedDriver, set[str]]:
    em = Emitter()
    function = em.fresh(graph.name)
    em.w.level = 1
    for v in (*graph.inputs, *graph.state):
        for d in v.type.symbols:
            if d not in em.dims:
                em.dims[d] = em.fresh(f"d_{d}")
    bound: dict[str, tuple[Ref, Root]] = {}
    args = []
    for v in graph.inputs:
        args.append(em.fresh(v.name))
        bound[v.name] = (em.ref(args[-1], v.type), ("arg", v.name))
    for v in graph.state:
        args.append(em.fresh(v.name))
        bound[v.name] = (em.ref(args[-1], v.type), ("state", v.name))
    frame = Frame.top(em, graph, plan, bound, views)
    clock, ticks = (em.names.fresh("clock"), em.names.fresh("ticks")) if timed else ("", "")
    timer = f"{clock}, {ticks}" if timed else None
    if timer is not None:
        em.w.line(f"K.tick({timer}, 0)")
    emit_nodes(em, frame, timer)
    results = []
    if graph.outputs:
        em.w.comment("outputs: copies, since the arena is reused by the next call")
    for name, v in graph.outputs:
        results.append(em.fresh(f"out_{name}"))
        em.w.line(f"{results[-1]} = {frame.read(v).span()}.copy()")
    _write_updates(em, frame, graph)
    if timer is not None:  # the clock buffer: the last constant, added after every other
        em.w.line(f"K.tick({timer}, {len(graph.nodes) + 1})")
        em.constants.append(np.zeros(2 * (len(graph.nodes) + 2), np.int64))
        em.constant_names.append(ticks)
    em.w.line(f"return {tuple_text(results) if results else '()'}")
    arena_dtypes = tuple(sorted(em.arena_dtypes))
    params = [*args, *em.constant_names, *([clock] if timed else []),
              *(f"arena_{DTYPE_SHORT[d]}" for d in arena_dtypes), "offsets", *em.dims.values()]
    head = [
        f"# @{graph.name}: {len(graph.nodes)} nodes, {len(em.slots)} arena slots",
        '@njit(cache=True, error_model="numpy")',
        f"def {function}({', '.join(params)}):",
        *(f"    {line}" for line in em.offset_lines()),
        *em.checks.lines,
    ]
    source = "\n".join(head) + "\n" + em.w.text()
    # Scalar expressions may call the library's float32 math (K.exp32, ...) too.
    uses_kernels = em.uses_kernels or "K." in source
    return GeneratedDriver(graph, function, source, tuple(em.constants), arena_dtypes,
                           tuple(em.dims), tuple(tuple(s) for s in em.slots),
                           uses_kernels), frame.views


def _write_updates(em: Emitter, frame: Frame, graph: Graph) -> None:
    """Updates not written in place: copied into their state arrays, after a snapshot of
    any that reads a state, so that one update cannot clobber another's source."""
    pending = [(name, v) for name, v in graph.updates if v.name not in frame.in_place]
    if not pending:
        return
    em.w.comment("state updates not written in place")
    sources = []
    for _, v in pending:
        src = frame.read(v)
        if frame.root(v)[0] == "state":
            snapshot = em.slot_ref(em.new_slot(v.type), v.type)
            em.copy(snapshot, src)
            src = snapshot
        sources.append(src)
    state = {v.name: v for v in graph.state}
    for (name, _), src in zip(pending, sources, strict=True):
        em.copy(frame.read(state[name]), src)


def module_source(drivers: list[GeneratedDriver], header: str) -> str:
    """A module holding the drivers, with the imports they need."""
    parts = [f'"""{header}"""', "", "import numpy as np", "from numba import njit", ""]
    if any(d.uses_kernels for d in drivers):
        parts.insert(4, "from kiln.runtimes.numba import kernels as K")
    for d in drivers:
        parts += ["", d.source]
    return "\n".join(parts)
