"""Activation, Dropout, Flatten and Reshape: each in a tiny model, lowered and run on the
reference runtime, against Keras's formulas written in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.layer import LoweringContext
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.ir import KilnError, KilnTypeError, KilnValueError
from kiln.runtimes.reference import run_graph


def run(model: Model, inputs: list[np.ndarray], training: bool = False, key: int = 0,
        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The model's forward graph on the reference runtime: (outputs, new state) by name."""
    fg = model.forward_graph(training=training)
    state = {name: var.value for name, var in fg.variables.items()}
    if fg.uses_rng:
        state[LoweringContext.SEED_STATE] = np.asarray(key, np.int64)
    return run_graph(fg.graph, dict(zip(model.input_names, inputs)), state)


def predict(model: Model, x: np.ndarray, training: bool = False, key: int = 0) -> np.ndarray:
    outputs, _ = run(model, [x], training, key)
    return outputs[model.output_names[0]]


RNG = np.random.default_rng(0)


# -- Activation -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
def test_activation_matches_numpy(name: str) -> None:
    x = RNG.normal(size=(3, 5)).astype(np.float32)
    expected = {
        "relu": np.maximum(x, 0),
        "sigmoid": 1 / (1 + np.exp(-x)),
        "tanh": np.tanh(x),
        "softmax": np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    }[name]
    model = Sequential([layers.Input(shape=(5,)), layers.Activation(name)])
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-6)
    assert model.layers[0].get_config()["activation"] == name
    assert model.count_params() == 0


def test_activation_unknown_name() -> None:
    with pytest.raises(KilnValueError, match="activation='nope'"):
        layers.Activation("nope")


# -- Dropout --------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1.5, -0.1, 1.0, "0.5", True])
def test_dropout_rate_checked_in_constructor(rate: object) -> None:
    with pytest.raises(KilnValueError, match=r"Expected a float value between 0 and 1.*"
                                             r"Received: rate="):
        layers.Dropout(rate)


def test_dropout_is_identity_at_inference() -> None:
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    model = Sequential([layers.Input(shape=(6,)), layers.Dropout(0.5)])
    fg = model.forward_graph(training=False)
    assert not fg.uses_rng
    np.testing.assert_array_equal(predict(model, x), x)


def test_dropout_mask_statistics_and_scaling() -> None:
    rate = 0.3
    x = RNG.uniform(1.0, 2.0, size=(200, 50)).astype(np.float32)
    model = Sequential([layers.Input(shape=(50,)), layers.Dropout(rate)])
    outputs, state = run(model, [x], training=True, key=7)
    y = outputs[model.output_names[0]]
    kept = y != 0
    # Each element is kept with probability 1 - rate: 10000 draws, so 5 sigma is about 0.023.
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / x.size)
    np.testing.assert_array_equal(y[kept], (x / np.float32(1 - rate))[kept])
    # The rows are not all dropped alike: the mask is drawn per element.
    assert len({tuple(row) for row in kept[:20]}) == 20
    # The key advances by one per training call, so the next batch gets a new mask.
    assert state[LoweringContext.SEED_STATE] == 8


def test_dropout_masks_depend_on_the_key_only() -> None:
    x = np.ones((16, 16), np.float32)
    model = Sequential([layers.Input(shape=(16,)), layers.Dropout(0.5)])
    first = predict(model, x, training=True, key=1)
    again = predict(model, x, training=True, key=1)
    other = predict(model, x, training=True, key=2)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_two_dropout_layers_draw_different_masks() -> None:
    inputs = layers.Input(shape=(64,))
    a = layers.Dropout(0.5, name="drop_a")(inputs)
    b = layers.Dropout(0.5, name="drop_b")(inputs)
    model = Model(inputs, [a, b])
    x = np.ones((8, 64), np.float32)
    outputs, _ = run(model, [x], training=True, key=3)
    mask_a, mask_b = outputs["drop_a"] != 0, outputs["drop_b"] != 0
    assert (mask_a != mask_b).any()


def test_dropout_noise_shape_shares_the_mask() -> None:
    x = np.ones((32, 5, 4), np.float32)
    model = Sequential([layers.Input(shape=(5, 4)), layers.Dropout(0.5, noise_shape=(None, 1, 4))])
    y = predict(model, x, training=True, key=5)
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    assert set(np.unique(y)) <= {0.0, 2.0}
    with pytest.raises(KilnValueError, match="noise_shape"):
        Sequential([layers.Input(shape=(5, 4)), layers.Dropout(0.5, noise_shape=(None, 3, 4))])


def test_dropout_training_call_argument_forces_the_mode() -> None:
    inputs = layers.Input(shape=(32,))
    model = Model(inputs, layers.Dropout(0.5)(inputs, training=True))
    y = predict(model, np.ones((4, 32), np.float32), training=False)
    assert set(np.unique(y)) == {0.0, 2.0}


def test_dropout_rate_zero_trains_as_identity() -> None:
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    model = Sequential([layers.Input(shape=(4,)), layers.Dropout(0.0)])
    np.testing.assert_array_equal(predict(model, x, training=True), x)


def test_dropout_config() -> None:
    config = layers.Dropout(0.25, noise_shape=(None, 1), seed=4, name="d").get_config()
    assert config["rate"] == 0.25
    assert config["noise_shape"] == [None, 1]
    assert config["seed"] == 4
    assert config["name"] == "d"


# -- Flatten --------------------------------------------------------------------------------
def test_flatten_keeps_row_major_order() -> None:
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 4, 5)), layers.Flatten()])
    assert model.outputs[0].shape == (None, 60)
    np.testing.assert_array_equal(predict(model, x), x.reshape(2, 60))


def test_flatten_channels_first_moves_channels_last() -> None:
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 4, 5)), layers.Flatten("channels_first")])
    np.testing.assert_array_equal(predict(model, x), x.transpose(0, 2, 3, 1).reshape(2, 60))
    assert model.layers[0].get_config()["data_format"] == "channels_first"


def test_flatten_of_a_vector_gives_one_column() -> None:
    model = Sequential([layers.Input(shape=()), layers.Flatten()])
    assert model.outputs[0].shape == (None, 1)
    np.testing.assert_array_equal(predict(model, np.arange(3, dtype=np.float32)),
                                  [[0], [1], [2]])


def test_flatten_bad_data_format() -> None:
    with pytest.raises(KilnValueError, match="data_format='nchw'"):
        layers.Flatten(data_format="nchw")


# -- Reshape --------------------------------------------------------------------------------
@pytest.mark.parametrize("target, shape", [((3, 4), (3, 4)), ((-1, 2), (6, 2)),
                                           ((2, -1, 3), (2, 2, 3)), ((12,), (12,))])
def test_reshape(target: tuple, shape: tuple) -> None:
    x = RNG.normal(size=(2, 12)).astype(np.float32)
    model = Sequential([layers.Input(shape=(12,)), layers.Reshape(target)])
    assert model.outputs[0].shape == (None, *shape)
    np.testing.assert_array_equal(predict(model, x), x.reshape(2, *shape))
    assert model.layers[0].get_config()["target_shape"] == list(target)


@pytest.mark.parametrize("target, message", [((5,), "total size of the tensor must be unchanged"),
                                             ((5, -1), "cannot be divided")])
def test_reshape_to_an_incompatible_shape(target: tuple, message: str) -> None:
    with pytest.raises(KilnValueError, match=message) as err:
        Sequential([layers.Input(shape=(12,)), layers.Reshape(target, name="resh")])
    assert "'resh'" in str(err.value)
    assert "(12,)" in str(err.value)


@pytest.mark.parametrize("target", [(-1, -1), (0, 3), (2.0, 6)])
def test_reshape_target_checked_in_constructor(target: tuple) -> None:
    with pytest.raises(KilnError, match="target_shape"):
        layers.Reshape(target)
    with pytest.raises(KilnTypeError, match="target_shape=5"):
        layers.Reshape(5)


def test_reshape_flatten_dense_stack() -> None:
    """Reshape and Flatten between weighted layers: numbers as NumPy computes them."""
    model = Sequential([layers.Input(shape=(6,)), layers.Reshape((2, 3)), layers.Dense(4),
                        layers.Activation("tanh"), layers.Flatten(), layers.Dense(1)])
    weights = [RNG.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    k1, b1, k2, b2 = weights
    x = RNG.normal(size=(5, 6)).astype(np.float32)
    expected = np.tanh(x.reshape(5, 2, 3) @ k1 + b1).reshape(5, 8) @ k2 + b2
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-5)
    assert model.count_params() == 3 * 4 + 4 + 8 + 1
