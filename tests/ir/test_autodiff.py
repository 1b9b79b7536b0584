"""kiln.ir.grad on small graphs against central finite differences: fan-out, no path, integer
paths, state, non-scalar targets, kept outputs and updates, text round trips, second order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kiln.ir import (
    Graph,
    GraphBuilder,
    KilnValueError,
    Value,
    f64,
    grad,
    i32,
    i64,
    parse,
    verify,
)
from kiln.runtimes.reference import run_graph

Feed = dict[str, np.ndarray]


def graph_of(build: Callable[[GraphBuilder], None], name: str = "f") -> Graph:
    b = GraphBuilder(name)
    build(b)
    return b.build()


def checked(graph: Graph) -> Graph:
    """Every graph grad returns verifies and survives the text format."""
    verify(graph)
    assert parse(str(graph)) == graph
    return graph


def numeric_grad(graph: Graph, of: str, inputs: Feed, wrt: str, state: Feed | None = None,
                 eps: float = 1e-6) -> np.ndarray:
    """d sum(output `of`) / d `wrt` (an input or a state value) by central differences."""
    state = state or {}
    is_state = wrt in state
    base = (state if is_state else inputs)[wrt]
    result = np.zeros_like(base)

    def loss(value: np.ndarray) -> float:
        feed_in = {**inputs, wrt: value} if not is_state else inputs
        feed_state = {**state, wrt: value} if is_state else state
        return float(np.sum(run_graph(graph, feed_in, feed_state)[0][of]))

    for index in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += eps
        minus[index] -= eps
        result[index] = (loss(plus) - loss(minus)) / (2 * eps)
    return result


def check_against_fd(graph: Graph, of: str, inputs: Feed, wrt: list[str],
                     state: Feed | None = None) -> dict[str, np.ndarray]:
    with_grad = checked(grad(graph, of, wrt))
    outputs, _ = run_graph(with_grad, inputs, state)
    for name in wrt:
        np.testing.assert_allclose(outputs[f"grad.{name}"],
                                   numeric_grad(graph, of, inputs, name, state),
                                   rtol=1e-6, atol=1e-8, err_msg=f"d {of} / d {name}")
    return outputs


RNG = np.random.default_rng(0)
X = RNG.uniform(0.5, 1.5, (2, 3))


# -- fan-out ---------------------------------------------------------------------------------
def test_a_value_used_three_times() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64["N", 3])
        b.output(b.sum(b.mul(b.mul(x, x), x)), "y")

    outputs = check_against_fd(graph_of(build), "y", {"x": X}, ["x"])
    np.testing.assert_allclose(outputs["grad.x"], 3 * X**2, rtol=1e-12)


def test_a_value_used_three_times_by_one_op_each() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64[2, 3])
        b.output(b.sum(b.add(b.add(x, x), x)), "y")

    outputs = check_against_fd(graph_of(build), "y", {"x": X}, ["x"])
    np.testing.assert_allclose(outputs["grad.x"], np.full_like(X, 3.0))


def test_a_value_used_by_two_different_ops() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64[2, 3])
        h = b.exp(x)
        b.output(b.sum(b.add(b.tanh(h), b.square(h))), "y")

    outputs = check_against_fd(graph_of(build), "y", {"x": X}, ["x"])
    h = np.exp(X)
    np.testing.assert_allclose(outputs["grad.x"], ((1 - np.tanh(h) ** 2) + 2 * h) * h,
                               rtol=1e-12)


def test_broadcast_operands_get_summed_gradients() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64["N", 3])
        bias = b.input("bias", f64[3])
        scale = b.input("scale", f64[()])
        b.output(b.sum(b.square(b.mul(b.add(x, bias), scale))), "y")

    feed = {"x": X, "bias": RNG.standard_normal(3), "scale": np.array(0.7)}
    check_against_fd(graph_of(build), "y", feed, ["x", "bias", "scale"])


# -- no gradient -----------------------------------------------------------------------------
def test_wrt_without_a_path_gets_zeros_of_its_type() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64["N", 3])
        b.input("unused", f64["N", 2])
        b.output(b.sum(b.square(x)), "y")

    graph = graph_of(build)
    with_grad = checked(grad(graph, "y", ["unused", "x"]))
    assert with_grad.value(with_grad.outputs[1][1].name).type == f64["N", 2]
    for n in (1, 4):
        feed = {"x": RNG.standard_normal((n, 3)), "unused": RNG.standard_normal((n, 2))}
        outputs, _ = run_graph(with_grad, feed)
        np.testing.assert_array_equal(outputs["grad.unused"], np.zeros((n, 2)))
        np.testing.assert_allclose(outputs["grad.x"], 2 * feed["x"])


def test_cast_through_an_integer_carries_no_gradient() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64[2, 3])
        floor_ish = b.cast(b.cast(x, dtype="int32"), dtype="float64")
        b.output(b.sum(b.mul(x, floor_ish)), "y")

    x = RNG.uniform(-2.9, 2.9, (2, 3))
    x = np.where(np.abs(x - np.round(x)) < 0.05, x + 0.1, x)  # away from integers
    outputs = check_against_fd(graph_of(build), "y", {"x": x}, ["x"])
    np.testing.assert_allclose(outputs["grad.x"], np.trunc(x))


def test_an_integer_input_cast_to_float_gets_an_integer_zero() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64[3])
        k = b.input("k", i32[3])
        b.output(b.sum(b.mul(x, b.cast(k, dtype="float64"))), "y")

    k = np.array([2, -1, 5], np.int32)
    with_grad = checked(grad(graph_of(build), "y", ["x", "k"]))
    outputs, _ = run_graph(with_grad, {"x": X[0], "k": k})
    np.testing.assert_array_equal(outputs["grad.x"], k.astype(np.float64))
    assert outputs["grad.k"].dtype == np.int32
    np.testing.assert_array_equal(outputs["grad.k"], np.zeros(3, np.int32))


def test_argmax_feeding_where() -> None:
    def build(b: GraphBuilder) -> None:
        x = b.input("x", f64["N", 3])
        best = b.argmax(x, axis=1, keepdims=True)
        mask = b.equal(best, b.constant(np.arange(3, dtype=np.int64)))
        picked = b.where(mask, x, b.constant(0.0, "float64"))
        b.output(b.sum(b.mul(picked, x)), "y")

    x = np.array([[0.3, 1.2, -0.4], [2.0, 0.1, 0.7]])
    outputs = check_against_fd(graph_of(build), "y", {"x": x}, ["x"])
    mask = np.array([[0, 1, 0], [1, 0, 0]], np.float64)
    np.testing.assert_allclose(outputs["grad.x"], 2 * x * mask)


# -- state, targets, kept outputs ------------------------------------------------------------
def stateful(b: GraphBuilder) -> None:
    x = b.input("x", f64["N", 3])
    w = b.state("w", f64[3])
    steps = b.state("steps", i64[()])
    pred = b.mul(x, w, name="pred")
    loss = b.add(b.sum(b.square(pred)), b.sum(b.mul(w, 0.5)), name="loss")
    b.output(pred, "pred")
    b.output(loss, "loss")
    b.update(w, b.sub(w, b.mul(w, 0.1)))
    b.update(steps, b.add(steps, 1))


STATE = {"w": np.array([0.5, -1.0, 2.0]), "steps": np.array(3, np.int64)}


def test_gradient_with_respect_to_state() -> None:
    graph = graph_of(stateful)
    outputs = check_against_fd(graph, "loss", {"x": X}, ["w"], STATE)
    expected = np.sum(2 * X**2 * STATE["w"], axis=0) + 0.5
    np.testing.assert_allclose(outputs["grad.w"], expected, rtol=1e-12)


def test_grad_keeps_the_original_outputs_and_updates() -> None:
    graph = graph_of(stateful)
    with_grad = checked(grad(graph, "loss", ["x", "w"]))
    assert with_grad.name == graph.name
    assert with_grad.output_names == ("pred", "loss", "grad.x", "grad.w")
    assert [name for name, _ in with_grad.updates] == ["w", "steps"]
    assert with_grad.inputs == graph.inputs and with_grad.state == graph.state
    before, state_before = run_graph(graph, {"x": X}, STATE)
    after, state_after = run_graph(with_grad, {"x": X}, STATE)
    for name in graph.output_names:
        np.testing.assert_array_equal(after[name], before[name])
    for name in state_before:
        np.testing.assert_array_equal(state_after[name], state_before[name])


def test_a_non_scalar_target_is_differentiated_as_its_sum() -> None:
    graph = graph_of(stateful)
    outputs = check_against_fd(graph, "pred", {"x": X}, ["x", "w"], STATE)
    np.testing.assert_allclose(outputs["grad.x"], np.broadcast_to(STATE["w"], X.shape))
    np.testing.assert_allclose(outputs["grad.w"], X.sum(axis=0))


def test_of_and_wrt_may_be_values_or_intermediate_names() -> None:
    graph = graph_of(stateful)
    pred = graph.value("pred")
    by_value = checked(grad(graph, graph.outputs[1][1], [graph.inputs[0], pred]))
    outputs, _ = run_graph(by_value, {"x": X}, STATE)
    np.testing.assert_allclose(outputs["grad.pred"], 2 * X * STATE["w"])
    assert by_value.output_names[-2:] == ("grad.x", "grad.pred")


def test_grad_errors() -> None:
    graph = graph_of(stateful)
    with pytest.raises(KilnValueError, match="no output or value named nope"):
        grad(graph, "nope", ["x"])
    with pytest.raises(KilnValueError, match=r"floating-point.*%steps: i64\[\]"):
        grad(graph, "steps", ["x"])
    with pytest.raises(KilnValueError, match=r"no value named %ghost"):
        grad(graph, "loss", [Value("ghost", f64[3])])


# -- second order ----------------------------------------------------------------------------
def cube(b: GraphBuilder) -> None:
    x = b.input("x", f64[4])
    b.output(b.mul(b.mul(x, x), x), "y")


def cube_by_pow(b: GraphBuilder) -> None:
    x = b.input("x", f64[4])
    b.output(b.pow(x, 3.0), "y")


CUBE_X = np.array([0.5, 1.0, 1.5, 2.25])


@pytest.mark.parametrize("build", [cube, cube_by_pow], ids=["mul", "pow"])
def test_second_derivative_through_a_renamed_gradient_output(build: Callable) -> None:
    first = checked(grad(graph_of(build), "y", ["x"]))
    b = GraphBuilder("dcube")
    x = b.input("x", f64[4])
    outs, _ = b.call(first, [x])
    b.output(outs["grad.x"], "dy")
    second = checked(grad(b.build(), "dy", ["x"]))
    outputs, _ = run_graph(second, {"x": CUBE_X})
    np.testing.assert_allclose(outputs["dy"], 3 * CUBE_X**2, rtol=1e-12)
    np.testing.assert_allclose(outputs["grad.x"], 6 * CUBE_X, rtol=1e-12)


def test_grad_of_a_grad_graph_output() -> None:
    first = grad(graph_of(cube), "y", ["x"])
    second = checked(grad(first, "grad.x", ["x"]))
    outputs, _ = run_graph(second, {"x": CUBE_X})
    assert any(np.allclose(v, 6 * CUBE_X) for v in outputs.values())
