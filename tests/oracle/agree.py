"""What the oracle tests check of a Keras model and the kiln model given its weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def assert_predicts_and_trains_alike(theirs: Any, ours: Any, x: Any,
                                     rng: np.random.Generator, keras: Any, optimizers: Any,
                                     steps: int = 2) -> None:
    """The same predictions on x; then, both compiled with SGD(0.1) and mse, the same loss
    for `steps` train_on_batch calls on random targets, and the same weights after."""
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ours.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    n = len(x[0] if isinstance(x, list) else x)
    y = rng.standard_normal((n, *ours.outputs[0].shape[1:])).astype("float32")
    for step in range(steps):
        their_loss = float(np.ravel(theirs.train_on_batch(x, y))[0])
        assert float(ours.train_on_batch(x, y)) == pytest.approx(their_loss, rel=1e-4), step
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)
