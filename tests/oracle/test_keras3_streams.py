"""Real Keras 3 as the oracle for data given as batches: the same model, with Keras's
weights, fit on a PyDataset, a generator with steps_per_epoch, arrays with steps_per_epoch,
and evaluated / predicted on batches, gives Keras's history, weights and outputs."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, utils  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

rs = np.random.default_rng(5)
X = rs.standard_normal((90, 6)).astype(np.float32)
Y = np.argmax(X @ rs.standard_normal((6, 3)), axis=1).astype(np.int64)


def _pair(metrics=("accuracy",)):  # noqa: ANN001, ANN202
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential([keras.layers.Input((6,)), keras.layers.Dense(8, activation="relu"),
                               keras.layers.Dense(3, activation="softmax")])
    ours = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=list(metrics))
    return theirs, ours


def _dataset(base):  # noqa: ANN001, ANN202
    """A PyDataset class of 4 batches (the last short) on Keras's or kiln's base class."""
    class Batches(base):
        def __init__(self, x, y, **kwargs) -> None:  # noqa: ANN001
            super().__init__(**kwargs)
            self.x, self.y = x, y

        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int):
            return self.x[index * 25:(index + 1) * 25], self.y[index * 25:(index + 1) * 25]
    return Batches


def _forever():
    while True:
        for i in range(0, 90, 30):
            yield X[i:i + 30], Y[i:i + 30]


def _agree(theirs, ours, their_history, our_history) -> None:  # noqa: ANN001
    assert sorted(our_history.history) == sorted(their_history.history)
    for key, values in their_history.history.items():
        np.testing.assert_allclose(our_history.history[key], values, rtol=1e-4, atol=1e-6,
                                   err_msg=key)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-6)


def test_fit_on_a_pydataset_with_validation_and_class_weight() -> None:
    theirs, ours = _pair()
    table = {0: 0.5, 1: 2.0, 2: 1.0}
    kwargs = dict(epochs=2, shuffle=False, verbose=0, class_weight=table)
    their_history = theirs.fit(_dataset(keras.utils.PyDataset)(X, Y),
                               validation_data=_dataset(keras.utils.PyDataset)(X[::-1], Y[::-1]),
                               **kwargs)
    our_history = ours.fit(_dataset(utils.PyDataset)(X, Y),
                           validation_data=_dataset(utils.PyDataset)(X[::-1], Y[::-1]), **kwargs)
    _agree(theirs, ours, their_history, our_history)


def test_fit_on_a_generator_with_steps_per_epoch() -> None:
    theirs, ours = _pair()
    kwargs = dict(epochs=3, steps_per_epoch=2, verbose=0)  # epochs go on across the passes
    _agree(theirs, ours, theirs.fit(_forever(), **kwargs), ours.fit(_forever(), **kwargs))


def test_fit_on_arrays_with_steps_per_epoch() -> None:
    theirs, ours = _pair()
    kwargs = dict(epochs=2, steps_per_epoch=4, shuffle=False, verbose=0)  # batches of 23
    _agree(theirs, ours, theirs.fit(X, Y, **kwargs), ours.fit(X, Y, **kwargs))


def test_evaluate_and_predict_on_batches() -> None:
    theirs, ours = _pair()
    np.testing.assert_allclose(ours.evaluate(_forever(), steps=3, verbose=0),
                               theirs.evaluate(_forever(), steps=3, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(ours.evaluate(X, Y, steps=2, verbose=0),
                               theirs.evaluate(X, Y, steps=2, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(ours.predict(_dataset(utils.PyDataset)(X, Y), verbose=0),
                               theirs.predict(_dataset(keras.utils.PyDataset)(X, Y), verbose=0),
                               rtol=1e-5, atol=1e-6)
