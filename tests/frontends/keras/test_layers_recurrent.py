"""SimpleRNN, LSTM and GRU: each in a tiny model (batch 3, timesteps 4, features 2, units 5)
with random weights set through set_weights, lowered and run on the reference runtime,
against Keras 3's formulas written step by step in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.layer import LoweringContext
from kiln.frontends.keras.layers.recurrent import _substream
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, grad, parse
from kiln.ir.ops.random import bernoulli_draw
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(0)
BATCH, STEPS, FEATURES, UNITS = 3, 4, 2, 5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# -- the formulas, one timestep at a time ----------------------------------------------------
def simple_rnn_step(x, states, weights, masks=None):  # noqa: ANN001, ANN201
    kernel, recurrent, bias = weights
    (h,) = states
    in_mask, rec_mask = masks or ([None], [None])
    x = x if in_mask[0] is None else x * in_mask[0]
    h_in = h if rec_mask[0] is None else h * rec_mask[0]
    return [np.tanh(x @ kernel + h_in @ recurrent + bias)]


def lstm_step(x, states, weights, masks=None):  # noqa: ANN001, ANN201
    kernel, recurrent, bias = weights
    h, c = states
    u = h.shape[-1]
    in_masks, rec_masks = masks or ([None], [None])
    z = []
    for g in range(4):  # i, f, c, o: per-gate masks when there are four
        xg = x if in_masks[0] is None else x * in_masks[g % len(in_masks)]
        hg = h if rec_masks[0] is None else h * rec_masks[g % len(rec_masks)]
        cols = slice(g * u, (g + 1) * u)
        z.append(xg @ kernel[:, cols] + hg @ recurrent[:, cols] + bias[cols])
    i, f, o = sigmoid(z[0]), sigmoid(z[1]), sigmoid(z[3])
    c = f * c + i * np.tanh(z[2])
    return [o * np.tanh(c), c]


def gru_step(x, states, weights, reset_after=True, masks=None):  # noqa: ANN001, ANN201
    kernel, recurrent, bias = weights
    (h,) = states
    u = h.shape[-1]
    in_masks, rec_masks = masks or ([None], [None])
    xs = [x if in_masks[0] is None else x * in_masks[g % len(in_masks)] for g in range(3)]
    hs = [h if rec_masks[0] is None else h * rec_masks[g % len(rec_masks)] for g in range(3)]
    cols = [slice(g * u, (g + 1) * u) for g in range(3)]
    input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, None)
    x_z, x_r, x_h = (xs[g] @ kernel[:, cols[g]] + input_bias[cols[g]] for g in range(3))
    if reset_after:
        in_z, in_r, in_h = (hs[g] @ recurrent[:, cols[g]] + recurrent_bias[cols[g]]
                            for g in range(3))
        z, r = sigmoid(x_z + in_z), sigmoid(x_r + in_r)
        hh = np.tanh(x_h + r * in_h)
    else:
        z = sigmoid(x_z + hs[0] @ recurrent[:, cols[0]])
        r = sigmoid(x_r + hs[1] @ recurrent[:, cols[1]])
        hh = np.tanh(x_h + (r * hs[2]) @ recurrent[:, cols[2]])
    return [z * h + (1 - z) * hh]


def run_rnn(step, x, weights, units, go_backwards=False, initial=None,  # noqa: ANN001, ANN201
            n_states=1, **kwargs):
    """Keras's loop: reverse the sequence for go_backwards, step, stack the outputs in the
    order processed. Returns (sequence of outputs (batch, T, units), final states)."""
    steps = x[:, ::-1] if go_backwards else x
    states = initial or [np.zeros((x.shape[0], units))] * n_states
    outputs = []
    for t in range(steps.shape[1]):
        states = step(steps[:, t], states, weights, **kwargs)
        outputs.append(states[0])
    return np.stack(outputs, axis=1), states


# -- building and running ---------------------------------------------------------------------
def random_weights(layer: layers.Layer) -> list[np.ndarray]:
    return [RNG.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in layer.get_weights()]


def run(model: Model, inputs: list[np.ndarray], training: bool = False, key: int = 0,
        ) -> list[np.ndarray]:
    fg = model.forward_graph(training=training)
    state = {name: var.value for name, var in fg.variables.items()}
    if fg.uses_rng:
        state[LoweringContext.SEED_STATE] = np.asarray(key, np.int64)
    outputs, _ = run_graph(fg.graph, dict(zip(model.input_names, inputs)), state)
    return [outputs[name] for name in model.output_names]


LAYERS = {
    "simple_rnn": (layers.SimpleRNN, {}, simple_rnn_step, 1, {}),
    "lstm": (layers.LSTM, {}, lstm_step, 2, {}),
    "gru": (layers.GRU, {}, gru_step, 1, {"reset_after": True}),
    "gru_reset_before": (layers.GRU, {"reset_after": False}, gru_step, 1,
                         {"reset_after": False}),
}


def tiny_model(kind: str, dtype: str = "float32", timesteps: int | None = STEPS,
               batch_size: int | None = None, **options: object) -> tuple[Model, layers.Layer]:
    cls, kwargs, *_ = LAYERS[kind]
    x = layers.Input((timesteps, FEATURES), batch_size=batch_size, dtype=dtype)
    layer = cls(UNITS, dtype=dtype, **kwargs, **options)
    model = Model(x, layer(x))
    layer.set_weights(random_weights(layer))
    return model, layer


# -- forward against NumPy --------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_matches_numpy(kind: str, return_sequences: bool, go_backwards: bool) -> None:
    model, layer = tiny_model(kind, return_sequences=return_sequences, return_state=True,
                              go_backwards=go_backwards)
    x = RNG.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    out, *states = run(model, [x])
    _, _, step, n_states, step_kwargs = LAYERS[kind]
    seq, final = run_rnn(step, x.astype(np.float64), layer.get_weights(), UNITS, go_backwards,
                         n_states=n_states, **step_kwargs)
    expected = seq if return_sequences else seq[:, -1]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert len(states) == n_states
    for got, want in zip(states, final, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_symbolic_batch_and_timesteps(kind: str) -> None:
    """One graph serves every batch size and sequence length."""
    model, layer = tiny_model(kind, timesteps=None, return_sequences=True, go_backwards=True)
    assert model.outputs[0].shape == (None, None, UNITS)
    _, _, step, n_states, step_kwargs = LAYERS[kind]
    for batch, steps in [(1, 4), (3, 4), (2, 6)]:
        x = RNG.normal(size=(batch, steps, FEATURES)).astype(np.float32)
        (out,) = run(model, [x])
        seq, _ = run_rnn(step, x.astype(np.float64), layer.get_weights(), UNITS, True,
                         n_states=n_states, **step_kwargs)
        np.testing.assert_allclose(out, seq, rtol=1e-5, atol=1e-5)


def test_output_structure_and_shapes() -> None:
    x = layers.Input((STEPS, FEATURES))
    assert layers.LSTM(UNITS)(x).shape == (None, UNITS)
    assert layers.GRU(UNITS, return_sequences=True)(x).shape == (None, STEPS, UNITS)
    outs = layers.LSTM(UNITS, return_state=True)(x)
    assert isinstance(outs, list) and [o.shape for o in outs] == [(None, UNITS)] * 3
    outs = layers.SimpleRNN(UNITS, return_sequences=True, return_state=True)(x)
    assert [o.shape for o in outs] == [(None, STEPS, UNITS), (None, UNITS)]
    book = Sequential([layers.LSTM(UNITS, input_shape=(None, FEATURES))])  # Keras 2 style
    assert book.outputs[0].shape == (None, UNITS)


def test_initial_state() -> None:
    x = layers.Input((STEPS, FEATURES))
    h0, c0 = layers.Input((UNITS,)), layers.Input((UNITS,))
    layer = layers.LSTM(UNITS, return_sequences=True)
    model = Model([x, h0, c0], layer(x, initial_state=[h0, c0]))
    layer.set_weights(random_weights(layer))
    xs = RNG.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    hs = [RNG.normal(size=(BATCH, UNITS)).astype(np.float32) for _ in range(2)]
    (out,) = run(model, [xs, *hs])
    seq, _ = run_rnn(lstm_step, xs.astype(np.float64), layer.get_weights(), UNITS,
                     initial=[h.astype(np.float64) for h in hs])
    np.testing.assert_allclose(out, seq, rtol=1e-5, atol=1e-5)


def test_stacked_in_sequential() -> None:
    model = Sequential([layers.Input((STEPS, FEATURES)),
                        layers.GRU(UNITS, return_sequences=True), layers.LSTM(3),
                        layers.Dense(1)])
    assert model.outputs[0].shape == (None, 1)
    gru, lstm, dense = model.layers
    for layer in model.layers:
        layer.set_weights(random_weights(layer))
    x = RNG.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    (out,) = run(model, [x])
    seq, _ = run_rnn(gru_step, x.astype(np.float64), gru.get_weights(), UNITS)
    seq, _ = run_rnn(lstm_step, seq, lstm.get_weights(), 3, n_states=2)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(out, seq[:, -1] @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_graph_prints_and_parses_back() -> None:
    model, _ = tiny_model("lstm", timesteps=None, return_sequences=True, go_backwards=True)
    graph = model.forward_graph(training=False).graph
    assert parse(str(graph)) == graph
    scans = [n for n in graph.nodes if n.op == "scan"]
    # the input projection is one matmul outside the loop; the body multiplies h only
    body = scans[0].body
    assert [n.op for n in body.nodes].count("matmul") == 1
    assert sum(n.op == "matmul" for n in graph.nodes) == 1


# -- weights ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kwargs,expected", [
    (layers.LSTM, {}, 8320), (layers.GRU, {}, 6336), (layers.GRU, {"reset_after": False}, 6240),
    (layers.SimpleRNN, {}, 2080), (layers.LSTM, {"use_bias": False}, 8192),
])
def test_count_params_as_keras(cls: type, kwargs: dict, expected: int) -> None:
    layer = cls(32, **kwargs)
    model = Model((x := layers.Input((10, 32))), layer(x))
    assert model.count_params() == layer.count_params() == expected


def test_weight_order_shapes_and_initial_values() -> None:
    _, lstm = tiny_model("lstm")
    assert [v.name for v in lstm.weights] == ["kernel", "recurrent_kernel", "bias"]
    fresh = layers.LSTM(UNITS)
    Model((x := layers.Input((STEPS, FEATURES))), fresh(x))
    bias = fresh.get_weights()[2]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(UNITS), np.ones(UNITS),
                                              np.zeros(2 * UNITS)])
    recurrent = fresh.get_weights()[1]  # orthogonal: (u, 4u) with orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(UNITS), atol=1e-5)
    plain = layers.LSTM(UNITS, unit_forget_bias=False)
    Model((y := layers.Input((STEPS, FEATURES))), plain(y))
    np.testing.assert_array_equal(plain.get_weights()[2], np.zeros(4 * UNITS))
    _, gru = tiny_model("gru")
    assert [w.shape for w in gru.get_weights()] == [(2, 15), (5, 15), (2, 15)]


# -- gradient ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,timesteps,go_backwards", [
    ("lstm", STEPS, False), ("gru", STEPS, True), ("gru_reset_before", STEPS, False),
    ("simple_rnn", None, True),  # a symbolic length reverses the outputs by a gather
])
def test_gradient_matches_finite_differences(kind: str, timesteps: int | None,
                                             go_backwards: bool) -> None:
    model, _ = tiny_model(kind, dtype="float64", timesteps=timesteps, batch_size=BATCH,
                          return_sequences=True, go_backwards=go_backwards)
    fg = model.forward_graph(training=False)
    b = GraphBuilder("loss")  # loss = sum(output * w), w random
    x = b.input("x", fg.graph.inputs[0].type)
    state = {v.name: b.state(v.name, v.type) for v in fg.graph.state}
    out = b.call(fg.graph, [x], state)[0][model.output_names[0]]
    b.output(b.sum(b.mul(out, b.input("w", out.type))), "loss")
    graph = b.build()
    names = {var.name: name for name, var in fg.variables.items()}
    wrt = [names["kernel"], names["recurrent_kernel"], names["bias"]]
    feed = {"x": RNG.normal(size=(BATCH, STEPS, FEATURES)),
            "w": RNG.normal(size=(BATCH, STEPS, UNITS))}
    values = {name: var.value.copy() for name, var in fg.variables.items()}
    grads, _ = run_graph(grad(graph, "loss", wrt), feed, values)

    def loss(name: str, value: np.ndarray) -> float:
        return float(run_graph(graph, feed, {**values, name: value})[0]["loss"])

    for name in wrt:
        numeric = np.zeros_like(values[name])
        for index in np.ndindex(numeric.shape):
            plus, minus = values[name].copy(), values[name].copy()
            plus[index] += 1e-6
            minus[index] -= 1e-6
            numeric[index] = (loss(name, plus) - loss(name, minus)) / 2e-6
        np.testing.assert_allclose(grads[f"grad.{name}"], numeric, rtol=1e-5, atol=1e-7,
                                   err_msg=name)


# -- dropout ----------------------------------------------------------------------------------
def masks_for(layer: layers.Layer, key: int, stream: int, gates: int, per_gate: bool,
              batch: int) -> tuple[list, list]:
    """Keras's masks (1/(1-rate) kept, 0 dropped), drawn as the layer draws them."""
    def draw(j: int, width: int, rate: float) -> np.ndarray:
        keep = bernoulli_draw(key, _substream(stream, j), (batch, width), 1 - rate)
        return keep / (1 - rate)

    count = gates if per_gate else 1
    in_masks = [draw(j, FEATURES, layer.dropout) for j in range(count)] \
        if layer.dropout else [None]
    rec_masks = [draw(gates + j, UNITS, layer.recurrent_dropout) for j in range(gates)] \
        if layer.recurrent_dropout else [None]
    return in_masks, rec_masks


@pytest.mark.parametrize("kind,options,per_gate", [
    ("simple_rnn", {"dropout": 0.3, "recurrent_dropout": 0.4}, False),
    ("lstm", {"dropout": 0.3}, False),
    ("lstm", {"dropout": 0.3, "recurrent_dropout": 0.4}, True),
    ("gru", {"dropout": 0.3, "recurrent_dropout": 0.4}, True),
    ("gru_reset_before", {"recurrent_dropout": 0.4}, True),
    ("gru", {"dropout": 0.5, "implementation": 1}, True),
])
def test_dropout_in_training_only(kind: str, options: dict, per_gate: bool) -> None:
    model, layer = tiny_model(kind, return_sequences=True, **options)
    cls, _, step, n_states, step_kwargs = LAYERS[kind]
    x = RNG.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    weights = layer.get_weights()
    clean, _ = run_rnn(step, x.astype(np.float64), weights, UNITS, n_states=n_states,
                       **step_kwargs)
    np.testing.assert_allclose(run(model, [x])[0], clean, rtol=1e-5, atol=1e-5)
    masks = masks_for(layer, 7, 0, cls.gates, per_gate, BATCH)
    noisy, _ = run_rnn(step, x.astype(np.float64), weights, UNITS, n_states=n_states,
                       masks=masks, **step_kwargs)
    got = run(model, [x], training=True, key=7)[0]
    np.testing.assert_allclose(got, noisy, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, clean)


def test_training_call_argument_forces_the_mode() -> None:
    x = layers.Input((STEPS, FEATURES))
    layer = layers.LSTM(UNITS, dropout=0.5)
    model = Model(x, layer(x, training=False))
    assert not model.forward_graph(training=True).uses_rng


# -- errors -----------------------------------------------------------------------------------
def test_rank_two_input_names_layer_and_ndim() -> None:
    with pytest.raises(KilnValueError, match=r"layer 'my_lstm'.*expected ndim=3, found ndim=2"):
        layers.LSTM(4, name="my_lstm")(layers.Input((8,)))


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
@pytest.mark.parametrize("units", [0, -3, 2.5])
def test_units_must_be_positive(cls: type, units: object) -> None:
    with pytest.raises(KilnValueError, match=rf"`units`.*Received: units={units}"):
        cls(units)


@pytest.mark.parametrize("kwargs,match", [
    ({"stateful": True}, "stateful=True"),
    ({"kernel_regularizer": "l7"}, "kernel_regularizer='l7'"),
    ({"implementation": 3}, "implementation=3"),
    ({"use_cudnn": "yes"}, "use_cudnn='yes'"),
])
def test_unsupported_arguments_refused_in_constructor(kwargs: dict, match: str) -> None:
    with pytest.raises(KilnValueError, match=match):
        layers.LSTM(4, **kwargs)


def test_bad_call_arguments() -> None:
    x = layers.Input((STEPS, FEATURES))
    h = layers.Input((UNITS,))
    with pytest.raises(KilnValueError, match="initial_state to hold 2"):
        layers.LSTM(UNITS)(x, initial_state=[h])
    with pytest.raises(KilnValueError, match=r"shape \(None, 5\)"):
        layers.GRU(UNITS)(x, initial_state=[layers.Input((3,))])
    with pytest.raises(KilnValueError, match="not as mask="):
        layers.GRU(UNITS)(x, mask=h)
    with pytest.raises(KilnValueError, match="initial_state="):
        layers.GRU(UNITS)([x, h])
    with pytest.raises(KilnTypeError, match="dropout"):
        layers.GRU(UNITS, dropout="0.5")
    lstm = layers.LSTM(UNITS)
    lstm(x)
    with pytest.raises(KilnValueError, match="axis -1 of input shape to have value 2"):
        lstm(layers.Input((STEPS, 3)))


def test_unroll_accepted_and_config() -> None:
    layer = layers.GRU(UNITS, unroll=True, reset_after=False, return_sequences=True)
    config = layer.get_config()
    assert config["units"] == UNITS and config["reset_after"] is False
    assert config["return_sequences"] is True and config["unroll"] is True
    assert config["recurrent_activation"] == "sigmoid" and config["activation"] == "tanh"
