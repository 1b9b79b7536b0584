"""infer_types: stale types are recomputed from the type rules, symbols propagate, a correct
graph comes back equal, and a type the rules reject is an error naming the node."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.passes.infer_types import infer_types
from kiln.ir import Graph, GraphBuilder, KilnTypeError, TensorType, VerifyError, f32, verify
from tests.compiler.differential import (
    MODELS,
    Case,
    check_pass_on_random_graph,
    random_graphs,
    train_step_case,
)


def _mlp_like(batch: object) -> Graph:
    b = GraphBuilder("g")
    x = b.input("x", f32[batch, 4])
    w = b.state("w", f32[4, 3])
    h = b.relu(b.matmul(x, w))
    b.output(b.sum(h, axes=(1,)), "y")
    b.output(b.mean(h), "m")
    return b.build()


def _with_input_type(graph: Graph, t: TensorType) -> Graph:
    """The graph with its first input retyped and every other type left stale."""
    x = dataclasses.replace(graph.inputs[0], type=t)
    return dataclasses.replace(graph, inputs=(x, *graph.inputs[1:]))


def test_a_symbolic_batch_propagates_through_stale_types() -> None:
    stale = _with_input_type(_mlp_like(8), f32["N", 4])
    with pytest.raises(VerifyError):
        verify(stale)
    fixed = infer_types(stale)
    verify(fixed)
    assert fixed == _mlp_like("N")
    assert fixed.outputs[0][1].type == f32["N"]


def test_a_dtype_change_propagates() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    b.output(b.exp(b.neg(x)), "y")
    fixed = infer_types(_with_input_type(b.build(), TensorType((3,), "float64")))
    verify(fixed)
    assert [n.output.type.dtype for n in fixed.nodes] == ["float64", "float64"]


def test_a_correct_graph_is_returned_unchanged() -> None:
    for name in MODELS:
        graph = train_step_case(name).graph
        assert infer_types(graph) is graph


def test_types_the_rules_reject_name_the_node() -> None:
    stale = _with_input_type(_mlp_like(8), f32[8, 5])  # matmul needs 4 columns
    with pytest.raises(KilnTypeError, match=r"infer_types: @g node 0 \(matmul -> %0\)"):
        infer_types(stale)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_infer_types_leaves_random_graphs_equal(case: Case) -> None:
    assert check_pass_on_random_graph(infer_types, case) == case.graph
