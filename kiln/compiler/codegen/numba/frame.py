"""Where each value lives while a generated driver runs, and the state of its generation.

Every array reaches the driver flat (1-D): inputs, state and constants as `a.reshape(-1)`,
and the arena as one 1-D array per dtype. A value is a `Ref`: a base array, an element
offset into it and a row-major shape, so an element is `base[offset + i * 32 + j]`. The
driver creates no array views (Numba's compile time grows faster than linearly with the
number of array variables in a function); kernels of the library get views made at their
call (`Ref.array`).

`Emitter` holds what the whole driver shares: the source being written, identifiers, the
symbols' sizes (arguments), the arena's slots and the constant arrays passed in as
arguments. A `Frame` is one graph level (the entry point, or a scan body inlined in its
loop): it maps each value to its Ref and decides where a node's results go:

- the entry point's values go to the slots of its buffer plan (plan_buffers); updates the
  plan writes in place go straight into the state array;
- a scan body's values each get a slot of their own, appended after the plan's;
- reshape, expand_dims and squeeze are the operand's Ref with another shape when nothing
  writes the operand's storage while the result is alive (the plan does not know that
  views exist, so this is checked here: writes to a slot are the definitions of the values
  the plan puts there, writes to a state its in-place update); otherwise they copy.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kiln.compiler.codegen.numba.source import Namer, SourceWriter, group, product_text, tuple_text
from kiln.compiler.passes.plan_buffers import BufferPlan, live_ranges
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import ArrayAttr, Graph, Value
from kiln.ir.types import Dim, TensorType, numpy_dtype

# A value's storage: ("slot", k) of the arena, ("state", name) of a state array,
# ("carry", k) of a scan's carry, or ("arg", name) for arrays a frame only reads.
Root = tuple[str, object]

DTYPE_SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b"}
RESERVED = (*keyword.kwlist, *dir(builtins), "np", "K", "njit", "offsets",
            *(f"arena_{short}" for short in DTYPE_SHORT.values()))


@dataclass(frozen=True)
class Ref:
    """A row-major array stored in `base` (a 1-D array) from element `offset` on.

    `transposed`: a matrix whose storage is its transpose, row-major, or a batch of such
    matrices stored one after another (a transpose of the last two axes that only matmuls
    read: BLAS takes it as a flag). Such a Ref is only ever used through `array`, a batch
    one matrix at a time.
    """

    base: str
    offset: str
    shape: tuple[Dim, ...]  # the IR's dimensions (ints, symbols)
    dims: tuple[str, ...]  # the same as source expressions
    dtype: str
    transposed: bool = False
    # Element strides when not row-major (a split's part seen in place: its rows are the
    # source's). Such a Ref is only read element by element, through `at` and `element`.
    strided: tuple[str, ...] | None = None

    def with_shape(self, shape: Sequence[Dim], dims: Sequence[str]) -> Ref:
        assert not self.transposed and self.strided is None
        return Ref(self.base, self.offset, tuple(shape), tuple(dims), self.dtype)

    def strides(self) -> list[str]:
        if self.strided is not None:
            return list(self.strided)
        return [product_text(list(self.dims[k + 1:])) for k in range(len(self.dims))]

    def element(self, position: str) -> str:
        """The element at `position`, an offset computed from `strides()`."""
        assert not self.transposed
        position = plus(self.offset, position)
        return f"{self.base}[{position if position.isdigit() else f'np.uint64({position})'}]"

    def flat(self, index: str) -> str:
        """The element at flat (row-major) position `index`. The position is cast to an
        unsigned integer: a signed one makes Numba wrap negative indices, a select per
        access that hides the affine address from LLVM, so no loop over the arena (where
        every value shares one base array) vectorized."""
        assert self.strided is None
        return self.element(index)

    def position(self, index: Sequence[str]) -> str:
        """The flat (row-major) position of a multi-dimensional index ("0" allowed)."""
        terms = []
        for i, stride in zip(index, self.strides(), strict=True):
            if i == "0" or stride == "0":
                continue
            terms.append(i if stride == "1" else f"{group(i)} * {group(stride)}")
        return " + ".join(terms) if terms else "0"

    def at(self, index: Sequence[str]) -> str:
        """The element at a multi-dimensional index."""
        return self.element(self.position(index))

    def size(self) -> str:
        return product_text(list(self.dims))

    def span(self) -> str:
        """A 1-D view of the elements."""
        assert self.strided is None
        if self.offset == "0":
            return f"{self.base}[:{self.size()}]"
        return f"{self.base}[{self.offset}:{plus(self.offset, self.size())}]"

    def array(self) -> str:
        """An array view of the shape (for kernel calls)."""
        if self.transposed:
            rows, cols = self.dims
            return f"{self.span()}.reshape(({cols}, {rows})).T"
        return f"{self.span()}.reshape({tuple_text(list(self.dims)) if self.dims else '()'})"


def plus(a: str, b: str) -> str:
    if a == "0":
        return b
    if b == "0":
        return a
    return f"{a} + {b}"


class Emitter:
    """What one driver function shares across its frames."""

    def __init__(self) -> None:
        self.w = SourceWriter()
        self.names = Namer(RESERVED)
        self.dims: dict[str, str] = {}  # symbol -> the argument holding its size
        self.slots: list[list[TensorType]] = []  # arena slot -> the types it holds
        self.constants: list[np.ndarray] = []  # array constants, passed after the state
        self.constant_names: list[str] = []
        self.arena_dtypes: set[str] = set()  # dtypes whose arena view the driver takes
        self.slot_offsets: dict[tuple[int, str], str] = {}  # (slot, dtype) -> variable
        self.uses_kernels = False
        self.opaque_extents: dict[int, str] = {}  # loops.opaque_extent's constant arguments
        # Checks of the inputs, run before any node so that a bad input changes no state.
        self.checks = SourceWriter()
        self.checks.level = 1
        self.checked: set[tuple[str, str]] = set()

    # -- dimensions ----------------------------------------------------------------------
    def dim(self, d: Dim) -> str:
        if isinstance(d, int):
            return str(d)
        if d not in self.dims:
            raise KilnValueError(f"numba codegen: expected every symbol to be bound by an "
                                 f"input or state shape. Received: an unbound symbol {d!r}")
        return self.dims[d]

    def dims_of(self, t: TensorType | Sequence[Dim]) -> list[str]:
        shape = t.shape if isinstance(t, TensorType) else t
        return [self.dim(d) for d in shape]

    def shape(self, t: TensorType | Sequence[Dim]) -> str:
        dims = self.dims_of(t)
        return tuple_text(dims) if dims else "()"

    def size(self, t: TensorType | Sequence[Dim]) -> str:
        return product_text(self.dims_of(t))

    # -- storage -------------------------------------------------------------------------
    def ref(self, base: str, t: TensorType, offset: str = "0") -> Ref:
        return Ref(base, offset, t.shape, tuple(self.dims_of(t)), t.dtype)

    def new_slot(self, t: TensorType) -> int:
        self.slots.append([t])
        return len(self.slots) - 1

    def slot_ref(self, k: int, t: TensorType) -> Ref:
        """A value of type t in arena slot k: the arena in t's dtype from the slot's start
        (the offsets are computed at the top of the driver)."""
        self.arena_dtypes.add(t.dtype)
        key = (k, t.dtype)
        if key not in self.slot_offsets:
            self.slot_offsets[key] = self.fresh(f"o{k}_{DTYPE_SHORT[t.dtype]}")
        return self.ref(f"arena_{DTYPE_SHORT[t.dtype]}", t, self.slot_offsets[key])

    def offset_lines(self) -> list[str]:
        lines = []
        for (k, dtype), name in sorted(self.slot_offsets.items()):
            itemsize = numpy_dtype(dtype).itemsize
            lines.append(f"{name} = offsets[{k}]" + (f" // {itemsize}" if itemsize > 1 else ""))
        return lines

    def constant(self, value: ArrayAttr, hint: str) -> str:
        """The argument name of an array constant (constants travel as arguments)."""
        for k, known in enumerate(self.constants):
            if known is value.array:
                return self.constant_names[k]
        self.constants.append(value.array)
        self.constant_names.append(self.names.fresh(f"const_{hint}"))
        return self.constant_names[-1]

    def fresh(self, hint: str) -> str:
        return self.names.fresh(hint)

    def copy(self, dst: Ref, src: Ref) -> None:
        """dst = src, element by element in row-major order (same size)."""
        i = self.fresh("i")
        with self.w.loops([i], [dst.size()]):
            self.w.line(f"{dst.flat(i)} = {src.flat(i)}")


class Frame:
    """One graph level being generated: value -> Ref, and storage decisions."""

    def __init__(self, em: Emitter, graph: Graph, bound: dict[str, tuple[Ref, Root]],
                 slot_of: dict[str, int], in_place: dict[str, tuple[Ref, Root]],
                 writes: dict[Root, list[int]]):
        self.em = em
        self.graph = graph
        self.refs = {name: ref for name, (ref, _) in bound.items()}
        self.roots: dict[str, Root] = {name: root for name, (_, root) in bound.items()}
        self.slot_of = slot_of
        self.in_place = in_place
        self.writes = writes
        self.ranges = live_ranges(graph)
        self.index = -1  # the node being generated
        self.views: set[str] = set()  # values bound to storage other than their own slot
        self.is_top = False  # the entry point's own level (not a nested body)

    @staticmethod
    def top(em: Emitter, graph: Graph, plan: BufferPlan, bound: dict[str, tuple[Ref, Root]],
            views: frozenset[str] = frozenset()) -> Frame:
        """The entry point's frame. `views`: values known to become views (found by a
        first generation), whose slots are therefore never written by their definition."""
        types = {v.name: v.type for v in graph.values()}
        defined = {o.name: i for i, node in enumerate(graph.nodes) for o in node.outputs}
        slot_of: dict[str, int] = {}
        writes: dict[Root, list[int]] = {}
        base = len(em.slots)
        for k, names in enumerate(plan.slots):
            em.slots.append([types[n] for n in names])
            for n in names:
                slot_of[n] = base + k
                if n not in views:
                    writes.setdefault(("slot", base + k), []).append(defined[n])
        in_place = {}
        for state, value in plan.in_place:
            root = ("state", state)
            ref = bound[state][0]
            in_place[value] = (ref, root)
            writes.setdefault(root, []).append(defined[value])
        frame = Frame(em, graph, bound, slot_of, in_place, writes)
        frame.is_top = True
        return frame

    def is_input(self, v: Value) -> bool:
        """Whether v is an input of the entry point (known before any node runs)."""
        return self.is_top and any(v.name == i.name for i in self.graph.inputs)

    @staticmethod
    def body(em: Emitter, graph: Graph, bound: dict[str, tuple[Ref, Root]]) -> Frame:
        """A nested body: every node output in a slot of its own."""
        slot_of: dict[str, int] = {}
        writes: dict[Root, list[int]] = {}
        for i, node in enumerate(graph.nodes):
            for o in node.outputs:
                slot_of[o.name] = em.new_slot(o.type)
                writes[("slot", slot_of[o.name])] = [i]
        return Frame(em, graph, bound, slot_of, {}, writes)

    # -- reading and defining values ------------------------------------------------------
    def read(self, v: Value) -> Ref:
        return self.refs[v.name]

    def root(self, v: Value) -> Root:
        return self.roots[v.name]

    def bind(self, v: Value, ref: Ref, root: Root) -> None:
        self.refs[v.name], self.roots[v.name] = ref, root

    def bind_view(self, v: Value, ref: Ref, root: Root) -> None:
        """v is another value's storage (or an argument): its own slot is never written."""
        self.bind(v, ref, root)
        self.views.add(v.name)

    def output(self, v: Value) -> Ref:
        """Where a node writes its result v."""
        if v.name in self.in_place:
            ref, root = self.in_place[v.name]
        else:
            k = self.slot_of[v.name]
            ref, root = self.em.slot_ref(k, v.type), ("slot", k)
        self.bind(v, ref, root)
        return ref

    def view_or_copy(self, v: Value, source: Value) -> None:
        """v holds source's elements in the same order: source's storage seen with v's
        shape when that stays valid, else a copy."""
        src = self.read(source)
        if self.view_is_safe(v, source):
            self.bind_view(v, src.with_shape(v.type.shape, self.em.dims_of(v.type)),
                           self.root(source))
        else:
            self.em.copy(self.output(v), src)

    def view_is_safe(self, v: Value, source: Value) -> bool:
        if v.name in self.in_place:
            return False
        start, end = self.index, self.ranges[v.name][1]
        return not any(start < i <= end for i in self.writes.get(self.root(source), ()))

    def aliases(self, results: Sequence[Value], operands: Sequence[Value]) -> bool:
        """Whether a result's storage is an operand's (an in-place update of a state the
        node also reads)."""
        roots = {self.roots[v.name] for v in operands}
        return any(self.roots[v.name] in roots for v in results)
