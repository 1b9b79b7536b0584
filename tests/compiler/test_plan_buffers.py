"""plan_buffers: the plan checked against a liveness computation of its own (no two values
live at once share a slot), every node output placed once, in-place state updates only
where the old state is dead, the plan recorded in the graph and read back through the text
format, and the MLP train step's planned peak below its no-reuse total."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from kiln.compiler.passes import PASSES
from kiln.compiler.passes.fuse_conv_pool import fuse_conv_pool
from kiln.compiler.passes.fuse_elementwise import fuse_elementwise
from kiln.compiler.passes.fuse_gemm_epilogue import fuse_gemm_epilogue
from kiln.compiler.passes.plan_buffers import (
    DEFAULT_SYMBOL_SIZE,
    BufferPlan,
    plan_buffers,
    read_buffer_plan,
)
from kiln.ir import Graph, GraphBuilder, KilnValueError, ParseError, VerifyError, f32, parse, verify
from kiln.ir.types import numpy_dtype
from tests.compiler.differential import Case, random_graphs, train_step_case


def nbytes(t, sizes: dict) -> int:  # noqa: ANN001
    return int(np.prod(t.resolve(sizes), dtype=np.int64)) * numpy_dtype(t.dtype).itemsize


def intervals(graph: Graph) -> dict[str, tuple[int, int]]:
    """When each node output is live, written independently of the pass: from the step that
    computes it to the last step that reads it; a graph output or update is read after the
    last step."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v.name] = step
        for o in node.outputs:
            first[o.name] = step
    for _, v in (*graph.outputs, *graph.updates):
        last[v.name] = len(graph.nodes)
    return {name: (start, max(start, last.get(name, start))) for name, start in first.items()}


def check_plan(graph: Graph) -> BufferPlan:
    """Plan `graph` and check the plan against liveness; returns it."""
    planned = plan_buffers(graph)
    verify(planned)
    plan = read_buffer_plan(planned)
    assert plan is not None
    live = intervals(graph)
    types = {o.name: o.type for n in graph.nodes for o in n.outputs}
    sizes = dict(plan.assumed)
    # every node output is placed exactly once: in one slot, or in its state's buffer
    placed = [n for names in plan.slots for n in names] + [v for _, v in plan.in_place]
    assert sorted(placed) == sorted(live)
    # values sharing a slot are never live at the same time, and fit the slot
    for names, size in zip(plan.slots, plan.slot_bytes, strict=True):
        spans = sorted(live[n] for n in names)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end < start, f"slot holding {names} has overlapping values"
        assert size == max(nbytes(types[n], sizes) for n in names)
    # an in-place update: the old state is read by no later step, nor at the end
    readers = {}
    for step, node in enumerate(graph.nodes):
        for v in node.inputs:
            readers.setdefault(v.name, []).append(step)
    at_end = {v.name for _, v in (*graph.outputs, *graph.updates)}
    for state, value in plan.in_place:
        assert state not in at_end
        assert dict(graph.updates)[state].name == value
        assert all(step <= live[value][0] for step in readers.get(state, ()))
    assert plan.peak_bytes == sum(plan.slot_bytes)
    assert plan.total_bytes == sum(nbytes(t, sizes) for t in types.values())
    # the plan prints and parses back, and planning again changes nothing
    assert parse(str(planned)) == planned
    assert read_buffer_plan(parse(str(planned))) == plan
    assert plan_buffers(planned) == planned
    return plan


def fused(graph: Graph) -> Graph:
    return fuse_elementwise(fuse_gemm_epilogue(graph))


@pytest.mark.parametrize("name", ["mlp", "convnet", "lstm"])
@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_plans_respect_liveness_on_train_steps(name: str, fuse: bool) -> None:
    graph = train_step_case(name).graph
    check_plan(fused(graph) if fuse else graph)


def test_mlp_train_step_peak_is_below_the_no_reuse_total() -> None:
    graph = fused(train_step_case("mlp").graph)
    plan = check_plan(graph)
    assert plan.assumed == (("N", DEFAULT_SYMBOL_SIZE),)
    print(f"\nMLP train step (fused, N={DEFAULT_SYMBOL_SIZE}): planned peak "
          f"{plan.peak_bytes} bytes in {len(plan.slots)} slots, no reuse "
          f"{plan.total_bytes} bytes")
    assert plan.peak_bytes < plan.total_bytes
    # RMSprop writes every parameter, velocity and the step counter into its own buffer
    assert len(plan.in_place) == len(graph.updates) == 9


def test_a_chain_alternates_between_two_slots() -> None:
    b = GraphBuilder("chain")
    v = b.input("x", f32["N", 4])
    for _ in range(5):
        v = b.tanh(v)
    b.output(v, "y")
    graph = b.build()
    plan = check_plan(graph)
    assert len(plan.slots) == 2
    assert plan.peak_bytes == 2 * DEFAULT_SYMBOL_SIZE * 4 * 4
    assert plan.total_bytes == 5 * DEFAULT_SYMBOL_SIZE * 4 * 4
    assert plan.slot_bytes_at(graph, {"N": 3}) == (48, 48)


def test_a_transpose_of_the_last_two_axes_keeps_its_operand_alive() -> None:
    """A backend may read such a transpose as a view of its operand (each matrix with BLAS's
    transpose flag): no value takes the operand's slot while the transpose is read."""
    b = GraphBuilder("g")
    x = b.input("x", f32[3, "N", 4])
    w = b.input("w", f32[3, "N", 5])
    a = b.tanh(x)
    t = b.transpose(a, perm=(0, 2, 1))  # a's last reader
    later = b.exp(b.exp(w))  # could take a's slot, were a dead after the transpose
    b.output(b.matmul(t, later), "y")
    graph = b.build()
    plan = check_plan(graph)
    slot_of_a = plan.slot_of(a.name)
    assert not set(plan.slots[slot_of_a]) & {v.name for n in graph.nodes[2:] for v in n.outputs}


def test_sizes_set_the_assumed_batch() -> None:
    graph = train_step_case("mlp").graph
    plan = read_buffer_plan(plan_buffers(graph, sizes={"N": 32}))
    assert plan is not None and plan.assumed == (("N", 32),)
    assert PASSES["plan_buffers"](graph, sizes={"N": 32}) == plan_buffers(graph, sizes={"N": 32})


def update_graph(read_after: bool) -> Graph:
    b = GraphBuilder("step")
    x = b.input("x", f32[3])
    s = b.state("s", f32[3])
    with b.scope("opt"):
        new = b.add(s, x)
        b.update(s, new)
        b.output(b.mul(s, 2.0) if read_after else b.mul(new, 2.0), "y")
    return b.build()


def test_an_update_goes_in_place_only_when_the_old_state_is_dead() -> None:
    assert check_plan(update_graph(read_after=False)).in_place == (("s", "opt.add"),)
    assert check_plan(update_graph(read_after=True)).in_place == ()


def test_a_state_read_by_the_matmul_of_its_own_update_is_not_overwritten() -> None:
    b = GraphBuilder("gemm")
    x = b.input("x", f32[3, 3])
    s = b.state("s", f32[3, 3])
    b.update(s, b.relu(b.matmul(x, s)))
    graph = fuse_gemm_epilogue(b.build())
    assert graph.nodes[0].attr["kind"] == "gemm"
    assert check_plan(graph).in_place == ()
    b = GraphBuilder("plain")
    x = b.input("x", f32[3, 3])
    s = b.state("s", f32[3, 3])
    b.update(s, b.matmul(x, s))
    assert check_plan(b.build()).in_place == ()


def test_a_state_read_by_the_convolution_of_its_own_update_is_not_overwritten() -> None:
    """A fused conv reads its image at other indices than it writes: a same-size
    convolution, pooled 1x1, whose result updates the very image it read."""
    b = GraphBuilder("conv")
    w = b.input("w", f32[3, 3, 2, 2])
    s = b.state("s", f32[1, 4, 4, 2])
    b.update(s, b.relu(b.max_pool2d(b.conv2d(s, w, padding="same"), pool_size=(1, 1))))
    graph = fuse_conv_pool(b.build())
    assert graph.nodes[0].attr["kind"] == "conv"
    assert check_plan(graph).in_place == ()


def test_reading_a_plan() -> None:
    graph = update_graph(read_after=False)
    assert read_buffer_plan(graph) is None
    planned = plan_buffers(graph)
    assert str(planned).splitlines()[:3] == [
        "graph @step(%x: f32[3]) state(%s: f32[3]) attributes {",
        "    buffers.assumed=[],",
        '    buffers.in_place=[["s", "opt.add"]],']
    plan = read_buffer_plan(planned)
    assert plan is not None
    assert plan.slots == (("opt.constant",), ("opt.mul",))
    assert plan.slot_of("opt.mul") == 1
    assert plan.slot_of("opt.add") is None  # in place, in the state's buffer
    stale = Graph(graph.name, graph.inputs, graph.state, graph.nodes[:1] + graph.nodes[2:],
                  graph.outputs[:0], graph.updates, planned.attrs)
    with pytest.raises(KilnValueError, match="rewritten after plan_buffers"):
        read_buffer_plan(stale)


def test_fusing_a_planned_graph_drops_the_stale_plan() -> None:
    planned = plan_buffers(train_step_case("mlp").graph)
    assert read_buffer_plan(planned) is not None
    assert read_buffer_plan(fused(planned)) is None


@settings(max_examples=30, deadline=None)
@given(random_graphs())
def test_plans_respect_liveness_on_random_graphs(case: Case) -> None:
    check_plan(case.graph)
    check_plan(fused(case.graph))


def test_graph_attributes_in_the_text_format() -> None:
    """The attribute block is optional syntax after the signature: keys once each, sorted."""
    text = "graph @f(%x: f32[3]) attributes {\n    b=[1, 2],\n    a=\"s\"\n} {\n  return %x\n}"
    graph = parse(text)
    assert graph.attrs == (("a", "s"), ("b", (1, 2)))
    assert parse(str(graph)) == graph
    with pytest.raises(ParseError, match="given twice"):
        parse("graph @f(%x: f32[3]) attributes {a=1, a=2} {\n  return %x\n}")
    with pytest.raises(VerifyError, match="sorted order"):
        verify(Graph("f", graph.inputs, outputs=graph.outputs, attrs=(("b", 1), ("a", 2))))
