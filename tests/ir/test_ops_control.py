"""scan: results against plain NumPy loops, reverse order, zero steps, symbolic batch and
length, text round trips, type errors, and gradients (the registry checks the samples')."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, KilnTypeError, TensorType, grad, parse
from kiln.runtimes.reference import run_graph
from tests.ir.gradcheck import run_sample, sample_graph
from tests.ir.samples.control import CUMSUM, SAMPLES, body, cumsum_step, f64, rnn_step

BY_NAME = {s.name: s for s in SAMPLES}


def numpy_rnn(h, xs, w, u, bias):  # noqa: ANN001, ANN201
    ys = []
    for x in xs:
        h = np.tanh(x @ w + h @ u + bias)
        ys.append(h)
    return h, np.stack(ys) if ys else np.zeros((0, *h.shape))


def numeric_grad(loss, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # noqa: ANN001
    result = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        result[index] = (loss(plus) - loss(minus)) / (2 * eps)
    return result


def assert_grads_match_finite_differences(graph, with_grad, feed: dict) -> None:  # noqa: ANN001
    """Every input's `grad.NAME` from `with_grad` against central differences of the scalar
    output `loss` of `graph`."""
    grads, _ = run_graph(with_grad, feed)
    for name, x in feed.items():
        def loss(v: np.ndarray, name: str = name) -> float:
            return float(run_graph(graph, {**feed, name: v})[0]["loss"])

        np.testing.assert_allclose(grads[f"grad.{name}"], numeric_grad(loss, x),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


# -- forward -------------------------------------------------------------------------------
def test_cumsum_matches_numpy() -> None:
    sample = BY_NAME["cumsum"]
    c0, xs = sample.inputs
    final, ys = run_sample(sample)
    np.testing.assert_allclose(ys, c0 + np.cumsum(xs, axis=0))
    np.testing.assert_allclose(final, ys[-1])


def test_rnn_matches_numpy() -> None:
    sample = BY_NAME["rnn"]
    final, ys = run_sample(sample)
    expected_final, expected_ys = numpy_rnn(*sample.inputs)
    np.testing.assert_allclose(final, expected_final)
    np.testing.assert_allclose(ys, expected_ys)


def test_reverse_walks_from_the_end_and_keeps_time_index() -> None:
    sample = BY_NAME["reverse"]
    c, xs = sample.inputs
    ys = np.zeros_like(xs)
    for t in reversed(range(len(xs))):
        ys[t] = c * xs[t]
        c = np.tanh(0.8 * c + xs[t])
    final, got = run_sample(sample)
    np.testing.assert_allclose(final, c)
    np.testing.assert_allclose(got, ys)


def test_several_carries_and_ys() -> None:
    a, s, xs, zs, k = BY_NAME["multi"].inputs
    y1, y2 = [], []
    for x, z in zip(xs, zs, strict=True):
        new_a = a * x + k * z
        s = s + np.sum(new_a * a)
        y1.append(new_a * a)
        y2.append(s * z)
        a = new_a
    got = run_sample(BY_NAME["multi"])
    for g, e in zip(got, [a, s, np.stack(y1), np.stack(y2)], strict=True):
        np.testing.assert_allclose(g, e)


def test_int_carry_counts_steps() -> None:
    count, h, xs = run_sample(BY_NAME["int_carry"])
    assert count.dtype == np.int64 and count == 4
    _, h0, x = BY_NAME["int_carry"].inputs
    np.testing.assert_allclose(h, h0 + sum(t * x[t] for t in range(4)))


def test_zero_steps_give_the_initial_carry_and_empty_ys() -> None:
    c0, _ = BY_NAME["empty"].inputs
    final, ys = run_sample(BY_NAME["empty"])
    np.testing.assert_array_equal(final, c0)
    assert ys.shape == (0, 3) and ys.dtype == np.float64


@settings(max_examples=25, deadline=None)
@given(length=st.integers(0, 5), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_cumsum_any_length_and_direction(length: int, reverse: bool, seed: int) -> None:
    gen = np.random.default_rng(seed)
    c0, xs = gen.standard_normal(3), gen.standard_normal((length, 3))
    b = GraphBuilder("g")
    c = b.input("c", f64(3))
    x = b.input("x", f64("T", 3))
    final, ys = b.scan(c, x, body=CUMSUM, num_carry=1, num_seq=1, reverse=reverse)
    b.output(final, "final")
    b.output(ys, "ys")
    out, _ = run_graph(b.build(), {"c": c0, "x": xs})
    sums = np.cumsum(xs[::-1], axis=0)[::-1] if reverse else np.cumsum(xs, axis=0)
    np.testing.assert_allclose(out["ys"], c0 + sums)
    np.testing.assert_allclose(out["final"], c0 + xs.sum(axis=0))


# -- symbolic batch ------------------------------------------------------------------------
def rnn_graph(batch: object, length: object):  # noqa: ANN201
    step = body("rnn", [f64(batch, 4), f64(batch, 3), f64(3, 4), f64(4, 4), f64(4)], rnn_step)
    b = GraphBuilder("rnn")
    operands = [b.input("h", f64(batch, 4)), b.input("xs", f64(length, batch, 3)),
                b.input("w", f64(3, 4)), b.input("u", f64(4, 4)), b.input("bias", f64(4))]
    final, ys = b.scan(*operands, body=step, num_carry=1, num_seq=1)
    b.output(b.add(b.sum(b.tanh(final)), b.sum(b.mul(ys, ys))), "loss")
    b.output(ys, "ys")
    return b.build()


@pytest.mark.parametrize("batch,length", [(1, 3), (3, 4), (2, 0)])
def test_symbolic_batch_and_length(batch: int, length: int) -> None:
    gen = np.random.default_rng(batch)
    feed = {"h": gen.standard_normal((batch, 4)), "xs": gen.standard_normal((length, batch, 3)),
            "w": gen.standard_normal((3, 4)) * 0.5, "u": gen.standard_normal((4, 4)) * 0.5,
            "bias": gen.standard_normal(4)}
    symbolic = rnn_graph("N", "T")
    assert parse(str(symbolic)) == symbolic
    out, _ = run_graph(symbolic, feed)
    np.testing.assert_allclose(out["ys"], numpy_rnn(*feed.values())[1])

    with_grad = grad(symbolic, "loss", ["h", "xs", "w", "u", "bias"])
    assert parse(str(with_grad)) == with_grad
    assert_grads_match_finite_differences(symbolic, with_grad, feed)


# -- gradient structure --------------------------------------------------------------------
def test_backward_is_one_reverse_scan_over_saved_carries() -> None:
    graph = grad(sample_graph(BY_NAME["rnn"]), "y1", ["x0", "x1", "x2"])
    forward, backward = [n for n in graph.nodes if n.op == "scan"]
    assert backward.attr["reverse"] is True
    # the forward also returns the stacked carries entering each step; the backward scans them
    assert backward.inputs[backward.attr["num_carry"]] == forward.outputs[-1]
    assert parse(str(graph)) == graph


def test_the_backward_step_reads_the_saved_activation_instead_of_recomputing_it() -> None:
    """The forward also stacks tanh(x @ w + h @ u + bias) (not the sum: only adds lead from
    it to the tanh, whose VJP reads its result); the backward step reads it, so its only
    matmuls are the four of the VJPs, none recomputing a forward product, and it computes no
    tanh; the gradients still match finite differences (rnn sample, every input)."""
    sample = BY_NAME["rnn"]
    graph = grad(sample_graph(sample), "y1", ["x0", "x1", "x2", "x3", "x4"])
    forward, backward = [n for n in graph.nodes if n.op == "scan"]
    stacked = forward.outputs[2:-1]  # after carry and ys, before the stacked carries
    assert len(stacked) == 1
    assert _producer(forward.body, forward.body.output_values[2]).op == "tanh"
    saved = stacked[0]
    assert saved.type.shape == (5, 2, 4) and saved in backward.inputs
    assert not any(n.op == "tanh" for n in backward.body.nodes)
    body = backward.body
    h, x = body.inputs[backward.attr["num_carry"]], body.inputs[backward.attr["num_carry"] + 1]
    matmuls = [n for n in body.nodes if n.op == "matmul"]
    assert len(matmuls) == 4
    assert not any(n.inputs[0] in (h, x) and n.inputs[1].name in ("a2", "a3")
                   for n in matmuls)  # h @ u and x @ w are not computed again
    grads, _ = run_graph(graph, dict(zip([f"x{i}" for i in range(5)], sample.inputs,
                                         strict=True)))
    for i, x0 in enumerate(sample.inputs):
        def loss(v: np.ndarray, i: int = i) -> float:
            feed = {f"x{k}": (v if k == i else a) for k, a in enumerate(sample.inputs)}
            return float(np.sum(run_graph(sample_graph(sample), feed)[0]["y1"]))

        np.testing.assert_allclose(grads[f"grad.x{i}"], numeric_grad(loss, x0), rtol=1e-5,
                                   atol=1e-6, err_msg=f"x{i}")


def _producer(graph, value):  # noqa: ANN001, ANN202
    return next(n for n in graph.nodes if value in n.outputs)


def lstm_step(b: GraphBuilder, h, c, xw, u):  # noqa: ANN001, ANN201
    """An LSTM cell as the Keras frontend builds it: the input product (and bias) xw comes
    in as a sequence, the four gates are split from one sum."""
    i, f, g, o = b.split(b.add(xw, b.matmul(h, u)), axis=1, sizes=(3, 3, 3, 3))
    c_new = b.add(b.mul(b.sigmoid(f), c), b.mul(b.sigmoid(i), b.tanh(g)))
    h_new = b.mul(b.sigmoid(o), b.tanh(c_new))
    return h_new, c_new, h_new


def test_an_lstm_cell_saves_its_activations_and_its_backward_runs_none() -> None:
    """The forward stacks the four gates and tanh(c), not the gate sum (only a split leads
    from it to the activations); the backward step then computes no sigmoid, tanh or
    forward matmul, and the gradients match finite differences."""
    step = body("lstm", [f64(2, 3), f64(2, 3), f64(2, 12), f64(3, 12)], lstm_step)
    b = GraphBuilder("lstm")
    names = ("h", "c", "xw", "u")
    operands = [b.input("h", f64(2, 3)), b.input("c", f64(2, 3)),
                b.input("xw", f64(4, 2, 12)), b.input("u", f64(3, 12))]
    h, _, ys = b.scan(*operands, body=step, num_carry=2, num_seq=1)
    b.output(b.add(b.sum(b.mul(h, h)), b.sum(b.tanh(ys))), "loss")
    graph = b.build()
    with_grad = grad(graph, "loss", list(names))
    forward, backward = [n for n in with_grad.nodes if n.op == "scan"]
    saved = forward.body.output_values[3:-2]  # after carries and ys, before carries in
    assert sorted(_producer(forward.body, v).op for v in saved) == [
        "sigmoid", "sigmoid", "sigmoid", "tanh", "tanh"]
    assert not any(n.op in ("sigmoid", "tanh", "exp") for n in backward.body.nodes)
    u_in = backward.body.inputs[-1]
    assert not any(n.op == "matmul" and u_in in n.inputs and n.inputs[0].type.shape == (2, 3)
                   for n in backward.body.nodes)  # h @ u is not computed again
    gen = np.random.default_rng(3)
    feed = {"h": gen.standard_normal((2, 3)), "c": gen.standard_normal((2, 3)),
            "xw": gen.standard_normal((4, 2, 12)), "u": gen.standard_normal((3, 12)) * 0.5}
    assert_grads_match_finite_differences(graph, with_grad, feed)


def test_gradient_of_a_nested_scan() -> None:
    def outer_step(b, c, xs):  # noqa: ANN001, ANN202
        final, ys = b.scan(c, xs, body=CUMSUM, num_carry=1, num_seq=1)
        return b.tanh(b.add(c, final)), b.sum(ys, axes=(0,))

    outer = body("outer", [f64(3), f64(2, 3)], outer_step)
    b = GraphBuilder("nested")
    c = b.input("c", f64(3))
    xs = b.input("xs", f64(4, 2, 3))
    final, ys = b.scan(c, xs, body=outer, num_carry=1, num_seq=1)
    b.output(b.add(b.sum(final), b.sum(b.square(ys))), "loss")
    graph = b.build()
    gen = np.random.default_rng(3)
    feed = {"c": gen.standard_normal(3) * 0.3, "xs": gen.standard_normal((4, 2, 3)) * 0.3}
    assert_grads_match_finite_differences(graph, grad(graph, "loss", ["c", "xs"]), feed)


# -- type errors ---------------------------------------------------------------------------
def build_scan(types: list[TensorType], step_body, **attrs):  # noqa: ANN001, ANN201
    b = GraphBuilder("bad")
    operands = [b.input(f"x{i}", t) for i, t in enumerate(types)]
    return b.scan(*operands, body=step_body, **{"num_carry": 1, "num_seq": 1, **attrs})


def test_carry_type_mismatch_names_scan_and_operand() -> None:
    with pytest.raises(KilnTypeError, match=r"^scan .*carry 0 \(operand 0\).*f32\[3\]"):
        build_scan([TensorType((3,), "float32"), f64(5, 3)], CUMSUM)


def test_sequence_slice_mismatch_names_the_sequence() -> None:
    with pytest.raises(KilnTypeError, match=r"^scan .*slice of sequence 0 \(operand 1\)"):
        build_scan([f64(3), f64(5, 4)], CUMSUM)


def test_constant_mismatch_names_the_constant() -> None:
    with pytest.raises(KilnTypeError, match=r"constant 2 \(operand 4\)"):
        build_scan([f64(2, 4), f64(5, 2, 3), f64(3, 4), f64(4, 4), f64(5)],
                   BY_NAME["rnn"].body)


def test_sequences_of_different_lengths() -> None:
    two = body("two", [f64(3), f64(3), f64(3)], lambda b, c, x, z: cumsum_step(b, c, b.mul(x, z)))
    with pytest.raises(KilnTypeError, match=r"one length 5.*sequence 1 \(operand 2\)"):
        build_scan([f64(3), f64(5, 3), f64(4, 3)], two, num_seq=2)


def test_new_carry_of_another_type() -> None:
    widen = body("widen", [f64(3), f64(3)], lambda b, c, x: (b.sum(c), x))
    with pytest.raises(KilnTypeError, match=r"new carry 0.*f64\[3\]. Received: .*f64\[\]"):
        build_scan([f64(3), f64(5, 3)], widen)


def test_wrong_number_of_body_inputs_and_bad_attributes() -> None:
    with pytest.raises(KilnTypeError, match=r"body with 3 inputs"):
        build_scan([f64(3), f64(5, 3), f64(2)], CUMSUM)
    with pytest.raises(KilnTypeError, match=r"num_seq >= 1"):
        build_scan([f64(3), f64(5, 3)], CUMSUM, num_carry=2, num_seq=0)
    with pytest.raises(KilnTypeError, match=r"rank >= 1"):
        build_scan([f64(3), f64()], CUMSUM)
