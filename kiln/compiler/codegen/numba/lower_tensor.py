"""Lowerings of the tensor ops that are not kernels of the nn library: elementwise ops and
reductions standing alone, constants, shape and movement ops, matmul, argmax/argmin,
softmax and log_softmax over any axes (the kernel library has the last axis alone).

Each lowering is `lower(em, frame, node)`: it reads its operands' Refs from the frame,
declares its results there (frame.output) and writes the statements computing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from kiln.compiler.codegen.numba.frame import Emitter, Frame, Ref, plus
from kiln.compiler.codegen.numba.loops import elementwise_loop, reduction_kernel
from kiln.compiler.codegen.numba.scalar import SCALAR
from kiln.compiler.codegen.numba.source import NP_TYPE, ir_line, product_text, typed
from kiln.ir.graph import ArrayAttr, Graph, Node, Value
from kiln.ir.ops.shape import slice_plan
from kiln.ir.types import TensorType, canonical_dtype, normalize_axes


def lower_elementwise(em: Emitter, frame: Frame, node: Node) -> None:
    out = frame.output(node.output)

    def compute(reads: list[str]) -> list[str]:
        name = em.fresh(node.output.name)
        em.w.line(f"{name} = {SCALAR[node.op](node, reads)}")
        return [name]

    elementwise_loop(em, node.output.type.shape, [frame.read(v) for v in node.inputs], [out],
                     compute, cheap=True)


def lower_reduction(em: Emitter, frame: Frame, node: Node) -> None:
    body = Graph(node.output.name, (node.inputs[0],), (), (node,),
                 ((node.output.name, node.output),))
    out = frame.output(node.output)
    reduction_kernel(em, body, [frame.read(node.inputs[0])], [out],
                     frame.aliases(node.outputs, node.inputs))


def fill(em: Emitter, ref: Ref, value: str) -> None:
    i = em.fresh("i")
    with em.w.loops([i], [ref.size()]):
        em.w.line(f"{ref.flat(i)} = {value}")


def lower_constant(em: Emitter, frame: Frame, node: Node) -> None:
    value, v = node.attr["value"], node.output
    if isinstance(value, ArrayAttr):
        arg = em.ref(em.constant(value, v.name), v.type)
        if v.name in frame.in_place:
            em.copy(frame.output(v), arg)
        else:
            frame.bind_view(v, arg, ("arg", arg.base))
        return
    fill(em, frame.output(v), typed(value, v.type.dtype))


def lower_size(em: Emitter, frame: Frame, node: Node) -> None:
    x = node.inputs[0].type
    axes = normalize_axes(node.attr["axes"], x.rank, "size")
    count = product_text([em.dim(x.shape[a]) for a in axes])
    dtype = canonical_dtype(node.attr["dtype"])
    em.w.line(f"{frame.output(node.output).flat('0')} = {NP_TYPE[dtype]}({count})")


def lower_iota(em: Emitter, frame: Frame, node: Node) -> None:
    out = frame.output(node.output)
    dtype = NP_TYPE[canonical_dtype(node.attr["dtype"])]
    i = em.fresh("i")
    with em.w.loops([i], [out.size()]):
        em.w.line(f"{out.flat(i)} = {dtype}({i})")


# -- shape and movement ----------------------------------------------------------------------
def lower_view(em: Emitter, frame: Frame, node: Node) -> None:
    """reshape, expand_dims, squeeze: the same elements in the same order."""
    frame.view_or_copy(node.output, node.inputs[0])


def lower_broadcast_to(em: Emitter, frame: Frame, node: Node) -> None:
    elementwise_loop(em, node.output.type.shape, [frame.read(node.inputs[0])],
                     [frame.output(node.output)], lambda reads: reads, cheap=True)


def index_loop(em: Emitter, t: TensorType, write: Callable[[list[str]], None]) -> None:
    """Loops over every index of shape t; `write(indices)` emits the statements of one."""
    indices = [em.fresh("i") for _ in t.shape]
    with em.w.loops(indices, em.dims_of(t)):
        write(indices)


def _affine(start: int, step: int, index: str) -> str:
    text = index if step == 1 else f"{step} * {index}"
    return text if start == 0 else f"{start} + {text}"


def _only_matmuls_read(frame: Frame, v: Value) -> bool:
    """Whether every reader of v is a matmul (alone or the one of a gemm kernel)."""
    graph = frame.graph
    if any(o.name == v.name for o in (*graph.output_values, *(u for _, u in graph.updates))):
        return False
    for node in graph.nodes:
        for k, operand in enumerate(node.inputs):
            if operand.name != v.name or node.op == "matmul":
                continue
            if node.op != "fused" or node.attr["kind"] != "gemm" or node.body is None:
                return False
            inner = node.body.inputs[k]
            if any(inner in n.inputs for n in node.body.nodes[1:]):
                return False
    return True


def lower_transpose(em: Emitter, frame: Frame, node: Node) -> None:
    """A copy in the permuted order; a transpose of the last two axes that only matmuls read
    is a view (BLAS reads each matrix with a transpose flag, no copy)."""
    x, y = node.inputs[0], node.output
    perm = node.attr["perm"]
    perm = tuple(range(x.type.rank - 1, -1, -1)) if perm is None else perm
    src = frame.read(x)
    rank = x.type.rank
    matrices = rank >= 2 and perm == (*range(rank - 2), rank - 1, rank - 2)
    if (matrices and not src.transposed and src.strided is None
            and _only_matmuls_read(frame, y) and frame.view_is_safe(y, x)):
        frame.bind_view(y, Ref(src.base, src.offset, y.type.shape, tuple(em.dims_of(y.type)),
                          y.type.dtype, transposed=True), frame.root(x))
        return
    out = frame.output(y)

    def write(i: list[str]) -> None:
        source = [""] * len(perm)
        for k, a in enumerate(perm):
            source[a] = i[k]
        em.w.line(f"{out.at(i)} = {src.at(source)}")

    index_loop(em, y.type, write)


def lower_concat(em: Emitter, frame: Frame, node: Node) -> None:
    y = node.output
    if len(node.inputs) == 1:
        frame.view_or_copy(y, node.inputs[0])
        return
    axis = node.attr["axis"] % y.type.rank
    out, start = frame.output(y), 0
    for x in node.inputs:
        src = frame.read(x)

        def write(i: list[str], start: int = start, src: Ref = src) -> None:
            target = [*i[:axis], _affine(start, 1, i[axis]), *i[axis + 1:]]
            em.w.line(f"{out.at(target)} = {src.at(i)}")

        index_loop(em, x.type, write)
        start += x.type.shape[axis]


def _only_elementwise_read(frame: Frame, v: Value) -> bool:
    """Whether every reader of v reads it element by element in one elementwise loop (an
    elementwise op, or an elementwise kernel), and v is no output of the graph."""
    graph = frame.graph
    if any(o.name == v.name for o in (*graph.output_values, *(u for _, u in graph.updates))):
        return False
    return all(node.op in SCALAR or (node.op == "fused" and node.attr["kind"] == "elementwise")
               for node in graph.nodes if any(o.name == v.name for o in node.inputs))


def lower_split(em: Emitter, frame: Frame, node: Node) -> None:
    """Copies of the parts; a part that only elementwise loops read is a strided view of
    the source (the gates of a recurrent cell, split from one GEMM's result each step)."""
    x = node.inputs[0]
    axis, src, start = node.attr["axis"] % x.type.rank, frame.read(x), 0
    if (not src.transposed and src.strided is None
            and all(_only_elementwise_read(frame, o) and frame.view_is_safe(o, x)
                    for o in node.outputs)):
        strides = src.strides()
        for o in node.outputs:
            offset = src.position(["0"] * axis + [str(start)] + ["0"] * (x.type.rank - axis - 1))
            frame.bind_view(o, Ref(src.base, plus(src.offset, offset), o.type.shape,
                                   tuple(em.dims_of(o.type)), o.type.dtype,
                                   strided=tuple(strides)), frame.root(x))
            start += o.type.shape[axis]
        return
    for o in node.outputs:
        out = frame.output(o)

        def write(i: list[str], start: int = start, out: Ref = out) -> None:
            source = [*i[:axis], _affine(start, 1, i[axis]), *i[axis + 1:]]
            em.w.line(f"{out.at(i)} = {src.at(source)}")

        index_loop(em, o.type, write)
        start += o.type.shape[axis]


def lower_slice(em: Emitter, frame: Frame, node: Node) -> None:
    x, y = node.inputs[0], node.output
    plan = slice_plan(x.type, node.attr["begin"], node.attr["end"], node.attr["strides"])
    src, out = frame.read(x), frame.output(y)

    def write(i: list[str]) -> None:
        source = [_affine(start, step, k) for (start, step, _), k in zip(plan, i, strict=True)]
        em.w.line(f"{out.at(i)} = {src.at(source)}")

    index_loop(em, y.type, write)


def lower_pad(em: Emitter, frame: Frame, node: Node) -> None:
    x, y = node.inputs[0], node.output
    out, src = frame.output(y), frame.read(x)
    fill(em, out, typed(node.attr["value"], y.type.dtype))

    def write(i: list[str]) -> None:
        target = [_affine(before, 1, k) for (before, _), k in zip(node.attr["pads"], i,
                                                                   strict=True)]
        em.w.line(f"{out.at(target)} = {src.at(i)}")

    index_loop(em, x.type, write)


def lower_tile(em: Emitter, frame: Frame, node: Node) -> None:
    x, y = node.inputs[0], node.output
    src, out = frame.read(x), frame.output(y)

    def write(i: list[str]) -> None:
        source = [k if r == 1 else f"({k} % {em.dim(d)})"
                  for k, r, d in zip(i, node.attr["reps"], x.type.shape, strict=True)]
        em.w.line(f"{out.at(i)} = {src.at(source)}")

    index_loop(em, y.type, write)


# -- linear algebra ------------------------------------------------------------------------
def _batch_index(shape: Sequence, batch: Sequence, indices: Sequence[str]) -> list[str]:
    lead = len(batch) - len(shape)
    return ["0" if d == 1 else indices[lead + k] for k, d in enumerate(shape)]


def _matrix(em: Emitter, ref: Ref, index: Sequence[str]) -> str:
    """The 2-D matrix of `ref` at batch index `index` (its leading axes), as an array. A
    transposed Ref's matrices are stored one after another like a row-major one's (only
    each matrix is transposed), so the batch index finds them the same way."""
    rows, cols = ref.shape[-2:]
    t = TensorType((rows, cols), ref.dtype)
    if not index:
        return ref.array()
    start = plus(ref.offset, ref.position([*index, "0", "0"]))
    return replace(em.ref(ref.base, t, start), transposed=ref.transposed).array()


def _row_stacked(a: Ref, b: Ref, out: Ref) -> bool:
    """Whether a batched a @ b is one GEMM of a's stacked rows: b is one matrix for the
    whole batch (no batch axes, or all of size 1) and a and out are row-major with out's
    batch axes, so a[B..., M, K] is the matrix [B*M, K] and out[B..., M, N] is [B*M, N]."""
    batch = out.shape[:-2]
    return (bool(batch) and all(d == 1 for d in b.shape[:-2])
            and tuple(a.shape[:-2]) == tuple(batch)
            and not a.transposed and a.strided is None
            and not out.transposed and out.strided is None)


def matmul_into(em: Emitter, a: Ref, b: Ref, out: Ref) -> None:
    """out = a @ b through BLAS (the library's k_matmul_2d), batched over the leading axes
    with broadcasting. A batch against one shared matrix (an RNN's input projection over
    all time steps, or its gradient) is one GEMM over the stacked rows, not a loop of small
    ones: about 15 us of call and BLAS setup each, 100 of them per LSTM layer and pass."""
    batch = out.shape[:-2]
    em.uses_kernels = True
    if _row_stacked(a, b, out):
        rows = product_text(list(out.dims[:-1]))
        a2 = a.with_shape((rows, a.shape[-1]), (rows, a.dims[-1]))
        out2 = out.with_shape((rows, out.shape[-1]), (rows, out.dims[-1]))
        b2 = _matrix(em, b, ["0"] * (len(b.shape) - 2))
        em.w.line(f"K.k_matmul_2d({a2.array()}, {b2}, {out2.array()})")
        return
    indices = [em.fresh("b") for _ in batch]
    with em.w.loops(indices, em.dims_of(batch)):
        em.w.line(f"K.k_matmul_2d({_matrix(em, a, _batch_index(a.shape[:-2], batch, indices))}, "
                  f"{_matrix(em, b, _batch_index(b.shape[:-2], batch, indices))}, "
                  f"{_matrix(em, out, indices)})")


def lower_matmul(em: Emitter, frame: Frame, node: Node) -> None:
    x, y = node.inputs
    matmul_into(em, frame.read(x), frame.read(y), frame.output(node.output))


# -- argmax, argmin --------------------------------------------------------------------------
def lower_arg(em: Emitter, frame: Frame, node: Node) -> None:
    """First index of the max (min) along one axis; NaN counts as the extreme, as NumPy."""
    x, y = node.inputs[0], node.output
    src, out = frame.read(x), frame.output(y)
    t, axis = x.type, node.attr["axis"]
    if axis is None:  # over every element, in row-major order
        kept, extent = [], em.size(t)

        def element(idx: list[str], j: str) -> str:
            return src.flat(j)
    else:
        axis %= t.rank
        kept = [a for a in range(t.rank) if a != axis]
        extent = em.dim(t.shape[axis])

        def element(idx: list[str], j: str) -> str:
            return src.at([*idx[:axis], j, *idx[axis:]])
    op = ">" if node.op == "argmax" else "<"
    idx = [em.fresh("i") for _ in kept]
    if not extent.isdigit() or extent == "0":
        with em.w.block(f"if {extent} == 0"):
            em.w.line(f'raise ValueError("{node.op}: attempt to get {node.op} of an empty '
                      f'sequence ({ir_line(node).split(" =")[0]})")')
    with em.w.loops(idx, [em.dim(x.type.shape[a]) for a in kept]):
        j = em.fresh("j")
        best, arg, v = em.fresh("best"), em.fresh("arg"), em.fresh("v")
        em.w.line(f"{best} = {element(idx, '0')}")
        em.w.line(f"{arg} = 0")
        with em.w.block(f"for {j} in range(1, {extent})"):
            em.w.line(f"{v} = {element(idx, j)}")
            with em.w.block(f"if {v} {op} {best} or ({v} != {v} and {best} == {best})"):
                em.w.line(f"{best} = {v}")
                em.w.line(f"{arg} = {j}")
        em.w.line(f"{out.at(_arg_target(node, idx))} = {arg}")


def _arg_target(node: Node, idx: list[str]) -> list[str]:
    rank, axis = node.inputs[0].type.rank, node.attr["axis"]
    if not node.attr["keepdims"]:
        return idx
    if axis is None:
        return ["0"] * rank
    return [*idx[:axis % rank], "0", *idx[axis % rank:]]


# -- softmax, log_softmax ------------------------------------------------------------------
def lower_softmax(em: Emitter, frame: Frame, node: Node) -> None:
    """Per kept index: the max over the axes, the sum of exp(x - max) (accumulated in
    float64), then exp(x - max) / sum or (x - max) - log(sum)."""
    x, y = node.inputs[0], node.output
    t = x.type
    axes = normalize_axes(node.attr["axis"], t.rank, node.op)
    kept = [a for a in range(t.rank) if a not in axes]
    src, out = frame.read(x), frame.output(y)
    dt = NP_TYPE[t.dtype]
    ki = [em.fresh("i") for _ in kept]
    ri = [em.fresh("j") for _ in axes]
    index = [""] * t.rank
    for a, i in zip([*kept, *axes], [*ki, *ri], strict=True):
        index[a] = i
    x_at, y_at = src.at(index), out.at(index)
    red_extents = [em.dim(t.shape[a]) for a in axes]
    m, s, v, total = em.fresh("m"), em.fresh("s"), em.fresh("v"), em.fresh("total")
    with em.w.loops(ki, [em.dim(t.shape[a]) for a in kept]):
        em.w.line(f"{m} = {typed(float('-inf'), t.dtype)}")
        with em.w.loops(ri, red_extents):
            em.w.line(f"{v} = {x_at}")
            with em.w.block(f"if {v} > {m} or {v} != {v}"):
                em.w.line(f"{m} = {v}")
        em.w.line(f"{s} = 0.0")
        with em.w.loops(ri, red_extents):
            if node.op == "softmax":
                em.w.line(f"{y_at} = np.exp({x_at} - {m})")
                em.w.line(f"{s} += {y_at}")
            else:
                em.w.line(f"{s} += np.exp({x_at} - {m})")
        if node.op == "softmax":
            em.w.line(f"{total} = {dt}({s})")
            with em.w.loops(ri, red_extents):
                em.w.line(f"{y_at} = {y_at} / {total}")
        else:
            em.w.line(f"{total} = {dt}(np.log({dt}({s})))")
            with em.w.loops(ri, red_extents):
                em.w.line(f"{y_at} = ({x_at} - {m}) - {total}")
