"""simplify: each named rule does its rewrite and keeps results; outputs and updates follow
the replaced values; the stable loss rules change results only where Keras's clip is active,
and can be turned off."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.compiler.passes.simplify import RULES, STABLE_LOSS_RULES, simplify
from kiln.ir import GraphBuilder, KilnValueError, f32, parse, verify
from kiln.ir.training.losses import binary_crossentropy, categorical_crossentropy
from kiln.runtimes.reference import run_graph
from tests.compiler.differential import (
    MODELS,
    Case,
    assert_same_results,
    check_pass_on_random_graph,
    op_counts,
    random_graphs,
    train_step_case,
)

# rule -> (input type, graph body, the ops left after simplify)
CASES: dict[str, tuple] = {
    "mul_one": (f32["N", 3], lambda b, x: b.mul(b.constant(1.0), b.mul(x, 1.0)), {}),
    "mul_one/broadcast": (f32[3], lambda b, x: b.mul(x, b.constant(1.0, shape=(2, 3))),
                          {"broadcast_to": 1}),
    "add_zero": (f32["N", 3], lambda b, x: b.add(0.0, b.add(x, 0.0)), {}),
    "sub_zero": (f32[3], lambda b, x: b.sub(x, 0.0), {}),
    "div_one": (f32[3], lambda b, x: b.div(x, b.constant(np.ones(3, "f4"))), {}),
    "double_neg": (f32[3], lambda b, x: b.neg(b.neg(b.neg(x))), {"neg": 1}),
    "transpose_chain": (f32[2, 3, 4], lambda b, x: b.transpose(b.transpose(x, perm=(1, 0, 2)),
                                                               perm=(0, 2, 1)), {"transpose": 1}),
    "transpose_chain/identity": (f32[2, 3, 4], lambda b, x: b.transpose(
        b.transpose(x, perm=(1, 2, 0)), perm=(2, 0, 1)), {}),
    # The indices are transposed instead of the rows.
    "gather_transpose": (f32[4, 3], lambda b, x: b.transpose(b.op(
        "gather", x, b.constant(np.array([[0, 1, 3], [3, 3, 2]], "int32")), axis=0),
        perm=(1, 0, 2)), {"constant": 1, "gather": 1, "transpose": 1}),
    "gather_transpose/middle_axis": (f32[2, 5, 3], lambda b, x: b.transpose(b.op(
        "gather", x, b.constant(np.array([[0, 4], [1, 1], [2, 0]], "int32")), axis=1),
        perm=(0, 2, 1, 3)), {"constant": 1, "gather": 1, "transpose": 1}),
    "scatter_transpose": (f32[3, 2, 4], lambda b, x: b.op(
        "scatter_add", b.transpose(x, perm=(1, 0, 2)),
        b.constant(np.array([[0, 4, 4], [1, 4, 0]], "int32")), axis=0, size=5),
        {"constant": 1, "transpose": 1, "scatter_add": 1}),
    "reshape_chain": (f32["N", 6], lambda b, x: b.reshape(
        b.expand_dims(b.reshape(x, shape=("N", 2, 3)), axes=(0,)), shape=("N", 3, 2)),
        {"reshape": 1}),
    "reshape_chain/back": (f32[2, 3], lambda b, x: b.reshape(b.reshape(x, shape=(6,)),
                                                             shape=(2, 3)), {}),
    "reshape_noop": (f32["N", 3], lambda b, x: b.squeeze(b.reshape(x, shape=("N", 3)),
                                                         axes=()), {}),
    "broadcast_noop": (f32["N", 3], lambda b, x: b.broadcast_to(x, shape=("N", 3)), {}),
    "cast_noop": (f32[3], lambda b, x: b.cast(x, dtype="float32"), {}),
    "broadcast_scalar": (f32["N", 3], lambda b, x: b.add(
        x, b.broadcast_to(b.expand_dims(b.constant(2.0), axes=(0,)), shape=("N", 3))),
        {"add": 1, "constant": 1}),
    # The bias add and relu run on the pooled image.
    "pool_activation": (f32["N", 4, 4, 3], lambda b, x: b.op("max_pool2d", b.relu(b.add(
        x, b.constant(np.array([0.5, -1.0, 2.0], "f4")))), pool_size=(2, 2)),
        {"add": 1, "constant": 1, "max_pool2d": 1, "relu": 1}),
    "pool_activation/chain": (f32["N", 5, 5, 2], lambda b, x: b.op("max_pool2d", b.op(
        "clip", b.maximum(b.constant(np.full((1, 1, 1, 2), -0.5, "f4")), b.sub(x, b.constant(
            np.array([1.0, -1.0], "f4")))), min=-1.0, max=1.0), pool_size=(3, 3), strides=(2, 2),
        padding="same"), {"clip": 1, "constant": 2, "max_pool2d": 1, "maximum": 1, "sub": 1}),
    "log_softmax": (f32["N", 3], lambda b, x: b.log(b.softmax(x, axis=-1)),
                    {"log_softmax": 1}),
    "log_sigmoid": (f32[5], lambda b, x: b.log(b.sigmoid(x)),
                    {"neg": 2, "softplus": 1}),
    "log_sigmoid/complement": (f32[5], lambda b, x: b.log(b.sub(1.0, b.sigmoid(x))),
                               {"neg": 1, "softplus": 1}),
    "softmax_cross_entropy": (f32["N", 4], lambda b, x: categorical_crossentropy(
        b, b.softmax(b.tanh(x), axis=-1), b.softmax(x, axis=-1)), None),
    "sigmoid_cross_entropy": (f32["N", 1], lambda b, x: binary_crossentropy(
        b, b.sigmoid(b.tanh(x)), b.sigmoid(x)), None),
}


def _case(name: str, seed: int = 0) -> Case:
    t, body, _ = CASES[name]
    b = GraphBuilder("g")
    x = b.input("x", t)
    b.output(body(b, x), "y")
    array = np.random.default_rng(seed).standard_normal(t.resolve({"N": 3})).astype("f4")
    return Case(b.build(), {"x": array})


def test_every_rule_has_a_case() -> None:
    assert set(RULES) == {name.split("/")[0] for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_rule(name: str) -> None:
    case = _case(name)
    fast = name in STABLE_LOSS_RULES
    after = simplify(case.graph, fast_math=fast)
    verify(after)
    expected = CASES[name][2]
    if expected is not None:
        assert op_counts(after) == expected, str(after)
    else:  # the loss rules: the log of a probability is gone
        assert "log" not in op_counts(after) and "log" in op_counts(case.graph)
    assert after.output_names == ("y",)
    assert parse(str(after)) == after
    assert_same_results(case.graph, after, case)
    assert simplify(after, fast_math=fast) == after
    assert str(simplify(case.graph, fast_math=fast)) == str(after)
    if fast:  # off by default: Keras's clipped numbers are kept
        assert simplify(case.graph) == case.graph


def test_a_transpose_that_moves_the_gathered_rows_is_left_alone() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[4, 3])
    rows = b.op("gather", x, b.constant(np.array([[0, 1], [3, 2]], "int32")), axis=0)
    b.output(b.transpose(rows, perm=(2, 1, 0)), "y")
    b.output(b.op("scatter_add", b.transpose(rows, perm=(0, 2, 1)),
                  b.constant(np.array([0, 3], "int32")), axis=0, size=4), "z")
    graph = b.build()
    assert op_counts(simplify(graph)) == op_counts(graph)


def _pooled_chain(b: GraphBuilder, x, bias) -> object:
    return b.op("max_pool2d", b.relu(b.add(x, b.constant(bias))), pool_size=(2, 2))


def test_pool_activation_pools_first_with_the_same_numbers() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 4, 6, 3])
    b.output(_pooled_chain(b, x, np.array([0.5, -1.0, np.inf], "f4")), "y")
    graph = b.build()
    after = simplify(graph)
    assert [n.op for n in after.nodes if n.op != "constant"] == ["max_pool2d", "add", "relu"]
    assert after.nodes[[n.op for n in after.nodes].index("max_pool2d")].inputs[0].name == "x"
    rng = np.random.default_rng(0)
    array = rng.standard_normal((3, 4, 6, 3)).astype("f4")
    array[0, 1, 1, 0] = np.nan  # a NaN wins either way
    array[1, :2, :2, 1] = -2.0  # relu's zeros tie
    array[2, 0, 0, :2] = np.inf
    before = run_graph(graph, {"x": array}, {})[0]["y"]
    got = run_graph(after, {"x": array}, {})[0]["y"]
    np.testing.assert_array_equal(got, before)
    assert np.isnan(got[0, 0, 0, 0]) and got[1, 0, 0, 1] == 0.0


@pytest.mark.parametrize("variant, ops", [
    ("read_twice", ["constant", "add", "relu", "max_pool2d"]),  # as a train step's gradient
    ("bias_over_columns", ["constant", "add", "max_pool2d", "relu"]),  # only the relu moves
    ("bias_minus_x", ["constant", "sub", "max_pool2d"]),  # decreasing in x
])
def test_pool_activation_moves_only_what_commutes_with_the_max(variant: str,
                                                               ops: list[str]) -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N", 4, 4, 3])
    if variant == "read_twice":
        act = b.relu(b.add(x, b.constant(np.ones(3, "f4"))))
        b.output(b.op("max_pool2d", act, pool_size=(2, 2)), "y")
        b.output(act, "z")
    elif variant == "bias_over_columns":
        b.output(_pooled_chain(b, x, np.arange(12, dtype="f4").reshape(4, 3)), "y")
    else:
        b.output(b.op("max_pool2d", b.sub(b.constant(np.ones(3, "f4")), x), pool_size=(2, 2)),
                 "y")
    graph = b.build()
    after = simplify(graph)
    assert [n.op for n in after.nodes] == ops
    array = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype("f4")
    assert_same_results(graph, after, Case(graph, {"x": array}), rtol=0, atol=0)


_MONOTONE_STEPS = ("relu", "clip", "add", "sub", "maximum", "minimum", "sub_from", "mul")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pool_activation_keeps_every_value_on_random_chains_and_windows(data) -> None:
    """A random chain of elementwise steps under a max pooling of random geometry: whatever
    the rule moves, the pooled values are bit for bit those before (NaN included); steps it
    must not move (b - x, a multiply, a bias varying over columns) stay before the pool."""
    h, w, c = data.draw(st.integers(2, 6)), data.draw(st.integers(2, 6)), data.draw(
        st.integers(1, 3))
    pool = (data.draw(st.integers(1, min(h, 3))), data.draw(st.integers(1, min(w, 3))))
    strides = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    steps = data.draw(st.lists(st.sampled_from(_MONOTONE_STEPS), min_size=1, max_size=4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    b = GraphBuilder("g")
    v = b.input("x", f32["N", h, w, c])
    for step in steps:
        shape = data.draw(st.sampled_from([(c,), (1, 1, 1, c), (), (w, c)]))
        other = b.constant(rng.standard_normal(shape).astype("f4"))
        if step == "relu":
            v = b.relu(v)
        elif step == "clip":
            v = b.op("clip", v, min=-0.5, max=0.5)
        elif step == "sub_from":
            v = b.sub(other, v)
        else:
            v = b.op(step, v, other)
    b.output(b.op("max_pool2d", v, pool_size=pool, strides=strides, padding=padding), "y")
    graph = b.build()
    after = simplify(graph)
    verify(after)
    array = rng.standard_normal((3, h, w, c)).astype("f4")
    array[rng.random(array.shape) < 0.1] = np.nan
    np.testing.assert_array_equal(run_graph(after, {"x": array}, {})[0]["y"],
                                  run_graph(graph, {"x": array}, {})[0]["y"])


def test_rewritten_values_keep_their_names() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    with b.scope("loss"):
        y = b.log(b.softmax(x))
    b.output(b.exp(y), "p")
    after = simplify(b.build())
    assert [(n.op, n.output.name) for n in after.nodes] == [("log_softmax", "loss.log"),
                                                           ("exp", "0")]


def test_outputs_and_updates_follow_replaced_values() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    s = b.state("s", f32[3])
    b.output(b.neg(b.neg(x)), "y")
    b.output(b.mul(s, 1.0), "z")
    b.update(s, b.add(b.mul(s, 1.0), 0.0))
    after = simplify(b.build())
    assert after.nodes == ()
    assert after.outputs == (("y", x), ("z", s))
    assert after.updates == (("s", s),)
    verify(after)


def test_rules_apply_inside_scan_bodies() -> None:
    body = GraphBuilder("cell")
    h = body.input("h", f32[2])
    xt = body.input("xt", f32[2])
    body.output(body.add(body.neg(body.neg(h)), body.mul(xt, 1.0)), "h")
    b = GraphBuilder("g")
    h0 = b.input("h0", f32[2])
    xs = b.input("xs", f32[4, 2])
    b.output(b.op("scan", h0, xs, num_carry=1, num_seq=1, body=body.build()), "h")
    after = simplify(b.build())
    assert op_counts(after.nodes[0].body) == {"add": 1}


def _clipped_loss_case() -> Case:
    """Softmax / sigmoid probabilities pushed past Keras's clip (logits of +-40)."""
    b = GraphBuilder("g")
    logits = b.input("logits", f32["N", 3])
    target = b.input("target", f32["N", 3])
    b.output(categorical_crossentropy(b, target, b.softmax(logits, axis=-1)), "cce")
    b.output(binary_crossentropy(b, target, b.sigmoid(logits)), "bce")
    x = np.array([[40.0, -40.0, 0.0], [1.0, 2.0, 3.0]], "f4")
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "f4")
    return Case(b.build(), {"logits": x, "target": y})


def test_stable_loss_rules_change_results_only_where_the_clip_was_active() -> None:
    case = _clipped_loss_case()
    keras = run_graph(case.graph, case.inputs)[0]
    stable = run_graph(simplify(case.graph, fast_math=True), case.inputs)[0]
    # Row 0 is clipped: Keras's -log(1e-7) ~ 16.1 against the true 80 (cce) ...
    assert keras["cce"][0] == pytest.approx(-np.log(1e-7), rel=1e-3)
    assert stable["cce"][0] == pytest.approx(80.0, rel=1e-5)
    # ... row 1 is not, and agrees.
    np.testing.assert_allclose(stable["cce"][1], keras["cce"][1], rtol=1e-5)
    assert stable["bce"][0] > keras["bce"][0] + 1
    np.testing.assert_allclose(stable["bce"][1], keras["bce"][1], rtol=1e-5)


def test_stable_loss_rules_can_be_turned_off() -> None:
    case = _clipped_loss_case()
    kept = simplify(case.graph, disable=STABLE_LOSS_RULES)
    assert op_counts(kept)["log"] == 3
    assert_same_results(case.graph, kept, case, rtol=0, atol=0)
    with pytest.raises(KilnValueError, match="softmax_cross_entropy"):
        simplify(case.graph, disable=["no_such_rule"])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_simplify_preserves_results_on_random_graphs(case: Case) -> None:
    after = check_pass_on_random_graph(simplify, case)
    assert simplify(after) == after


@pytest.mark.parametrize("name", MODELS)
def test_simplify_preserves_train_steps(name: str) -> None:
    case = train_step_case(name)
    after = simplify(case.graph)
    assert after != case.graph
    assert_same_results(case.graph, after, case)


def test_dead_code_keeps_its_inputs_when_a_rewrite_frees_them() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    n = b.neg(x)
    b.exp(n)  # dead before and after: dce's to remove, with the neg it reads
    b.output(b.neg(n), "y")  # neg(neg(x)) -> x leaves the first neg to the dead exp alone
    after = simplify(b.build())
    verify(after)
    assert op_counts(after) == {"neg": 1, "exp": 1} and after.outputs == (("y", x),)
