"""LayerNormalization against Keras 3's formula in NumPy (each sample's mean and biased
variance over `axis`, then gamma and beta), for trailing and other axes; training on every
backend; gradients against finite differences; configs, save/load and errors."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnTypeError, KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(8)


def layer_norm(x: np.ndarray, axes: tuple[int, ...], gamma, beta, epsilon: float,  # noqa: ANN001
               rms: bool = False) -> np.ndarray:
    x = x.astype(np.float64)
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    if rms:
        return x / np.sqrt(variance + epsilon) * np.reshape(gamma, shape)
    out = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        out = out * np.reshape(gamma, shape)
    return out if beta is None else out + np.reshape(beta, shape)


CASES = [  # (input shape without batch, kwargs, normalized axes)
    ((6,), {}, (1,)),
    ((4, 5), {}, (2,)),
    ((4, 5), {"axis": [1, 2]}, (1, 2)),
    ((4, 5), {"axis": 1}, (1,)),
    ((3, 4, 5), {"axis": [1, 3], "epsilon": 0.1}, (1, 3)),
    ((4, 5), {"axis": -2, "center": False}, (1,)),
    ((4, 5), {"scale": False}, (2,)),
    ((4, 5), {"rms_scaling": True}, (2,)),
]


@pytest.mark.parametrize("shape, kwargs, axes", CASES)
def test_matches_numpy(shape: tuple, kwargs: dict, axes: tuple) -> None:
    layer = layers.LayerNormalization(**kwargs)
    model = models.Sequential([layers.Input(shape), layer])
    weights = [RNG.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    model.compile(loss="mse", backend="reference")
    x = (RNG.standard_normal((3, *shape)) * 3 + 1).astype(np.float32)
    gamma = layer.gamma.numpy() if hasattr(layer, "gamma") else None
    beta = layer.beta.numpy() if hasattr(layer, "beta") else None
    want = layer_norm(x, axes, gamma, beta, kwargs.get("epsilon", 1e-3),
                      kwargs.get("rms_scaling", False))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    assert [w.shape for w in model.get_weights()] == \
        [tuple(shape[a - 1] for a in axes)] * len(weights)


def _model(backend: str) -> models.Model:
    # No bias before the normalization: the mean over axis 1 removes it, so its gradient is
    # float noise, which Adam scales to full-size steps (different on every backend).
    model = models.Sequential([layers.Input((4, 5)), layers.Dense(6, use_bias=False),
                               layers.LayerNormalization(axis=1), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    model.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy",
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_trains_like_the_reference(backend: str) -> None:
    x = RNG.standard_normal((8, 4, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 8)]
    assert_trains_like_the_reference(_model, backend, x, y)


def test_gradient_matches_finite_differences() -> None:
    """One SGD(1) step's change of the input layer's kernel (upstream of the
    normalization, so the gradient flows through the mean and variance) equals central
    differences of the loss."""
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    y = RNG.standard_normal((4, 4)).astype(np.float32)

    def build() -> models.Model:
        model = models.Sequential([layers.Input((3,)), layers.Dense(4),
                                   layers.LayerNormalization()])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32)
               for w in build().get_weights()]
    assert_gradient_matches_finite_differences(build, weights, x, y)


def test_config_and_save_load(tmp_path) -> None:  # noqa: ANN001
    model = models.Sequential([layers.Input((4, 5)), layers.LayerNormalization(
        axis=[1, 2], epsilon=0.01, gamma_regularizer="l2", beta_constraint="non_neg")])
    config = model.layers[0].get_config()
    assert config["axis"] == [1, 2] and config["epsilon"] == 0.01
    assert config["gamma_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    model.compile(loss="mse", backend="reference")
    model.save(tmp_path / "ln.kiln")
    loaded = models.load_model(tmp_path / "ln.kiln", backend="reference")
    assert loaded.get_config() == model.get_config()
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


@pytest.mark.parametrize("make, shape, error, match", [
    (lambda: layers.LayerNormalization(axis="last"), None, KilnTypeError, "axis"),
    (lambda: layers.LayerNormalization(epsilon="x"), None, KilnTypeError, "epsilon"),
    (lambda: layers.LayerNormalization(axis=3, name="ln1"), (4, 5), KilnValueError,
     "'ln1'.*axis 3 is out of bounds"),
    (lambda: layers.LayerNormalization(axis=0, name="ln2"), (4, 5), KilnValueError,
     "'ln2'.*other than the batch axis"),
    (lambda: layers.LayerNormalization(name="ln3"), (4, None), KilnValueError,
     "'ln3'.*defined dimension"),
])
def test_errors(make, shape, error, match) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match):
        layer = make()
        models.Sequential([layers.Input(shape), layer])
