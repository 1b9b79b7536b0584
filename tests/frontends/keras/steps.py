"""Checks the Keras frontend's tests share: a model trained on a backend against the same
model on the reference runtime, and one SGD(1) step against finite differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kiln import models


def assert_steps_agree(ours: models.Model, reference: models.Model, x: object, y: object,
                       steps: int = 3, what: str = "") -> None:
    """`steps` train_on_batch calls give the same losses, then the same weights."""
    for step in range(steps):  # the loss (the first of a multi-output model's logs)
        assert float(np.ravel(ours.train_on_batch(x, y))[0]) == pytest.approx(
            float(np.ravel(reference.train_on_batch(x, y))[0]), rel=1e-5), f"{what} {step}"
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=what)


def assert_trains_like_the_reference(build: Callable[[str], models.Model], backend: str,
                                     x: object, y: object, steps: int = 3) -> None:
    """build(backend) and build("reference"), the first's weights copied into the second,
    then `steps` train_on_batch calls agree (assert_steps_agree)."""
    ours = build(backend)
    reference = build("reference")
    reference.set_weights(ours.get_weights())
    assert_steps_agree(ours, reference, x, y, steps=steps, what=backend)


def assert_gradient_matches_finite_differences(build: Callable[[], models.Model],
                                               weights: list[np.ndarray], x: object,
                                               y: object, index: int = 0, h: float = 1e-2,
                                               tolerance: float = 2e-3) -> None:
    """build() compiled with SGD(1.0): one step's change of weights[index] is the loss's
    gradient, which must equal central differences of the loss evaluate reports."""
    model = build()
    model.set_weights(weights)
    model.train_on_batch(x, y)
    gradient = weights[index] - model.get_weights()[index]
    probe = build()
    for entry in np.ndindex(weights[index].shape):
        losses = []
        for sign in (1, -1):
            moved = [np.array(w, dtype=np.float64) for w in weights]
            moved[index][entry] += sign * h
            probe.set_weights([m.astype(np.float32) for m in moved])
            losses.append(probe.evaluate(x, y, verbose=0))
        assert gradient[entry] == pytest.approx((losses[0] - losses[1]) / (2 * h),
                                                abs=tolerance), entry
