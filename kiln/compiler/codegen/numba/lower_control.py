"""Lowerings of the ops with a body: `fused` kernels (elementwise, reduction, gemm, conv) and
`scan`, whose body is inlined into a loop over the sequences' leading axis of the driver.
"""

from __future__ import annotations

from kiln.compiler.codegen.numba.frame import Emitter, Frame, Ref, Root, plus
from kiln.compiler.codegen.numba.loops import elementwise_kernel, gemm_epilogue, reduction_kernel
from kiln.compiler.codegen.numba.lower_nn import conv_max_pool_into
from kiln.compiler.codegen.numba.lower_tensor import matmul_into
from kiln.compiler.codegen.numba.source import ir_line
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Node


def lower_fused(em: Emitter, frame: Frame, node: Node) -> None:
    body, kind = node.body, node.attr["kind"]
    assert body is not None
    operands = [frame.read(v) for v in node.inputs]
    results = [frame.output(o) for o in node.outputs]
    if kind == "elementwise":
        elementwise_kernel(em, body, operands, results)
    elif kind == "reduction":
        reduction_kernel(em, body, operands, results, frame.aliases(node.outputs, node.inputs))
    elif kind == "gemm":
        _gemm(em, frame, node, operands, results)
    elif kind == "conv":
        _conv(em, frame, node, operands, results)
    else:
        raise KilnValueError(f"numba codegen: expected a fused kind among elementwise, "
                             f"reduction, gemm, conv. Received: kind={kind!r}")


def _product(em: Emitter, frame: Frame, node: Node, results: list[Ref], head: int) -> Ref:
    """Where the result of the kernel's first `head` nodes goes: its own buffer when it is
    a result, else a result's buffer, before the epilogue runs over it. A buffer that is
    also an operand's storage (a state updated in place) cannot hold it: it would overwrite
    the operand before the epilogue reads it."""
    body = node.body
    assert body is not None
    last = body.nodes[head - 1].output
    operand_roots = {frame.root(v) for v in node.inputs}
    safe = [r for r, o in zip(results, node.outputs, strict=True)
            if frame.root(o) not in operand_roots]
    names = [v.name for v in body.output_values]
    if last.name in names and results[names.index(last.name)] in safe:
        product = results[names.index(last.name)]
    elif safe:
        product = safe[0]
    else:  # every result overwrites an operand: the product gets a slot of its own
        product = em.slot_ref(em.new_slot(last.type), last.type)
    return product.with_shape(last.type.shape, em.dims_of(last.type))


def _gemm(em: Emitter, frame: Frame, node: Node, operands: list[Ref], results: list[Ref],
          ) -> None:
    """The matmul into a result buffer (see _product), then the epilogue over it."""
    body = node.body
    assert body is not None
    matmul = body.nodes[0]
    inner = dict(zip((v.name for v in body.inputs), operands, strict=True))
    product = _product(em, frame, node, results, 1)
    x, y = matmul.inputs
    em.w.comment(f"%{matmul.output.name} = matmul(%{x.name}, %{y.name}) : {matmul.output.type}")
    matmul_into(em, inner[x.name], inner[y.name], product)
    gemm_epilogue(em, body, product, operands, results)


def _conv(em: Emitter, frame: Frame, node: Node, operands: list[Ref], results: list[Ref],
          ) -> None:
    """The convolution and its pooling through one kernel into a result buffer (see
    _product), then the epilogue over the pooled values."""
    body = node.body
    assert body is not None
    conv, pool = body.nodes[:2]
    inner = dict(zip((v.name for v in body.inputs), operands, strict=True))
    pooled = _product(em, frame, node, results, 2)
    for n in (conv, pool):
        em.w.comment(ir_line(n))
    conv_max_pool_into(em, conv, pool, inner[conv.inputs[0].name],
                       inner[conv.inputs[1].name], pooled)
    gemm_epilogue(em, body, pooled, operands, results, head=2)


def lower_scan(em: Emitter, frame: Frame, node: Node) -> None:
    """The body inlined in a loop over time; carries live in the scan's own result buffers
    and each step's ys are copied into their stacked results."""
    from kiln.compiler.codegen.numba.driver import emit_nodes

    body = node.body
    assert body is not None
    num_carry, num_seq = node.attr["num_carry"], node.attr["num_seq"]
    carries = node.inputs[:num_carry]
    seqs = node.inputs[num_carry:num_carry + num_seq]
    consts = node.inputs[num_carry + num_seq:]
    carry_refs = [frame.output(o) for o in node.outputs[:num_carry]]
    for ref, init in zip(carry_refs, carries, strict=True):
        em.copy(ref, frame.read(init))
    ys = [frame.output(o) for o in node.outputs[num_carry:]]
    length = em.dim(seqs[0].type.shape[0])
    step, t = em.fresh("step"), em.fresh("t")
    with em.w.block(f"for {step} in range({length})"):
        em.w.line(f"{t} = {length} - 1 - {step}" if node.attr["reverse"] else f"{t} = {step}")
        bound: dict[str, tuple[Ref, Root]] = {}
        inputs = body.inputs
        for k, (v, ref) in enumerate(zip(inputs[:num_carry], carry_refs, strict=True)):
            bound[v.name] = (ref, ("carry", k))
        for v, seq in zip(inputs[num_carry:num_carry + num_seq], seqs, strict=True):
            ref = frame.read(seq)
            bound[v.name] = (em.ref(ref.base, v.type, _step_offset(em, ref, t, v.type)),
                             ("arg", v.name))
        for v, c in zip(inputs[num_carry + num_seq:], consts, strict=True):
            bound[v.name] = (frame.read(c), ("arg", v.name))
        inner = Frame.body(em, body, bound)
        emit_nodes(em, inner)
        outs = body.output_values
        for y, v in zip(ys, outs[num_carry:], strict=True):
            em.copy(em.ref(y.base, v.type, _step_offset(em, y, t, v.type)), inner.read(v))
        # A new carry that is (a view of) another carry is read before any carry is written.
        sources = []
        for k, v in enumerate(outs[:num_carry]):
            src, root = inner.read(v), inner.root(v)
            if root[0] == "carry" and root[1] != k:
                t_copy = em.slot_ref(em.new_slot(v.type), v.type)
                em.copy(t_copy, src)
                src = t_copy
            sources.append(src)
        for ref, src in zip(carry_refs, sources, strict=True):
            if (src.base, src.offset) != (ref.base, ref.offset):
                em.copy(ref, src)


def _step_offset(em: Emitter, ref: Ref, t: str, step_type) -> str:  # noqa: ANN001
    """The offset of element `t` along the leading axis of `ref` (a stacked sequence)."""
    return plus(ref.offset, f"{t} * {em.size(step_type)}" if em.size(step_type) != "1" else t)
