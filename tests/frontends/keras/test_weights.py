"""get_weights / set_weights in Keras's order and shapes, all-or-nothing assignment, and
weights (and optimizer state) untouched by any call that fails."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnError, KilnValueError

rs = np.random.default_rng(1)
X = rs.standard_normal((10, 3)).astype(np.float32)
Y = rs.standard_normal((10, 2)).astype(np.float32)


def _model() -> models.Sequential:
    return models.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu",
                                                              name="hidden"),
                              layers.BatchNormalization(name="norm"),
                              layers.Dense(2, name="out")], name="net")


def test_keras_order_and_shapes() -> None:
    model = _model()
    shapes = [w.shape for w in model.get_weights()]
    # Keras 3: per layer, kernel then bias; BatchNormalization gamma, beta, moving_mean,
    # moving_variance
    assert shapes == [(3, 4), (4,), (4,), (4,), (4,), (4,), (4, 2), (2,)]
    assert [v.path for v in model.weights] == [
        "hidden/kernel", "hidden/bias", "norm/gamma", "norm/beta", "norm/moving_mean",
        "norm/moving_variance", "out/kernel", "out/bias"]
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2


def test_set_weights_checks_count_and_shape_before_assigning() -> None:
    model = _model()
    before = model.get_weights()
    with pytest.raises(KilnValueError, match=re.escape("set_weights expected 8 arrays. "
                                                       "Received: 7 arrays")):
        model.set_weights(before[:-1])
    changed = [w + 1 for w in before]
    changed[6] = np.zeros((2, 4))
    with pytest.raises(KilnValueError, match=re.escape(
            "set_weights expected shape (4, 2) for out/kernel. Received: shape=(2, 4)")):
        model.set_weights(changed)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing assigned, not even the first arrays
    layer = model.get_layer("hidden")
    with pytest.raises(KilnValueError, match="layer 'hidden': set_weights expected 2 arrays"):
        layer.set_weights([before[0]])


def test_weights_round_trip_and_drive_the_compiled_model() -> None:
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    other = _model()
    other.set_weights(model.get_weights())
    np.testing.assert_array_equal(other.predict(X, verbose=0), model.predict(X, verbose=0))
    # set_weights after compile takes effect without recompiling
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    np.testing.assert_array_equal(model.predict(X, verbose=0), np.zeros((10, 2)))


BAD_CALLS = [
    ("fit: y too short", lambda m: m.fit(X, Y[:5], verbose=0)),
    ("fit: NaN", lambda m: m.fit(np.where(X > 1, np.nan, X), Y, verbose=0)),
    ("fit: bad validation_data", lambda m: m.fit(X, Y, validation_data=(X, Y[:, :1]),
                                                 verbose=0)),
    ("fit: bad validation_split", lambda m: m.fit(X, Y, validation_split=2, verbose=0)),
    ("fit: epochs", lambda m: m.fit(X, Y, epochs=-2, verbose=0)),
    ("train_on_batch: shape", lambda m: m.train_on_batch(X[:, :2], Y)),
    ("evaluate: dtype", lambda m: m.evaluate(X.astype(str), Y, verbose=0)),
    ("predict: shape", lambda m: m.predict(X[:, None], verbose=0)),
]


@pytest.mark.parametrize("case,call", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_a_failing_call_leaves_weights_and_optimizer_unchanged(case, call) -> None:  # noqa: ANN001
    model = _model()
    model.compile(optimizer=optimizers.Adam(), loss="mse")
    model.fit(X, Y, batch_size=5, epochs=1, verbose=0)
    weights = model.get_weights()
    state = {k: v.copy() for k, v in model.optimizer.state.items()}
    with pytest.raises(KilnError):
        call(model)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.state.keys() == state.keys()
    for name, value in model.optimizer.state.items():
        np.testing.assert_array_equal(value, state[name])
    # and the model still trains afterwards
    model.fit(X, Y, batch_size=5, epochs=1, verbose=0)
    assert model.optimizer.iterations == 4


def test_non_trainable_layers_keep_their_weights() -> None:
    model = _model()
    model.get_layer("hidden").trainable = False
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse")
    frozen = model.get_layer("hidden").get_weights()
    out = model.get_layer("out").get_weights()
    model.fit(X, Y, epochs=2, verbose=0)
    for a, b in zip(frozen, model.get_layer("hidden").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0], model.get_layer("out").get_weights()[0])
