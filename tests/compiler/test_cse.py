"""cse: equal computations merge (commutative operands in any order, equal constants, equal
random draws, equal scan bodies); outputs and updates follow the surviving node."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.passes.cse import cse
from kiln.ir import GraphBuilder, f32, parse, verify
from tests.compiler.differential import (
    MODELS,
    Case,
    assert_same_results,
    check_pass_on_random_graph,
    op_counts,
    random_graphs,
    train_step_case,
)


def test_duplicates_merge_and_outputs_follow() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 3])
    y = b.input("y", f32[3])
    s = b.state("s", f32["N", 3])
    a1 = b.add(x, y)
    a2 = b.add(y, x)  # commutative: the same value
    e1, e2 = b.exp(a1), b.exp(a2)
    d1, d2 = b.sub(x, y), b.sub(y, x)  # not commutative: both stay
    b.output(b.mul(e1, d1), "p")
    b.output(b.mul(e2, d2), "q")
    b.output(e2, "e")
    b.update(s, e2)
    graph = b.build()
    merged = cse(graph)
    verify(merged)
    assert op_counts(merged) == {"add": 1, "exp": 1, "sub": 2, "mul": 2}
    assert merged.output_names == ("p", "q", "e")
    assert merged.outputs[2][1] == e1 and merged.updates == (("s", e1),)
    assert parse(str(merged)) == merged


def test_equal_constants_merge_but_signed_zeros_do_not() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    terms = [b.mul(x, b.constant(v)) for v in (2.0, 2.0, 0.0, -0.0)]
    b.output(b.add(b.add(terms[0], terms[1]), b.add(terms[2], terms[3])), "y")
    merged = cse(b.build())
    assert op_counts(merged)["constant"] == 3
    assert op_counts(merged)["mul"] == 3


def test_random_draws_with_equal_key_and_attributes_merge() -> None:
    b = GraphBuilder("g")
    key = b.input("key", f32[()].with_dtype("int64"))
    u1 = b.uniform(key, shape=(4,), stream=1)
    u2 = b.uniform(key, shape=(4,), stream=1)
    u3 = b.uniform(key, shape=(4,), stream=2)
    b.output(b.add(b.add(u1, u2), u3), "y")
    merged = cse(b.build())
    assert op_counts(merged)["uniform"] == 2


def test_scans_with_equal_bodies_merge_after_their_bodies_are_cleaned() -> None:
    cells = []
    for duplicate in (False, True):
        body = GraphBuilder("cell")
        h = body.input("h", f32[2])
        xt = body.input("xt", f32[2])
        t = body.tanh(xt)
        if duplicate:
            t = body.tanh(xt)  # the same expression twice: cse makes the bodies equal
        body.output(body.add(h, t), "h")
        cells.append(body.build())
    b = GraphBuilder("g")
    h0 = b.input("h0", f32[2])
    xs = b.input("xs", f32[4, 2])
    r1 = b.op("scan", h0, xs, num_carry=1, num_seq=1, body=cells[0])
    r2 = b.op("scan", h0, xs, num_carry=1, num_seq=1, body=cells[1])
    b.output(b.add(r1, r2), "y")
    graph = b.build()
    merged = cse(graph)
    verify(merged)
    assert op_counts(merged) == {"scan": 1, "add": 1}


def test_a_graph_without_duplicates_is_returned_equal_and_cse_is_idempotent() -> None:
    once = cse(train_step_case("lstm").graph)
    assert cse(once) == once
    assert str(cse(train_step_case("lstm").graph)) == str(once)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_cse_preserves_results_on_random_graphs(case: Case) -> None:
    check_pass_on_random_graph(cse, case)


@pytest.mark.parametrize("name", MODELS)
def test_cse_preserves_train_steps(name: str) -> None:
    case = train_step_case(name)
    merged = cse(case.graph)
    assert len(merged.nodes) < len(case.graph.nodes)
    assert_same_results(case.graph, merged, case)
