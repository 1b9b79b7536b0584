"""Bidirectional against Keras 3's definition written in NumPy (the forward layer over the
sequence, a go_backwards copy over it reversed, the backward outputs put back in time order,
merged), on the reference runtime; its training on every backend; weights, names, freezing,
configs, save/load and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers, regularizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import assert_steps_agree
from tests.frontends.keras.test_layers_recurrent import LAYERS, random_weights, run, run_rnn

BATCH, STEPS, FEATURES, UNITS = 3, 4, 2, 5
MERGES = {"concat": lambda a, b: np.concatenate([a, b], axis=-1), "sum": np.add,
          "ave": lambda a, b: (a + b) / 2, "mul": np.multiply, None: lambda a, b: [a, b]}


def _reference(kind: str, x: np.ndarray, forward: list, backward: list, merge: str | None,
               return_sequences: bool, return_state: bool) -> list[np.ndarray]:
    _, _, step, n_states, step_kwargs = LAYERS[kind]
    ys, states = run_rnn(step, x, forward, UNITS, n_states=n_states, **step_kwargs)
    ys_rev, states_rev = run_rnn(step, x, backward, UNITS, go_backwards=True,
                                 n_states=n_states, **step_kwargs)
    if return_sequences:
        y, y_rev = ys, ys_rev[:, ::-1]
    else:
        y, y_rev = ys[:, -1], ys_rev[:, -1]
    merged = MERGES[merge](y, y_rev)
    merged = merged if isinstance(merged, list) else [merged]
    return merged + (list(states) + list(states_rev) if return_state else [])


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("merge", list(MERGES))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_matches_numpy(kind: str, merge: str | None, return_sequences: bool) -> None:
    cls, kwargs, *_ = LAYERS[kind]
    inputs = layers.Input((STEPS, FEATURES))
    wrapper = layers.Bidirectional(cls(UNITS, return_sequences=return_sequences,
                                       return_state=True, **kwargs), merge_mode=merge)
    model = models.Model(inputs, wrapper(inputs))
    forward, backward = random_weights(wrapper.forward_layer), \
        random_weights(wrapper.backward_layer)
    wrapper.set_weights(forward + backward)
    x = np.random.default_rng(1).standard_normal((BATCH, STEPS, FEATURES)).astype(np.float32)
    got = run(model, [x])
    want = _reference(kind, x.astype(np.float64), forward, backward, merge, return_sequences,
                      True)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _text_model(backend: str) -> models.Model:
    """The book's bidirectional text model, small: Embedding, a Bidirectional LSTM of
    sequences (the backward outputs back in time order), pooled, Dense. (Each merge mode and
    recurrent layer is checked against NumPy above; this compiles one scan pair per
    backend.)"""
    model = models.Sequential([
        layers.Input((6,), dtype="int32"), layers.Embedding(20, 4),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
        layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.random.default_rng(5).standard_normal(w.shape).astype(np.float32)
                       * 0.5 for w in model.get_weights()])
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="binary_crossentropy",
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_trains_like_the_reference(backend: str) -> None:
    rs = np.random.default_rng(0)
    x = rs.integers(0, 20, (8, 6)).astype(np.int32)
    y = rs.integers(0, 2, (8, 1)).astype(np.float32)
    assert_steps_agree(_text_model(backend), _text_model("reference"), x, y)


def test_weights_names_and_count_as_keras() -> None:
    lstm = layers.LSTM(4, name="encoder")
    wrapper = layers.Bidirectional(lstm)
    model = models.Sequential([layers.Input((5, 3)), wrapper])
    assert wrapper.name.startswith("bidirectional")
    assert wrapper.forward_layer.name == "forward_encoder"
    assert wrapper.backward_layer.name == "backward_encoder"
    assert wrapper.backward_layer.go_backwards and not wrapper.forward_layer.go_backwards
    assert [v.path for v in model.weights] == [
        "forward_encoder/kernel", "forward_encoder/recurrent_kernel", "forward_encoder/bias",
        "backward_encoder/kernel", "backward_encoder/recurrent_kernel", "backward_encoder/bias"]
    assert model.count_params() == 2 * (3 * 16 + 4 * 16 + 16)
    assert not lstm.built  # the given layer is only the template
    assert model.outputs[0].shape == (None, 8)


def test_initial_weights_and_initial_state() -> None:
    inputs = layers.Input((STEPS, FEATURES))
    h0, c0 = layers.Input((UNITS,)), layers.Input((UNITS,))
    template = layers.LSTM(UNITS)
    rs = np.random.default_rng(2)
    shapes = [(FEATURES, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)] * 2
    weights = [(rs.standard_normal(shape) * 0.3).astype(np.float32) for shape in shapes]
    wrapper = layers.Bidirectional(template, weights=weights)
    model = models.Model([inputs, h0, c0], wrapper(inputs, initial_state=[h0, c0, c0, h0]))
    for got, want in zip(wrapper.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    x = rs.standard_normal((BATCH, STEPS, FEATURES)).astype(np.float32)
    h, c = (rs.standard_normal((BATCH, UNITS)).astype(np.float32) for _ in range(2))
    (got,) = run(model, [x, h, c])
    step = LAYERS["lstm"][2]
    f = [w.astype(np.float64) for w in weights[:3]]
    bw = [w.astype(np.float64) for w in weights[3:]]
    ys, _ = run_rnn(step, x.astype(np.float64), f, UNITS, initial=[h, c], n_states=2)
    ys_rev, _ = run_rnn(step, x.astype(np.float64), bw, UNITS, go_backwards=True,
                        initial=[c, h], n_states=2)
    np.testing.assert_allclose(got, np.concatenate([ys[:, -1], ys_rev[:, -1]], -1),
                               rtol=1e-5, atol=1e-6)


def test_a_frozen_template_gives_frozen_directions() -> None:
    wrapper = layers.Bidirectional(layers.GRU(2, trainable=False))
    model = models.Sequential([layers.Input((STEPS, FEATURES)), wrapper])
    assert not wrapper.forward_layer.trainable and not wrapper.backward_layer.trainable
    assert model.trainable_weights == [] and wrapper.trainable


def test_freezing_the_wrapper_freezes_both_directions() -> None:
    x = np.random.default_rng(0).standard_normal((4, STEPS, FEATURES)).astype(np.float32)
    y = np.zeros((4, 1), np.float32)
    wrapper = layers.Bidirectional(layers.SimpleRNN(3))
    model = models.Sequential([layers.Input((STEPS, FEATURES)), wrapper, layers.Dense(1)])
    wrapper.trainable = False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 6
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    before = wrapper.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(wrapper.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_inner_activity_regularizers_count_in_the_loss() -> None:
    """Keras applies each direction's activity_regularizer to its own outputs."""
    x = np.random.default_rng(0).standard_normal((4, STEPS, FEATURES)).astype(np.float32)
    y = np.zeros((4, 6), np.float32)

    def build(reg) -> models.Model:  # noqa: ANN001
        model = models.Sequential([layers.Input((STEPS, FEATURES)), layers.Bidirectional(
            layers.GRU(3, activity_regularizer=reg, kernel_regularizer=reg))])
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(loss="mse", backend="reference")
        return model

    plain, regularized = build(None), build(regularizers.L1(0.5))
    out = plain.predict(x, verbose=0).astype(np.float64)
    kernels = 2 * 0.5 * np.abs(np.full((FEATURES, 9), 0.1)).sum()
    activity = 0.5 * np.abs(out).sum() / 4
    assert regularized.evaluate(x, y, verbose=0) == pytest.approx(
        plain.evaluate(x, y, verbose=0) + kernels + activity, rel=1e-5)


def test_custom_backward_layer_and_config_round_trip(tmp_path) -> None:  # noqa: ANN001
    wrapper = layers.Bidirectional(
        layers.GRU(3, return_sequences=True, reset_after=False),
        backward_layer=layers.SimpleRNN(3, return_sequences=True, go_backwards=True,
                                        activation="relu", name="back"),
        merge_mode="ave")
    model = models.Sequential([layers.Input((STEPS, FEATURES)), wrapper, layers.Flatten(),
                               layers.Dense(1)])
    config = wrapper.get_config()
    assert config["merge_mode"] == "ave"
    assert config["layer"]["class_name"] == "GRU"
    assert config["backward_layer"]["class_name"] == "SimpleRNN"
    assert config["backward_layer"]["config"]["name"] == "back"
    model.compile(optimizer="adam", loss="mse", backend="reference")
    model.save(tmp_path / "bi.kiln")
    loaded = models.load_model(tmp_path / "bi.kiln", backend="reference")
    assert loaded.get_config() == model.get_config()
    x = np.random.default_rng(3).standard_normal((2, STEPS, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Bidirectional(layers.Dense(3)), "recurrent layer"),
    (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="max"), "Invalid merge mode"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3)),
     "different `go_backwards`"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(
        3, go_backwards=True, return_sequences=True)), "'return_sequences'"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer="lstm"), "backward_layer"),
])
def test_constructor_errors(make, match) -> None:  # noqa: ANN001
    with pytest.raises(KilnValueError, match=match):
        make()


def test_call_errors_name_the_layer() -> None:
    inputs = layers.Input((STEPS, FEATURES))
    with pytest.raises(KilnValueError, match="'bi'.*expected initial_state to hold 4"):
        layers.Bidirectional(layers.LSTM(UNITS), name="bi")(
            inputs, initial_state=[layers.Input((UNITS,))])
    with pytest.raises(KilnValueError, match="expected ndim=3"):
        layers.Bidirectional(layers.LSTM(UNITS))(layers.Input((FEATURES,)))
