"""The activation layers (ReLU, LeakyReLU, ELU, PReLU, Softmax) against Keras 3's formulas in
NumPy; PReLU's gradient against finite differences; configs and errors."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers, regularizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import assert_gradient_matches_finite_differences

RNG = np.random.default_rng(11)
X = np.concatenate([np.linspace(-3, 3, 25), [-1, -0.5, 0, 0.2, 0.5, 1, 1.5, 6, 7]])
X = X.astype(np.float32).reshape(1, -1)


def predict(layer: layers.Layer, x: np.ndarray) -> np.ndarray:
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    model.compile(loss="mse", backend="reference")
    return model.predict(x, verbose=0)


def keras_relu(x: np.ndarray, negative_slope: float = 0.0, max_value: float | None = None,
               threshold: float = 0.0) -> np.ndarray:
    """Keras 3's ReLU.static_call, step by step."""
    negative = np.maximum(threshold - x, 0) if negative_slope else 0
    out = np.where(x > threshold, x, 0) if threshold else np.maximum(x, 0)
    if max_value is not None:
        out = np.clip(out, 0, max_value)
    return out - negative_slope * negative


@pytest.mark.parametrize("kwargs", [{}, {"max_value": 6.0}, {"negative_slope": 0.1},
                                    {"threshold": 0.5}, {"max_value": 1.0, "threshold": 2.0},
                                    {"negative_slope": 0.2, "max_value": 1.5, "threshold": 0.5}])
def test_relu_matches_keras_formula(kwargs: dict) -> None:
    np.testing.assert_allclose(predict(layers.ReLU(**kwargs), X), keras_relu(X, **kwargs),
                               rtol=1e-6, atol=1e-7)


def test_leaky_relu_elu_and_softmax() -> None:
    np.testing.assert_allclose(predict(layers.LeakyReLU(), X), np.where(X > 0, X, 0.3 * X),
                               rtol=1e-6)
    assert layers.LeakyReLU(alpha=0.1).negative_slope == 0.1  # Keras 2's name
    np.testing.assert_allclose(predict(layers.ELU(alpha=0.5), X),
                               np.where(X > 0, X, 0.5 * np.expm1(X)), rtol=1e-5, atol=1e-7)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    for axis in (1, -1, [1, 2]):
        axes = tuple(axis) if isinstance(axis, list) else (axis,)
        e = np.exp(x - x.max(axis=axes, keepdims=True))
        np.testing.assert_allclose(predict(layers.Softmax(axis=axis), x),
                                   e / e.sum(axis=axes, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("shared_axes, alpha_shape", [(None, (3, 4)), ([1], (1, 4)),
                                                     ([1, 2], (1, 1)), (2, (3, 1))])
def test_prelu_alpha_shapes_and_values(shared_axes: object, alpha_shape: tuple) -> None:
    layer = layers.PReLU(alpha_initializer="random_uniform", shared_axes=shared_axes)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    out = predict(layer, x)
    alpha = layer.alpha.numpy()
    assert alpha.shape == alpha_shape
    np.testing.assert_allclose(out, np.where(x > 0, x, alpha * x), rtol=1e-6)


def test_prelu_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        model = models.Sequential([layers.Input((3,)), layers.PReLU(
            alpha_regularizer=regularizers.L2(0.1)), layers.Dense(2)])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [np.float32([0.2, -0.3, 0.5]), RNG.standard_normal((3, 2)).astype(np.float32),
               np.zeros(2, np.float32)]
    x = np.float32([[-1.0, 2.0, -0.5], [-2.0, -1.0, 1.0]])
    y = RNG.standard_normal((2, 2)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, weights, x, y, index=0)


def test_configs_round_trip_and_errors() -> None:
    for layer in (layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5),
                  layers.LeakyReLU(0.2), layers.ELU(0.4), layers.Softmax(axis=[1, 2]),
                  layers.PReLU(shared_axes=[1], alpha_regularizer="l2")):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config
    with pytest.raises(KilnValueError, match="'re_lu.*`max_value` cannot be None or a "
                                             "negative value.*max_value=-1"):
        layers.ReLU(max_value=-1, name="re_lu")
    with pytest.raises(KilnValueError, match="negative_slope"):
        layers.LeakyReLU(negative_slope=-0.1)
    with pytest.raises(KilnValueError, match="shared_axes as ints >= 1"):
        layers.PReLU(shared_axes=[0])
    with pytest.raises(KilnValueError, match="alpha needs the size of axis 1"):
        models.Sequential([layers.Input((None, 3)), layers.PReLU()])
    with pytest.raises(KilnValueError, match="axis 3 out of range"):
        models.Sequential([layers.Input((4, 5)), layers.Softmax(axis=3)])
