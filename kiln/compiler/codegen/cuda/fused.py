"""CUDA kernels of fused regions: one @cuda.jit kernel per `fused` node of kind elementwise or
reduction (and per lone elementwise op or reduction, as a region of one node).

Elementwise: one thread per output element in a grid-stride loop; the axes every operand
spans or broadcasts over alike collapse, so the index arithmetic is a few divisions whatever
the rank. Reduction: one block per output element (grid-stride over blocks); its threads
stride over the reduced elements computing the prologue, then a tree in shared memory
combines their partial results and thread 0 runs the epilogue. Every statement follows the
IR line it computes, in a comment; array constants are kernel arguments, never literals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kiln.compiler.codegen.cuda.scalar import MATH_FUNCTIONS, SCALAR
from kiln.compiler.codegen.numba.source import Namer, SourceWriter, ir_line, typed
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import ArrayAttr, Graph, Node, Value
from kiln.ir.types import Dim, TensorType, broadcast_shapes, normalize_axes

REDUCTIONS = ("sum", "mean", "max", "min", "prod")
MAX_BLOCKS = 4096  # grid-stride loops cover the rest; enough blocks to fill any current GPU
NUMBA_TYPE = {"float32": "float32", "float64": "float64", "int32": "int32", "int64": "int64",
              "bool": "boolean"}


@dataclass(frozen=True)
class CudaKernel:
    """A generated kernel and what launching it needs.

    Arguments, in order: each result (flat 1-D C-contiguous), each operand, each array
    constant, then `scalars(dims)`. Elementwise kernels run `blocks(dims)` blocks of
    `threads`; reduction kernels one block of `threads` per output element, at most
    MAX_BLOCKS.
    """

    kind: str  # "elementwise" or "reduction"
    name: str  # the kernel's function name in its module
    source: str  # the module's source
    signature: str  # Numba signature (for cuda.compile_ptx)
    threads: int
    space: tuple[Dim, ...]  # elementwise: the results' shape; reduction: the reduced input's
    groups: tuple[tuple[int, ...], ...]  # elementwise: the collapsed axes of `space`
    axes: tuple[int, ...]  # reduction: the reduced axes of `space`
    constants: tuple[np.ndarray, ...]  # array constants, in argument order

    def sizes(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in self.space)

    def scalars(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The trailing size arguments for these symbol sizes."""
        sizes = self.sizes(dims)
        if self.kind == "elementwise":
            extents = [math.prod(sizes[a] for a in g) for g in self.groups]
            return (math.prod(extents), *extents)
        kept = [s for a, s in enumerate(sizes) if a not in self.axes]
        reduced = [sizes[a] for a in self.axes]
        return (math.prod(kept), math.prod(reduced), *sizes)

    def work(self, dims: Mapping[str, int]) -> int:
        """Elements (elementwise) or output elements (reduction) of one launch."""
        return self.scalars(dims)[0]

    def grid(self, dims: Mapping[str, int], max_blocks: int = MAX_BLOCKS) -> tuple[int, int]:
        """(blocks, threads) of one launch; 0 blocks when there is nothing to do."""
        work = self.work(dims)
        if self.kind == "elementwise":
            return min(max_blocks, -(-work // self.threads)), self.threads
        return min(max_blocks, work), self.threads


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _threads_for(count: Dim | None, max_threads: int) -> int:
    """A power of two: `max_threads` for a symbolic count, else just enough, at least a
    warp (or max_threads when that is smaller)."""
    floor = min(32, max_threads)
    if not isinstance(count, int):
        return max_threads
    return max(floor, min(max_threads, _pow2_at_least(count)))


def _numba_type(t: TensorType) -> str:
    return NUMBA_TYPE[t.dtype]


class _Body:
    """The body's values as Python names, its scalar constants as literals and its array
    constants as extra operands."""

    def __init__(self, body: Graph, namer: Namer):
        self.body = body
        self.namer = namer
        self.literals: dict[str, str] = {}
        self.arrays: list[tuple[Value, np.ndarray]] = []
        self.nodes: list[Node] = []
        for node in body.nodes:
            if node.op == "constant":
                value = node.attr["value"]
                if isinstance(value, ArrayAttr) and value.array.ndim:
                    self.arrays.append((node.output, np.ascontiguousarray(value.array)))
                else:
                    scalar = value.array.item() if isinstance(value, ArrayAttr) else value
                    self.literals[node.output.name] = typed(scalar, node.output.type.dtype)
                continue
            if node.op not in SCALAR and node.op not in REDUCTIONS:
                raise KilnValueError(f"CUDA codegen: expected elementwise ops, reductions and "
                                     f"constants in fused body @{body.name}. Received: "
                                     f"{ir_line(node)}")
            self.nodes.append(node)
        self.operands: list[Value] = [*body.inputs, *(v for v, _ in self.arrays)]
        self.arg = {v.name: namer.fresh(f"in_{v.name}") for v in self.operands}
        self.out_arg = [namer.fresh(f"out_{name}") for name, _ in body.outputs]
        self.var = {v.name: namer.fresh(v.name) for n in self.nodes for v in n.outputs}


def _header(w: SourceWriter, title: str) -> None:
    w.line(f'"""kiln: {title}."""')
    w.line()
    w.line("import numpy as np")
    w.line("from numba import cuda")
    w.line()
    w.line(f"from kiln.runtimes.numba_cuda.intrinsics import {', '.join(MATH_FUNCTIONS)}  "
           "# noqa: F401")
    w.line()
    w.line()


def _horner(terms: Sequence[tuple[str, str]]) -> str:
    """The row-major flat index of (index, extent) pairs, outermost first."""
    if not terms:
        return "0"
    expr = terms[0][0]
    for index, extent in terms[1:]:
        expr = f"({expr}) * {extent} + {index}" if " " in expr else f"{expr} * {extent} + {index}"
    return expr


def _unravel(w: SourceWriter, flat: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Assign each index of (index, extent) pairs, outermost first, from a flat index."""
    if not pairs:
        return
    if len(pairs) == 1:
        w.line(f"{pairs[0][0]} = {flat}")
        return
    w.line(f"rem = {flat}")
    for index, extent in reversed(pairs[1:]):
        w.line(f"{index} = rem % {extent}")
        w.line(f"rem = rem // {extent}")
    w.line(f"{pairs[0][0]} = rem")


def _emit_node(w: SourceWriter, node: Node, names: Mapping[str, str], var: str) -> None:
    w.comment(ir_line(node))
    w.line(f"{var} = {SCALAR[node.op](node, [names[v.name] for v in node.inputs])}")


# -- elementwise -----------------------------------------------------------------------------
def elementwise_kernel(body: Graph, title: str, max_threads: int = 256) -> CudaKernel:
    """The kernel of an elementwise body: results of one shape, operands broadcast into it."""
    namer = Namer(("np", "cuda", "rem", "i", *MATH_FUNCTIONS))
    b = _Body(body, namer)
    space = broadcast_shapes(*(v.type.shape for v in body.output_values))
    if space is None or any(v.type.shape != space for v in body.output_values):
        raise KilnValueError(f"CUDA codegen: expected the results of elementwise body "
                             f"@{body.name} to have one shape. Received: "
                             f"{[str(v.type) for v in body.output_values]}")
    axes = [a for a, d in enumerate(space) if d != 1]
    spans = {}
    for v in b.operands:
        lead = len(space) - v.type.rank
        spans[v.name] = tuple(a >= lead and v.type.shape[a - lead] != 1 for a in axes)
    groups: list[list[int]] = []
    for k in range(len(axes)):
        if groups and all(s[k] == s[groups[-1][-1]] for s in spans.values()):
            groups[-1].append(k)
        else:
            groups.append([k])
    extents = [namer.fresh(f"e{g}") for g in range(len(groups))]
    index = [namer.fresh(f"j{g}") for g in range(len(groups))]
    name = "kernel"
    w = SourceWriter()
    _header(w, title)
    args = [*b.out_arg, *(b.arg[v.name] for v in b.operands), "n", *extents]
    w.line("@cuda.jit(cache=True)")
    with w.block(f"def {name}({', '.join(args)})"):
        w.comment(f"fused elementwise over {TensorType(space)}: one thread per element")
        with w.block("for i in range(cuda.grid(1), n, cuda.gridsize(1))"):
            _unravel(w, "i", list(zip(index, extents, strict=True)))
            names = dict(b.literals)
            for v in b.operands:
                spanned = [(index[g], extents[g]) for g, members in enumerate(groups)
                           if spans[v.name][members[0]]]
                if v.name in b.arg:
                    local = namer.fresh(f"x_{v.name}")
                    w.line(f"{local} = {b.arg[v.name]}[{_horner(spanned)}]")
                    names[v.name] = local
            for node in b.nodes:
                _emit_node(w, node, names, b.var[node.output.name])
                names[node.output.name] = b.var[node.output.name]
            for out, (_, v) in zip(b.out_arg, body.outputs, strict=True):
                w.line(f"{out}[i] = {names[v.name]}")
    signature = _signature([*body.output_values, *b.operands], 1 + len(extents))
    return CudaKernel("elementwise", name, w.text(), signature,
                      _threads_for(None, max_threads), tuple(space),
                      tuple(tuple(axes[k] for k in g) for g in groups), (),
                      tuple(a for _, a in b.arrays))


def _signature(arrays: Sequence[Value], scalars: int) -> str:
    parts = [f"{_numba_type(v.type)}[::1]" for v in arrays] + ["int64"] * scalars
    return f"void({', '.join(parts)})"


# -- reduction -------------------------------------------------------------------------------
_IDENTITY = {"sum": 0, "mean": 0, "prod": 1}


def _identity(op: str, dtype: str) -> str:
    if op in _IDENTITY:
        return typed(_IDENTITY[op], dtype)
    if dtype in ("int32", "int64"):
        info = np.iinfo(dtype)
        return typed(info.min if op == "max" else info.max, dtype)
    return typed(-np.inf if op == "max" else np.inf, dtype)


def _combine(op: str, dtype: str, a: str, b: str) -> str:
    """The reduction of two partial results; max and min propagate NaN as NumPy does."""
    if op in ("sum", "mean"):
        expr = f"{a} + {b}"
    elif op == "prod":
        expr = f"{a} * {b}"
    else:
        cmp = ">" if op == "max" else "<"
        nan = f" or {a} != {a}" if dtype in ("float32", "float64") else ""
        return f"({a} if {a} {cmp} {b}{nan} else {b})"
    return f"np.int32({expr})" if dtype == "int32" else expr


def reduction_kernel(body: Graph, title: str, max_threads: int = 256) -> CudaKernel:
    """The kernel of a reduction body: reductions of one input shape over one set of axes,
    their elementwise prologue (over the input's shape) and epilogue (over the result's)."""
    namer = Namer(("np", "cuda", "rem", "r", "q", "s", "tid", *MATH_FUNCTIONS))
    b = _Body(body, namer)
    reductions = [n for n in b.nodes if n.op in REDUCTIONS]
    if not reductions:
        raise KilnValueError(f"CUDA codegen: expected a reduction in body @{body.name}")
    first = reductions[0]
    space = first.inputs[0].type.shape
    axes = normalize_axes(first.attr["axes"], len(space), first.op)
    keepdims = bool(first.attr["keepdims"])
    for n in reductions[1:]:
        spec = (n.inputs[0].type.shape, normalize_axes(n.attr["axes"], len(space), n.op),
                bool(n.attr["keepdims"]))
        if spec != (space, axes, keepdims):
            raise KilnValueError(f"CUDA codegen: expected the reductions of body @{body.name} "
                                 f"to share input shape and axes. Received: {ir_line(n)}")
    result_shape = first.output.type.shape
    # Each node runs per input element (prologue) or per output element (epilogue).
    epilogue: set[str] = {n.output.name for n in reductions}
    prologue_nodes, epilogue_nodes = [], []
    for n in b.nodes:
        if n.op in REDUCTIONS:
            continue
        # Epilogue: reads a reduction (or the epilogue), or lives in the result's shape.
        if any(v.name in epilogue for v in n.inputs) or n.output.type.shape != space:
            epilogue.add(n.output.name)
            epilogue_nodes.append(n)
        else:
            prologue_nodes.append(n)
    rank = len(space)
    kept = [a for a in range(rank) if a not in axes]
    dim = [namer.fresh(f"d{a}") for a in range(rank)]
    idx = [namer.fresh(f"k{a}") for a in range(rank)]
    # Result axis -> input axis, for the epilogue's reads (keepdims keeps every axis).
    result_axes = list(range(rank)) if keepdims else kept
    threads = _threads_for(math.prod(space[a] for a in axes)
                           if all(isinstance(space[a], int) for a in axes) else None,
                           max_threads)
    acc = {n.output.name: namer.fresh(f"acc_{n.output.name}") for n in reductions}
    part = {n.output.name: namer.fresh(f"part_{n.output.name}") for n in reductions}

    def read(v: Value, phase: str, names: dict[str, str]) -> None:
        shape, lead = v.type.shape, None
        if phase == "prologue":
            lead = rank - len(shape)
            axis_of = list(range(rank))
        else:
            lead = len(result_shape) - len(shape)
            axis_of = result_axes
        terms = [(idx[axis_of[lead + k]], dim[axis_of[lead + k]])
                 for k, d in enumerate(shape) if d != 1]
        local = namer.fresh(f"x_{v.name}")
        w.line(f"{local} = {b.arg[v.name]}[{_horner(terms)}]")
        names[v.name] = local

    def needed(nodes: list[Node], names: dict[str, str]) -> list[Value]:
        wanted = []
        for n in nodes:
            for v in n.inputs:
                if v.name in b.arg and v.name not in names and v not in wanted:
                    wanted.append(v)
        return wanted

    w = SourceWriter()
    _header(w, title)
    name = "kernel"
    args = [*b.out_arg, *(b.arg[v.name] for v in b.operands), "n_out", "m", *dim]
    w.line("@cuda.jit(cache=True)")
    with w.block(f"def {name}({', '.join(args)})"):
        w.comment(f"fused reduction of {TensorType(space)} over axes {list(axes)}: one block "
                  f"of {threads} threads per output element")
        w.line("tid = cuda.threadIdx.x")
        for n in reductions:
            w.line(f"{acc[n.output.name]} = cuda.shared.array({threads}, "
                   f"np.{n.output.type.dtype})")
        with w.block("for r in range(cuda.blockIdx.x, n_out, cuda.gridDim.x)"):
            _unravel(w, "r", [(idx[a], dim[a]) for a in kept])
            for n in reductions:
                w.line(f"{part[n.output.name]} = {_identity(n.op, n.output.type.dtype)}")
            with w.block(f"for q in range(tid, m, {threads})"):
                _unravel(w, "q", [(idx[a], dim[a]) for a in axes])
                names = dict(b.literals)
                for v in needed([*prologue_nodes, *reductions], names):
                    read(v, "prologue", names)
                for n in prologue_nodes:
                    _emit_node(w, n, names, b.var[n.output.name])
                    names[n.output.name] = b.var[n.output.name]
                for n in reductions:
                    w.comment(ir_line(n))
                    p, dtype = part[n.output.name], n.output.type.dtype
                    w.line(f"{p} = {_combine(n.op, dtype, p, names[n.inputs[0].name])}")
                flat = _horner([(idx[a], dim[a]) for a in range(rank)])
                for out, (_, v) in zip(b.out_arg, body.outputs, strict=True):
                    if v.name not in epilogue:
                        if v.type.shape != space:
                            raise KilnValueError(
                                f"CUDA codegen: expected the prologue result %{v.name} of "
                                f"body @{body.name} to have the input's shape "
                                f"{TensorType(space)}. Received: {v.type}")
                        w.line(f"{out}[{flat}] = {names[v.name]}")
            for n in reductions:
                a, p = acc[n.output.name], part[n.output.name]
                w.line(f"{a}[tid] = {p}")
            w.line("cuda.syncthreads()")
            w.comment("tree reduction of the block's partial results in shared memory")
            w.line(f"s = {threads // 2}")
            with w.block("while s > 0"):
                with w.block("if tid < s"):
                    for n in reductions:
                        a, dtype = acc[n.output.name], n.output.type.dtype
                        w.line(f"{a}[tid] = {_combine(n.op, dtype, f'{a}[tid]', f'{a}[tid + s]')}")
                w.line("cuda.syncthreads()")
                w.line("s = s // 2")
            with w.block("if tid == 0"):
                names = dict(b.literals)
                for n in reductions:
                    v, a = b.var[n.output.name], acc[n.output.name]
                    if n.op == "mean":
                        dtype = n.output.type.dtype
                        w.line(f"{v} = {a}[0] / np.{dtype}(m)")
                    else:
                        w.line(f"{v} = {a}[0]")
                    names[n.output.name] = v
                for v in needed(epilogue_nodes, names):
                    read(v, "epilogue", names)
                for n in epilogue_nodes:
                    _emit_node(w, n, names, b.var[n.output.name])
                    names[n.output.name] = b.var[n.output.name]
                for out, (_, v) in zip(b.out_arg, body.outputs, strict=True):
                    if v.name in epilogue:
                        w.line(f"{out}[r] = {names[v.name]}")
            w.line("cuda.syncthreads()  # the shared arrays are reused by the next output")
    signature = _signature([*body.output_values, *b.operands], 2 + rank)
    return CudaKernel("reduction", name, w.text(), signature, threads, tuple(space), (),
                      tuple(axes), tuple(a for _, a in b.arrays))


def fused_kernel(body: Graph, kind: str, title: str, max_threads: int = 256) -> CudaKernel:
    """The kernel of a `fused` body of kind elementwise or reduction."""
    if kind == "elementwise":
        return elementwise_kernel(body, title, max_threads)
    if kind == "reduction":
        return reduction_kernel(body, title, max_threads)
    raise KilnValueError(f"CUDA codegen: expected a fused kind elementwise or reduction. "
                         f"Received: kind={kind!r}")


def single_op_body(node: Node) -> Graph:
    """A one-node body computing `node` with canonical names (x0, x1, ..., y), so that every
    node of one op, attributes and types shares one kernel."""
    inputs = tuple(Value(f"x{k}", v.type) for k, v in enumerate(node.inputs))
    out = Value("y", node.output.type)
    inner = Node(node.op, inputs, (out,), node.attrs)
    return Graph(node.op, inputs, (), (inner,), (("y", out),))
