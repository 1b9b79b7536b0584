"""dce: dead nodes go (in bodies too), everything reaching an output or update stays."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.passes import PASSES
from kiln.compiler.passes.dce import dce
from kiln.ir import GraphBuilder, f32, remove_dead_nodes, verify
from tests.compiler.differential import (
    MODELS,
    Case,
    assert_same_results,
    check_pass_on_random_graph,
    op_counts,
    random_graphs,
    train_step_case,
)


def test_dead_nodes_are_removed_and_live_ones_kept() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 3])
    s = b.state("s", f32[3])
    b.exp(x)  # dead
    b.tanh(b.neg(x))  # dead chain
    y = b.relu(x)
    b.output(y, "y")
    b.update(s, b.add(s, b.constant(1.0)))
    graph = b.build()
    assert len(graph.nodes) == 6
    pruned = dce(graph)
    verify(pruned)
    assert op_counts(pruned) == {"relu": 1, "add": 1, "constant": 1}
    assert pruned.outputs == graph.outputs and pruned.updates == graph.updates
    assert dce(pruned) == pruned


def test_dead_nodes_in_a_scan_body_are_removed() -> None:
    body = GraphBuilder("cell")
    h = body.input("h", f32[2])
    xt = body.input("xt", f32[2])
    body.exp(h)  # dead
    body.output(body.add(h, xt), "h")
    cell = body.build()
    b = GraphBuilder("g")
    h0 = b.input("h0", f32[2])
    xs = b.input("xs", f32[4, 2])
    final = b.op("scan", h0, xs, num_carry=1, num_seq=1, body=cell)
    b.output(final, "h")
    graph = b.build()
    pruned = dce(graph)
    verify(pruned)
    assert op_counts(pruned.nodes[0].body) == {"add": 1}
    assert pruned.nodes[0].body.inputs == cell.inputs


def test_a_graph_without_dead_code_is_returned_equal() -> None:
    graph = train_step_case("mlp").graph
    assert remove_dead_nodes(graph) == graph
    assert dce(graph) == graph
    assert PASSES["dce"].run is dce


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_dce_preserves_results_on_random_graphs(case: Case) -> None:
    check_pass_on_random_graph(dce, case)


@pytest.mark.parametrize("name", MODELS)
def test_dce_preserves_train_steps(name: str) -> None:
    case = train_step_case(name)
    assert_same_results(case.graph, dce(case.graph), case)
