"""Same numbers as Keras 3: given the same weights (set_weights), predictions, the loss of a
training step and the weights after it follow Keras 3's definitions, written here in NumPy:
Dense = x @ kernel + bias; categorical cross-entropy normalizes, clips to [1e-7, 1 - 1e-7]
and averages over the batch; RMSprop and SGD-with-momentum update as Keras 3 does."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers

rng = np.random.default_rng(11)
X = rng.standard_normal((8, 4)).astype("float32")
Y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
WEIGHTS = [rng.standard_normal((4, 5)).astype("float32") * 0.5,
           rng.standard_normal(5).astype("float32") * 0.1,
           rng.standard_normal((5, 3)).astype("float32") * 0.5,
           rng.standard_normal(3).astype("float32") * 0.1]


def _model() -> models.Model:
    model = models.Sequential([layers.Dense(5, activation="relu", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.set_weights(WEIGHTS)
    return model


def _forward_and_grads(w: list[np.ndarray]) -> tuple[np.ndarray, float, list[np.ndarray]]:
    w = [a.astype(np.float64) for a in w]
    h_pre = X @ w[0] + w[1]
    h = np.maximum(h_pre, 0)
    logits = h @ w[2] + w[3]
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    loss = np.mean(-np.sum(Y * np.log(np.clip(p, 1e-7, 1 - 1e-7)), axis=1))
    d_logits = (p - Y) / len(X)  # no probability is clipped here (checked below)
    assert p.min() > 1e-7
    d_h = d_logits @ w[2].T * (h_pre > 0)
    return p, loss, [X.T @ d_h, d_h.sum(0), h.T @ d_logits, d_logits.sum(0)]


def test_predictions_follow_keras() -> None:
    expected, _, _ = _forward_and_grads(WEIGHTS)
    np.testing.assert_allclose(_model().predict(X, verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,update", [
    (lambda: optimizers.RMSprop(learning_rate=0.01),
     lambda w, g: w - 0.01 * g / np.sqrt(0.1 * g * g + 1e-7)),
    (lambda: optimizers.SGD(learning_rate=0.1, momentum=0.9),
     lambda w, g: w + (0.9 * 0.0 - 0.1 * g)),
    (lambda: optimizers.Adam(learning_rate=0.01),
     # step 1: m = 0.1 g, v = 0.001 g^2, alpha = lr * sqrt(1 - 0.999) / (1 - 0.9)
     lambda w, g: w - (0.01 * np.sqrt(0.001) / 0.1) * (0.1 * g)
     / (np.sqrt(0.001 * g * g) + 1e-7)),
])
def test_one_training_step_follows_keras(make, update) -> None:  # noqa: ANN001
    model = _model()
    model.compile(optimizer=make(), loss="categorical_crossentropy")
    _, expected_loss, grads = _forward_and_grads(WEIGHTS)
    loss = model.train_on_batch(X, Y)
    assert float(np.ravel(loss)[0]) == pytest.approx(expected_loss, rel=1e-5)
    for got, w, g in zip(model.get_weights(), WEIGHTS, grads):
        np.testing.assert_allclose(got, update(w.astype(np.float64), g), rtol=1e-4, atol=1e-6)


def test_weights_move_between_kiln_and_keras_layouts_unchanged() -> None:
    model = _model()
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(4, 5), (5,), (5, 3), (3,)]  # Keras 3: kernel (in, out), then bias
    for got, given in zip(model.get_weights(), WEIGHTS):
        np.testing.assert_array_equal(got, given)
    assert [w.path for w in model.weights] == [f"{model.layers[0].name}/kernel",
                                               f"{model.layers[0].name}/bias",
                                               f"{model.layers[1].name}/kernel",
                                               f"{model.layers[1].name}/bias"]
