"""Real Keras 3 as the oracle (optional: `pip install -e '.[oracle]'`, torch backend).

The same architecture is built in Keras and in kiln, Keras's initial weights move to kiln
through get_weights/set_weights unchanged, and predictions, the loss of one training step and
the weights after it must agree. Skipped when keras is not installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, optimizers  # noqa: E402

rng = np.random.default_rng(0)
# Keras 3.15's torch backend warns about NumPy 2's copy keyword on every conversion.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pair(build):  # noqa: ANN001, ANN202
    """The same model built with keras's and kiln's layers, kiln given Keras's weights."""
    theirs = build(keras.layers, keras.Sequential)
    ours = build(layers, models.Sequential)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


ARCHITECTURES = {
    "mlp": (lambda L, S: S([L.Input(shape=(12,)), L.Dense(16, activation="relu"),
                            L.Dense(4, activation="softmax")]),
            lambda n: rng.standard_normal((n, 12)).astype("float32"), "categorical"),
    "convnet": (lambda L, S: S([L.Input(shape=(9, 9, 2)),
                                L.Conv2D(4, 3, activation="relu", padding="same"),
                                L.MaxPooling2D(2), L.Conv2D(3, 2, strides=2),
                                L.AveragePooling2D(1), L.Flatten(),
                                L.Dense(4, activation="softmax")]),
                lambda n: rng.standard_normal((n, 9, 9, 2)).astype("float32"), "categorical"),
    # No bias before batch normalization: its gradient is float noise that Adam scales to
    # full-size steps, in Keras as here, so it cannot be compared.
    "batchnorm": (lambda L, S: S([L.Input(shape=(6,)), L.Dense(8, use_bias=False),
                                  L.BatchNormalization(), L.Activation("tanh"),
                                  L.Dense(4, activation="softmax")]),
                  lambda n: rng.standard_normal((n, 6)).astype("float32") * 3, "categorical"),
    "lstm": (lambda L, S: S([L.Input(shape=(5,), dtype="int32"), L.Embedding(20, 6),
                             L.LSTM(7), L.Dense(1, activation="sigmoid")]),
             lambda n: rng.integers(0, 20, (n, 5)).astype("int32"), "binary"),
    "gru": (lambda L, S: S([L.Input(shape=(5, 3)), L.GRU(6, return_sequences=True),
                            L.SimpleRNN(4), L.Dense(1, activation="sigmoid")]),
            lambda n: rng.standard_normal((n, 5, 3)).astype("float32"), "binary"),
}


def _targets(kind: str, n: int) -> np.ndarray:
    if kind == "binary":
        return rng.integers(0, 2, (n, 1)).astype("float32")
    return np.eye(4, dtype="float32")[rng.integers(0, 4, n)]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_predictions_agree(name: str) -> None:
    build, make_x, _ = ARCHITECTURES[name]
    theirs, ours = _pair(build)
    x = make_x(6)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


OPTIMIZERS = {
    "sgd": (lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
            lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    "rmsprop": (lambda: keras.optimizers.RMSprop(0.01), lambda: optimizers.RMSprop(0.01)),
    "adam": (lambda: keras.optimizers.Adam(0.01), lambda: optimizers.Adam(0.01)),
    "adagrad": (lambda: keras.optimizers.Adagrad(0.1), lambda: optimizers.Adagrad(0.1)),
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_steps_agree(name: str, optimizer: str) -> None:
    build, make_x, kind = ARCHITECTURES[name]
    theirs, ours = _pair(build)
    loss = "binary_crossentropy" if kind == "binary" else "categorical_crossentropy"
    make_theirs, make_ours = OPTIMIZERS[optimizer]
    theirs.compile(optimizer=make_theirs(), loss=loss)
    ours.compile(optimizer=make_ours(), loss=loss)
    for step in range(3):
        x, y = make_x(8), _targets(kind, 8)
        their_loss = float(np.ravel(theirs.train_on_batch(x, y))[0])
        our_loss = float(np.ravel(ours.train_on_batch(x, y))[0])
        assert our_loss == pytest.approx(their_loss, rel=1e-4, abs=1e-6), f"step {step}"
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)
