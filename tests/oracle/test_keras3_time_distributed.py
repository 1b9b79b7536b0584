"""TimeDistributed against real Keras 3 (optional, as test_keras3.py): with Keras's weights,
models that wrap dense, convolution, pooling, normalization, recurrent layers and a nested
model predict, train and end with the weights (moving statistics included) Keras's do; and a
batch-normalization layer called twice updates its statistics twice, as Keras's does."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, optimizers  # noqa: E402
from tests.oracle.agree import assert_predicts_and_trains_alike  # noqa: E402

rng = np.random.default_rng(5)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _tagger(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(5, 3))
    y = L.TimeDistributed(L.Dense(4, activation="tanh"))(x)
    return x, L.TimeDistributed(L.Dense(2))(L.LSTM(3, return_sequences=True)(y))


def _video(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(3, 6, 6, 2))
    y = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"))(x)
    y = L.TimeDistributed(L.MaxPooling2D())(y)
    y = L.TimeDistributed(L.Flatten())(y)
    return x, L.Dense(2)(L.GRU(4)(y))


def _normalized(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(4, 3, 2))
    y = L.TimeDistributed(L.BatchNormalization(axis=1, momentum=0.7))(x)
    y = L.TimeDistributed(L.LayerNormalization(axis=[1, 2]))(y)
    return x, L.TimeDistributed(L.Flatten())(y)


def _nested(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(2, 5, 3))
    inner = keras.Sequential([L.Conv1D(2, 2, activation="relu"), L.GlobalAveragePooling1D()]) \
        if L is keras.layers else models.Sequential([L.Conv1D(2, 2, activation="relu"),
                                                     L.GlobalAveragePooling1D()])
    return x, L.TimeDistributed(inner)(x)


def _shared_batch_norm(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(3,))
    norm = L.BatchNormalization(momentum=0.5)
    return x, norm(L.Dense(3)(norm(x)))


CASES = {  # name -> (build(L) -> (inputs, outputs), input shape without the batch)
    "tagger": (_tagger, (5, 3)),
    "video": (_video, (3, 6, 6, 2)),
    "normalized": (_normalized, (4, 3, 2)),
    "nested": (_nested, (2, 5, 3)),
    "shared_batch_norm": (_shared_batch_norm, (3,)),
}


@pytest.mark.parametrize("name", CASES)
def test_time_distributed_models_predict_and_train_like_keras(name: str) -> None:
    build, shape = CASES[name]
    keras.utils.set_random_seed(0)
    theirs = keras.Model(*build(keras.layers))
    ours = models.Model(*build(layers))
    ours.set_weights(theirs.get_weights())
    x = (rng.standard_normal((6, *shape)) * 2 + 0.5).astype("float32")
    assert_predicts_and_trains_alike(theirs, ours, x, rng, keras, optimizers)


def test_masked_steps_fit_like_keras() -> None:
    """A padded tagger: batch normalization per step counts the steps the mask keeps, and
    the loss and metrics only those, as Keras's do."""
    def build(L):  # noqa: ANN001, ANN202, N803
        ids = L.Input(shape=(5,), dtype="int32")
        e = L.Embedding(7, 3, mask_zero=True)(ids)
        # No bias before the normalization: its gradient is rounding alone, which Adam
        # would blow up differently in each framework.
        y = L.TimeDistributed(L.Dense(4, use_bias=False))(e)
        y = L.TimeDistributed(L.BatchNormalization())(y)
        return ids, L.TimeDistributed(L.Dense(3, activation="softmax"))(
            L.GRU(4, return_sequences=True)(y))

    keras.utils.set_random_seed(0)
    theirs, ours = keras.Model(*build(keras.layers)), models.Model(*build(layers))
    ours.set_weights(theirs.get_weights())
    x = rng.integers(1, 7, (10, 5))
    for row in x:
        row[int(rng.integers(1, 5)):] = 0
    y = rng.integers(0, 3, (10, 5))
    for model, opt in ((theirs, keras.optimizers.Adam(0.05)), (ours, optimizers.Adam(0.05))):
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    kwargs = dict(batch_size=4, epochs=2, shuffle=False, verbose=0)
    want, got = theirs.fit(x, y, **kwargs).history, ours.fit(x, y, **kwargs).history
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)
