"""The Keras frontend, unchanged, on backend="numba-cuda": a tiny Sequential model fits one
epoch, predicts and hands back its weights as the reference backend's twin does.

The weights live on the device during fit; the frontend brings them home through the
executable's sync_state() (and sends host writes with load_state()). Until trainer.py
calls them, reading weights right after fit sees the values from before it: that test is
an expected failure, strict, so it turns into a failure the day the hook lands and must
pass. (It runs first: a later predict builds a second executable, which brings the first
one's state home before it starts.)
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.frontends.keras import trainer

TOL = {"rtol": 1e-4, "atol": 1e-5}
HOOKED = "sync_state" in inspect.getsource(trainer)


def _data():  # noqa: ANN202
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 9)).astype(np.float32)
    return x, np.argmax(x @ rng.standard_normal((9, 3)), axis=1)


def _pair():  # noqa: ANN202
    def build(backend: str) -> models.Sequential:
        # A first kernel of 9x8 = 72 weights: more than the executable compares by itself.
        model = models.Sequential([layers.Input((9,)), layers.Dense(8, activation="relu"),
                                   layers.Dense(3, activation="softmax")])
        model.compile(optimizer=optimizers.RMSprop(0.01),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      backend=backend)
        return model

    ref = build("reference")
    gpu = build("numba-cuda")
    gpu.set_weights(ref.get_weights())
    x, y = _data()
    logs = [m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
            for m in (ref, gpu)]
    return ref, gpu, logs


@pytest.fixture(scope="module")
def fitted():  # noqa: ANN201
    return _pair()


@pytest.mark.xfail(not HOOKED, strict=True,
                   reason="trainer.py does not call the executable's sync_state() yet")
def test_get_weights_after_fit_match_the_reference_backend(fitted) -> None:  # noqa: ANN001
    ref, gpu, _ = fitted
    for got, expected in zip(gpu.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, **TOL)


def test_fit_and_predict_match_the_reference_backend(fitted) -> None:  # noqa: ANN001
    ref, gpu, (ref_logs, gpu_logs) = fitted
    assert sorted(gpu_logs) == sorted(ref_logs)
    for key in ref_logs:
        np.testing.assert_allclose(gpu_logs[key], ref_logs[key], err_msg=key, **TOL)
    x, _ = _data()
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


@pytest.mark.xfail("load_state" not in inspect.getsource(trainer), strict=True,
                   reason="trainer.py does not call the executable's load_state() yet")
def test_set_weights_reach_the_device(fitted) -> None:  # noqa: ANN001
    ref, gpu, _ = fitted
    x, _ = _data()
    gpu.predict(x, verbose=0)  # the executable of predict exists: set_weights must reach it
    doubled = [2 * w for w in ref.get_weights()]
    for model in (ref, gpu):
        model.set_weights(doubled)
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)
