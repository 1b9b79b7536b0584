"""fold_constants: nodes of constants become constants (scalars stay scalars, arrays become
array attributes up to a size), `size` over static axes folds, random draws never fold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.passes.fold_constants import MAX_ELEMENTS, fold_constants
from kiln.ir import ArrayAttr, GraphBuilder, f32, i64, parse, verify
from tests.compiler.differential import (
    MODELS,
    Case,
    assert_same_results,
    check_pass_on_random_graph,
    op_counts,
    random_graphs,
    train_step_case,
)


def test_a_chain_of_constant_arithmetic_folds_in_one_run() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 3])
    c = b.mul(b.add(b.constant(2.0), b.constant(3.0)), b.constant(np.arange(3, dtype="f4")))
    b.output(b.mul(x, b.exp(b.neg(c))), "y")
    graph = b.build()
    folded = fold_constants(graph)
    verify(folded)
    assert op_counts(graph) == {"constant": 3, "add": 1, "mul": 2, "exp": 1, "neg": 1}
    assert op_counts(folded) == {"constant": 1, "mul": 1}
    value = folded.nodes[0].attr["value"]
    assert isinstance(value, ArrayAttr) and value.array.dtype == np.float32
    np.testing.assert_array_equal(value.array, np.exp(-(5 * np.arange(3, dtype="f4"))))
    assert folded.nodes[0].output.name == graph.nodes[-2].output.name  # the user's name stays
    assert parse(str(folded)) == folded


def test_scalars_stay_scalar_attributes_even_under_symbolic_shapes() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 3])
    c = b.add(b.constant(1.0, shape=("N", 3)), b.constant(2.0))
    b.output(b.mul(x, c), "y")
    folded = fold_constants(b.build())
    (const,) = [n for n in folded.nodes if n.op == "constant"]
    assert const.attr["value"] == 3.0 and const.attr["shape"] == ("N", 3)


def test_uniform_results_fold_to_a_filled_constant_and_big_arrays_do_not_fold() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[300, 300])
    uniform = b.broadcast_to(b.constant(2.0), shape=(300, 300))
    varied = b.mul(b.constant(np.arange(300 * 300, dtype="f4").reshape(300, 300)), 2.0)
    b.output(b.add(b.add(x, uniform), varied), "y")
    graph = b.build()
    assert 300 * 300 > MAX_ELEMENTS
    folded = fold_constants(graph)
    ops = [n.op for n in folded.nodes]
    assert "broadcast_to" not in ops and "mul" in ops  # the big varied product stays a node
    filled = next(n for n in folded.nodes if n.output.name == uniform.name)
    assert filled.op == "constant" and filled.attr["value"] == 2.0


def test_size_folds_over_static_axes_only() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 5])
    b.output(b.size(x, axes=(1,)), "cols")
    b.output(b.size(x, axes=(0,)), "rows")
    b.output(b.size(x, axes=(0, 1)), "all")
    folded = fold_constants(b.build())
    assert [n.op for n in folded.nodes] == ["constant", "size", "size"]
    assert folded.nodes[0].attr["value"] == 5.0


def test_random_draws_never_fold() -> None:
    b = GraphBuilder("g")
    key = b.constant(7, "int64")
    b.output(b.uniform(key, shape=(3,)), "u")
    b.output(b.normal(key, shape=(3,)), "n")
    b.output(b.bernoulli(key, shape=(3,)), "b")
    graph = b.build()
    assert fold_constants(graph) == graph


def test_integer_and_bool_results_keep_their_dtype() -> None:
    b = GraphBuilder("g")
    k = b.input("k", i64[2])
    three = b.add(b.constant(1, "int64"), b.constant(2, "int64"))
    b.output(b.mul(k, three), "y")
    b.output(b.less(b.constant(1.0), b.constant(2.0)), "flag")
    folded = fold_constants(b.build())
    values = {n.output.name: n.attr["value"] for n in folded.nodes if n.op == "constant"}
    assert values[three.name] == 3 and type(values[three.name]) is int
    assert True in values.values()
    verify(folded)


def test_a_graph_without_constant_work_is_returned_equal() -> None:
    graph = train_step_case("mlp").graph
    assert fold_constants(graph) == graph


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_folding_preserves_results_on_random_graphs(case: Case) -> None:
    check_pass_on_random_graph(fold_constants, case)


@pytest.mark.parametrize("name", MODELS)
def test_folding_preserves_train_steps(name: str) -> None:
    case = train_step_case(name)
    assert_same_results(case.graph, fold_constants(case.graph), case)
