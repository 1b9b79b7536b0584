"""Loop nests: elementwise kernels, reductions with their prologue and epilogue, and the
epilogue of a GEMM. Every `fused` node, and every lone elementwise op or reduction, becomes
one of these, with the IR line of each op it computes in a comment above its statement.

Elementwise loops collapse adjacent axes that every operand either spans or broadcasts
over, so a parameter update of any rank is one flat loop and a bias add two loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from kiln.compiler.codegen.numba.frame import Emitter, Ref, plus
from kiln.compiler.codegen.numba.scalar import SCALAR
from kiln.compiler.codegen.numba.source import NP_TYPE, group, ir_line, product_text, typed
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import ArrayAttr, Graph, Node
from kiln.ir.types import Dim, TensorType, normalize_axes

# compute(reads) -> results: emits the statements of one element, given the scalar names of
# one element of each operand, and returns the scalar names of one element of each result.
Compute = Callable[[list[str]], list[str]]


def broadcast_index(shape: Sequence[Dim], space: Sequence[Dim], index: Sequence[str],
                    ) -> list[str]:
    """The index into an operand of `shape` broadcast (aligned right) into `space` at
    `index`: 0 on the operand's size-1 axes."""
    lead = len(space) - len(shape)
    return ["0" if d == 1 else index[lead + a] for a, d in enumerate(shape)]


# An inner loop of a few dozen iterations with a cheap body (a bias add and relu over 32
# channels) is fully unrolled by LLVM, and the unrolled code stays scalar: it cannot prove
# that the arena's reads and writes do not overlap. A loop whose extent LLVM cannot see stays
# a loop, which its loop vectorizer vectorizes behind a run-time overlap check: for kernels of
# at most CHEAP_BODY_OPS ops such an inner extent is read from a constant array argument (conv
# bias + relu, 32 channels: 0.36 -> 0.13 ns an element; the convnet's predict at batch 128 0.6
# ms faster; as the epilogue of a fused conv + pooling, 0.06-0.11 ms). Not for larger bodies,
# which LLVM vectorizes anyway and which do better with their trip count known (the LSTM cell:
# 0.8 ms slower a step with it hidden; the convnet's training relu, which also writes its
# mask, 0.14 ms slower at 3 ops).
OPAQUE_EXTENT_MAX = 128
CHEAP_BODY_OPS = 2


def opaque_extent(em: Emitter, extent: int) -> str:
    """`extent` as an expression LLVM cannot fold: an element of a constant argument."""
    name = em.opaque_extents.get(extent)
    if name is None:
        name = em.opaque_extents[extent] = em.constant(
            ArrayAttr(np.array([extent], np.int64)), f"extent_{extent}")
    return f"{name}[0]"


def elementwise_loop(em: Emitter, space: Sequence[Dim], operands: Sequence[Ref],
                     results: Sequence[Ref], compute: Compute, cheap: bool = False) -> None:
    """One loop nest over `space` reading each operand (broadcast into it) and writing each
    result (of shape `space`) at every element. `cheap`: a body of few ops, whose short
    constant inner extent is hidden from LLVM (opaque_extent)."""
    axes = [a for a, d in enumerate(space) if d != 1]
    # Per operand and axis: does it span the axis (True) or broadcast over it (False)?
    spans = []
    for ref in operands:
        lead = len(space) - len(ref.shape)
        spans.append(tuple(a >= lead and ref.shape[a - lead] != 1 for a in axes))
    groups: list[list[int]] = []
    for k in range(len(axes)):
        if (groups and all(s[k] == s[groups[-1][-1]] for s in spans)
                and all(_contiguous(ref, space, axes[groups[-1][-1]], axes[k])
                        for ref in (*operands, *results))):
            groups[-1].append(k)
        else:
            groups.append([k])
    extents = [product_text([em.dim(space[axes[k]]) for k in g]) for g in groups]
    if (cheap and len(extents) > 1 and extents[-1].isdigit()
            and int(extents[-1]) <= OPAQUE_EXTENT_MAX):
        extents[-1] = opaque_extent(em, int(extents[-1]))
    indices = [em.fresh("i") for _ in groups]
    hoisted: list[str] = []
    for ref, s in zip(operands, spans, strict=True):
        if any(s):
            hoisted.append("")
        else:  # the same element everywhere: read once, before the loop
            hoisted.append(em.fresh("s"))
            em.w.line(f"{hoisted[-1]} = {ref.element('0')}")
    with em.w.loops(indices, extents):
        names = []
        for ref, s, name in zip(operands, spans, hoisted, strict=True):
            if not name:
                name = em.fresh("a")
                em.w.line(f"{name} = "
                          f"{ref.element(_flat_index(ref, space, axes, groups, s, indices))}")
            names.append(name)
        values = compute(names)
        for ref, value in zip(results, values, strict=True):
            full = [True] * len(axes)
            em.w.line(f"{ref.flat(_flat_index(ref, space, axes, groups, full, indices))} = "
                      f"{value}")


def _contiguous(ref: Ref, space: Sequence[Dim], a: int, b: int) -> bool:
    """Whether axes a < b of `space` (every axis between them of size 1) may share one
    loop index for `ref`: always for a row-major Ref; for a strided one, when stepping
    axis a is stepping b by its extent."""
    if ref.strided is None:
        return True
    lead = len(space) - len(ref.shape)
    if a < lead or b < lead:
        return True  # broadcast axes: the ref does not move along them
    strides = ref.strides()
    return strides[a - lead] == product_text([strides[b - lead], ref.dims[b - lead]])


def _flat_index(ref: Ref, space: Sequence[Dim], axes: Sequence[int], groups: list[list[int]],
                spans: Sequence[bool], indices: Sequence[str]) -> str:
    """The flat index into `ref` (broadcast into `space`) at the collapsed loop indices:
    each group it spans contributes its index times the ref's stride after the group."""
    lead = len(space) - len(ref.shape)
    strides = ref.strides()
    terms = []
    for g, i in zip(groups, indices, strict=True):
        if not spans[g[0]]:
            continue
        stride = strides[axes[g[-1]] - lead]
        terms.append(i if stride == "1" else f"{i} * {group(stride)}")
    return " + ".join(terms) if terms else "0"


# -- scalar evaluation of a body -----------------------------------------------------------
def scalar_constants(em: Emitter, body: Graph, env: dict[str, str]) -> None:
    """The body's scalar constants as typed locals, before any loop."""
    for node in body.nodes:
        if node.op == "constant":
            value, t = node.attr["value"], node.output.type
            if t.rank != 0 or not isinstance(value, (bool, int, float)):
                raise KilnValueError(f"numba codegen: expected only scalar constants in a "
                                     f"kernel body. Received: {ir_line(node)}")
            name = em.fresh(node.output.name)
            em.w.line(f"{name} = {typed(value, t.dtype)}  # {ir_line(node)}")
            env[node.output.name] = name


def scalar_node(em: Emitter, node: Node, env: dict[str, str]) -> None:
    """One elementwise op on scalars: its IR line, then its statement."""
    if node.op not in SCALAR:
        raise KilnValueError(f"numba codegen: expected elementwise ops in a kernel body. "
                             f"Received: {ir_line(node)}")
    em.w.comment(ir_line(node))
    name = em.fresh(node.output.name)
    em.w.line(f"{name} = {SCALAR[node.op](node, [env[v.name] for v in node.inputs])}")
    env[node.output.name] = name


def elementwise_kernel(em: Emitter, body: Graph, operands: Sequence[Ref],
                       results: Sequence[Ref]) -> None:
    """A body of elementwise ops over the shape of its results, one loop nest."""
    env: dict[str, str] = {}
    scalar_constants(em, body, env)
    space = body.output_values[0].type.shape

    def compute(reads: list[str]) -> list[str]:
        env.update({v.name: r for v, r in zip(body.inputs, reads, strict=True)})
        for node in body.nodes:
            if node.op != "constant":
                scalar_node(em, node, env)
        return [env[v.name] for v in body.output_values]

    ops = sum(1 for node in body.nodes if node.op != "constant")
    elementwise_loop(em, space, operands, results, compute, cheap=ops <= CHEAP_BODY_OPS)


# -- reductions ------------------------------------------------------------------------------
REDUCE_INIT = {"sum": 0, "mean": 0, "prod": 1}

# A reduction over leading axes whose last kept axis has at most REDUCTION_BLOCK_MAX_C
# elements (a bias gradient: sum over N, H, W of [N, H, W, C], C <= 16) runs in blocks of the
# trailing axes of at most REDUCTION_BLOCK elements: first the prologue over the block as one
# elementwise loop (collapsed, so it vectorizes), then the accumulation over the block, its
# inner extent hidden (opaque_extent), reading back what the prologue stored. As one loop
# nest, LLVM unrolled the 16-channel inner loop to scalar code, turned the relu gradient's
# select into a branch around its load and chained each accumulator through memory: the
# augmented convnet's conv1 bias gradient (32x62x62x16) took 2.4 ms, in blocks of one image
# row (992 elements) 0.86; a 16-channel conv alone 4.3 -> 0.5 (medians of 40 alternating
# calls of both drivers in one process). At 32 channels the one nest vectorizes and was
# 10-25% faster than blocks (the MNIST convnet's conv1, the augmented convnet's conv2).
REDUCTION_BLOCK = 4096
REDUCTION_BLOCK_MAX_C = 16


def _accumulator(em: Emitter, node: Node) -> tuple[str, str]:
    """(dtype, initial value) of a reduction's accumulator: float64 or int64 for sums and
    products (as NumPy accumulates integers), the input's dtype for max and min."""
    dtype = node.inputs[0].type.dtype
    if node.op in REDUCE_INIT:
        wide = "float64" if node.inputs[0].type.is_float else "int64"
        return wide, typed(REDUCE_INIT[node.op], wide)
    if dtype in ("int32", "int64"):
        info = np.iinfo(dtype)
        return dtype, typed(int(info.min if node.op == "max" else info.max), dtype)
    return dtype, typed(float("-inf") if node.op == "max" else float("inf"), dtype)


def _combine(node: Node, acc: str, value: str) -> list[str]:
    """Statements folding `value` into the accumulator expression `acc` (NaN sticks in
    max and min, as in NumPy)."""
    if node.op in ("sum", "mean"):
        return [f"{acc} += {value}"]
    if node.op == "prod":
        return [f"{acc} *= {value}"]
    op = ">" if node.op == "max" else "<"
    return [f"if {value} {op} {acc} or {value} != {value}:", f"    {acc} = {value}"]


def _block_start(space: Sequence[Dim], axes: Sequence[int]) -> int | None:
    """Where the blocks of a reduction over leading axes start (axes p.. of `space`: every
    kept axis and as many reduced ones as fit REDUCTION_BLOCK), or None for one loop nest: a
    reduction not over leading axes only, or whose kept axes are not all of static size, or
    whose last kept axis is longer than REDUCTION_BLOCK_MAX_C."""
    if list(axes) != list(range(len(axes))) or len(axes) == len(space):
        return None
    kept = space[len(axes):]
    if not all(isinstance(d, int) for d in kept) or kept[-1] > REDUCTION_BLOCK_MAX_C:
        return None
    p, size = len(axes), int(np.prod(kept))
    while p > 0 and isinstance(space[p - 1], int) and size * space[p - 1] <= REDUCTION_BLOCK:
        p -= 1
        size *= space[p]
    return p


def _block_ref(ref: Ref, space: Sequence[Dim], index: Sequence[str], p: int) -> Ref:
    """The part of `ref` (broadcast into `space`) at the outer indices index[:p]: a Ref of
    the axes from p on (those the ref has)."""
    lead = len(space) - len(ref.shape)
    outer = [index[a] if a >= lead and ref.shape[a - lead] != 1 else "0" for a in range(p)]
    start = max(0, p - lead)
    offset = ref.position(outer[lead:] + ["0"] * (len(ref.shape) - start)) if p > lead else "0"
    strided = tuple(ref.strided[start:]) if ref.strided is not None else None
    return replace(ref, offset=plus(ref.offset, offset), shape=ref.shape[start:],
                   dims=ref.dims[start:], strided=strided)


def _finalize(em: Emitter, node: Node, acc: str, count: str) -> str:
    dtype = NP_TYPE[node.output.type.dtype]
    if node.op == "mean":
        return f"{dtype}({acc} / ({count}))"
    return f"{dtype}({acc})"


def reduction_kernel(em: Emitter, body: Graph, operands: Sequence[Ref], results: Sequence[Ref],
                     aliased: bool) -> None:
    """Reductions of one shape S over one set of axes, an elementwise prologue of shape S
    they read, and an elementwise epilogue of the reduced shape R.

    When the reduced axes are the last ones, one loop nest runs each kept index's
    prologue and reduction (scalar accumulators) then its epilogue. Otherwise (or when a
    result is written into a state the kernel also reads) the prologue runs over all of S,
    accumulating into arena slots of their own, and the epilogue runs after it over R.
    """
    env: dict[str, str] = {}
    scalar_constants(em, body, env)
    reductions = [n for n in body.nodes if n.op in REDUCE_INIT or n.op in ("max", "min")]
    first = reductions[0]
    space = first.inputs[0].type.shape
    axes = normalize_axes(first.attr["axes"], len(space), first.op)
    keepdims = first.attr["keepdims"]
    for n in reductions:
        if (n.inputs[0].type.shape != space or n.attr["keepdims"] != keepdims
                or normalize_axes(n.attr["axes"], len(space), n.op) != axes):
            raise KilnValueError(f"numba codegen: expected the reductions of one kernel to "
                                 f"share input shape and axes. Received: {ir_line(n)}")
    reduced = first.output.type.shape
    phase: dict[str, str] = {v.name: "input" for v in body.inputs}
    for n in body.nodes:
        if n.op == "constant":
            phase[n.output.name] = "constant"
        elif n in reductions:
            phase[n.output.name] = "reduce"
        else:
            inputs = {phase[v.name] for v in n.inputs}
            late = bool(inputs & {"reduce", "epilogue"})
            if not late and n.output.type.shape == space:
                phase[n.output.name] = "prologue"
            elif n.output.type.shape == reduced:
                phase[n.output.name] = "epilogue"
            else:
                raise KilnValueError(f"numba codegen: expected a reduction kernel's ops to "
                                     f"have the input shape {list(space)} or the reduced "
                                     f"shape {list(reduced)}. Received: {ir_line(n)}")
    operand_of = dict(zip((v.name for v in body.inputs), operands, strict=True))
    result_of = dict(zip((v.name for v in body.output_values), results, strict=True))
    kept = [a for a in range(len(space)) if a not in axes]
    count = product_text([em.dim(space[a]) for a in axes])
    inner = list(axes) == list(range(len(kept), len(space))) and not aliased
    accs = {n.output.name: em.fresh(f"acc_{n.output.name}") for n in reductions}
    acc_refs: dict[str, Ref] = {}  # accumulators in the arena, when not scalars
    kept_idx = [em.fresh("i") for _ in kept]
    red_idx = [em.fresh("j") for _ in axes]
    s_index = [""] * len(space)
    for a, i in zip(kept, kept_idx, strict=True):
        s_index[a] = i
    for a, j in zip(axes, red_idx, strict=True):
        s_index[a] = j
    acc_index = [("0" if a in axes else s_index[a]) for a in range(len(space))]
    r_index = acc_index if keepdims else kept_idx
    extents = [em.dim(d) for d in space]

    def read(name: str, index: Sequence[str], phase_space: Sequence[Dim]) -> str:
        ref = operand_of[name]
        value = em.fresh("a")
        em.w.line(f"{value} = {ref.at(broadcast_index(ref.shape, phase_space, index))}")
        return value

    def prologue() -> None:
        local = dict(env)
        for v in body.inputs:
            if any(v in n.inputs for n in body.nodes if phase[n.output.name] in
                   ("prologue", "reduce")):
                local[v.name] = read(v.name, s_index, space)
        for n in body.nodes:
            if phase[n.output.name] == "prologue":
                scalar_node(em, n, local)
                if n.output.name in result_of:
                    em.w.line(f"{result_of[n.output.name].at(s_index)} = "
                              f"{local[n.output.name]}")
            elif phase[n.output.name] == "reduce":
                em.w.comment(ir_line(n))
                target = accs[n.output.name] if inner else acc_refs[n.output.name].at(acc_index)
                for line in _combine(n, target, local[n.inputs[0].name]):
                    em.w.line(line)

    def epilogue(finals: dict[str, str]) -> None:
        local = dict(env)
        local.update(finals)
        for v in body.inputs:
            if any(v in n.inputs for n in body.nodes if phase[n.output.name] == "epilogue"):
                local[v.name] = read(v.name, r_index, reduced)
        for n in body.nodes:
            if phase[n.output.name] == "epilogue":
                scalar_node(em, n, local)
        for name, out in result_of.items():
            if phase[name] in ("reduce", "epilogue"):
                em.w.line(f"{out.at(r_index)} = {local[name]}")

    def blocked_prologue(p: int) -> None:
        """One block (axes p.. at the outer indices s_index[:p]): the prologue as one
        elementwise loop storing its results, and each reduction's input that is not one
        into a block of scratch, then the accumulation reading them back."""
        block = space[p:]
        sources: dict[str, Ref] = {}  # reduction input -> where the accumulation reads it
        stored: list[tuple[str, Ref]] = []  # what the prologue loop writes, and where
        for name, ref in result_of.items():
            if phase[name] == "prologue":
                sources[name] = _block_ref(ref, space, s_index, p)
                stored.append((name, sources[name]))
        for n in reductions:
            name = n.inputs[0].name
            if name in sources:
                continue
            if phase[name] == "input" and not stored:  # nothing written: read it in place
                sources[name] = _block_ref(operand_of[name], space, s_index, p)
                continue
            t = TensorType(tuple(block), n.inputs[0].type.dtype)
            sources[name] = em.slot_ref(em.new_slot(t), t)
            stored.append((name, sources[name]))
        if stored:
            used = [v for v in body.inputs
                    if any(v in n.inputs for n in body.nodes if phase[n.output.name] == "prologue")
                    or any(name == v.name for name, _ in stored)]

            def compute(reads: list[str]) -> list[str]:
                local = dict(env)
                local.update({v.name: r for v, r in zip(used, reads, strict=True)})
                for n in body.nodes:
                    if phase[n.output.name] == "prologue":
                        scalar_node(em, n, local)
                return [local[name] for name, _ in stored]

            elementwise_loop(em, block, [_block_ref(operand_of[v.name], space, s_index, p)
                                         for v in used], [ref for _, ref in stored], compute)
        b_index = s_index[p:]
        b_extents = extents[p:]
        if b_extents[-1].isdigit() and int(b_extents[-1]) <= OPAQUE_EXTENT_MAX:
            b_extents[-1] = opaque_extent(em, int(b_extents[-1]))
        with em.w.loops(b_index, b_extents):
            for n in reductions:
                em.w.comment(ir_line(n))
                src = sources[n.inputs[0].name]
                value = em.fresh("a")
                em.w.line(f"{value} = {src.at(broadcast_index(src.shape, block, b_index))}")
                for line in _combine(n, acc_refs[n.output.name].at(acc_index), value):
                    em.w.line(line)

    def finals() -> dict[str, str]:
        values = {}
        for n in reductions:
            acc = accs[n.output.name] if inner else acc_refs[n.output.name].at(acc_index)
            value = em.fresh(n.output.name)
            em.w.line(f"{value} = {_finalize(em, n, acc, count)}")
            values[n.output.name] = value
        return values

    if inner:
        with em.w.loops(kept_idx, [extents[a] for a in kept]):
            for n in reductions:
                em.w.line(f"{accs[n.output.name]} = {_accumulator(em, n)[1]}")
            with em.w.loops(red_idx, [extents[a] for a in axes]):
                prologue()
            epilogue(finals())
        return
    acc_shape = tuple(1 if a in axes else d for a, d in enumerate(space))
    for n in reductions:
        dtype, init = _accumulator(em, n)
        t = TensorType(acc_shape, dtype)
        acc_refs[n.output.name] = em.slot_ref(em.new_slot(t), t)
        k = em.fresh("k")
        with em.w.loops([k], [acc_refs[n.output.name].size()]):
            em.w.line(f"{acc_refs[n.output.name].flat(k)} = {init}")
    p = _block_start(space, axes)
    if p is None:
        with em.w.loops(s_index, extents):
            prologue()
    else:
        with em.w.loops(s_index[:p], extents[:p]):
            blocked_prologue(p)
    with em.w.loops(kept_idx, [extents[a] for a in kept]):
        epilogue(finals())


# -- GEMM epilogues --------------------------------------------------------------------------
def gemm_epilogue(em: Emitter, body: Graph, product: Ref, operands: Sequence[Ref],
                  results: Sequence[Ref], head: int = 1) -> None:
    """The elementwise ops after the first `head` nodes of a gemm or conv kernel (the
    matmul; conv2d and max_pool2d), whose last result is in `product`; a loop over the
    product's shape writing every result (the product too, unless `product` is its own
    buffer)."""
    last = body.nodes[head - 1]
    tail = body.nodes[head:]
    env: dict[str, str] = {}
    scalar_constants(em, body, env)
    used = [(v, e) for v, e in zip(body.inputs, operands, strict=True)
            if any(v in n.inputs for n in tail)]
    outs = [(v, r) for v, r in zip(body.output_values, results, strict=True)
            if not (v == last.output and r == product)]
    reads = [product] + [e for _, e in used]

    def compute(names: list[str]) -> list[str]:
        env[last.output.name] = names[0]
        env.update({v.name: n for (v, _), n in zip(used, names[1:], strict=True)})
        for node in tail:
            if node.op != "constant":
                scalar_node(em, node, env)
        return [env[v.name] for v, _ in outs]

    ops = sum(1 for node in tail if node.op != "constant")
    if outs:
        elementwise_loop(em, last.output.type.shape, reads, [r for _, r in outs], compute,
                         cheap=ops <= CHEAP_BODY_OPS)
