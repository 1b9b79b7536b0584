"""Activations by name against Keras 3's definitions in NumPy: the exact gelu (an erf from
element-wise ops), the rest of Keras 3's names; every one finite and differentiable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiln import layers, models
from kiln.frontends.keras import activations
from kiln.ir import KilnValueError

RNG = np.random.default_rng(15)
X = np.concatenate([np.linspace(-3, 3, 25), [-1, -0.5, 0, 0.2, 0.5, 1, 1.5, 6, 7]])
X = X.astype(np.float32).reshape(1, -1)


def predict(activation: str, x: np.ndarray) -> np.ndarray:
    model = models.Sequential([layers.Input(x.shape[1:]), layers.Activation(activation)])
    model.compile(loss="mse", backend="reference")
    return model.predict(x, verbose=0)

ERF_CASES = np.linspace(-5, 5, 101)


def test_gelu_is_exact_not_the_tanh_form() -> None:
    x = ERF_CASES.astype(np.float32).reshape(1, -1)
    want = np.array([v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in ERF_CASES])
    np.testing.assert_allclose(predict("gelu", x)[0], want, atol=5e-7)


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


FORMULAS = {  # Keras 3's definitions
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "hard_swish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "log_sigmoid": lambda x: np.log(_np_sigmoid(x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(np.expm1(x), 0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
}


@pytest.mark.parametrize("name", FORMULAS)
def test_activation_by_name_matches_keras_formula(name: str) -> None:
    want = FORMULAS[name](X.astype(np.float64))
    np.testing.assert_allclose(predict(name, X), want, rtol=1e-5,
                               atol=1e-6)


def test_glu_halves_the_last_axis() -> None:
    x = RNG.standard_normal((2, 3, 6)).astype(np.float32)
    want = x[..., :3] * _np_sigmoid(x[..., 3:])
    np.testing.assert_allclose(predict("glu", x), want, rtol=1e-5)
    with pytest.raises(KilnValueError, match="glu: expected the last axis of even"):
        predict("glu", x[..., :5])


def test_every_named_activation_is_finite_and_differentiable() -> None:
    x = np.float32([[-2.0, -0.7, 0.3, 1.2, 2.0, 4.0]])
    for name in sorted(activations.ACTIVATIONS):
        model = models.Sequential([layers.Input((6,)), layers.Dense(6),
                                   layers.Activation(name)])
        model.compile(optimizer="sgd", loss="mse", backend="reference")
        y = np.zeros((1, model.outputs[0].shape[-1]), np.float32)
        assert np.isfinite(float(model.train_on_batch(x, y))), name
