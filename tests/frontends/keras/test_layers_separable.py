"""DepthwiseConv1D/2D and SeparableConv1D/2D against Keras 3's definition in NumPy (each
channel correlated with its own depth_multiplier kernels, then for the separable ones a
1 x 1 convolution), with hypothesis over sizes, kernels, strides, dilations, paddings and
multipliers; training on numba and onnxruntime like the reference; gradients against finite
differences; configs and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from kiln.ir.ops.nn import window
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(16)


def depthwise(x: np.ndarray, kernel: np.ndarray, strides: tuple, padding: str,
              dilation: tuple) -> np.ndarray:
    """x (N, H, W, C), kernel (kh, kw, C, M) -> (N, H', W', C * M), channel c * M + m."""
    n, h, w, c = x.shape
    kh, kw, _, m = kernel.shape
    win = window((h, w), (kh, kw), strides, padding, dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), *win.pads, (0, 0)))
    out = np.zeros((n, *win.out, c, m))
    for r in range(win.out[0]):
        for q in range(win.out[1]):
            for i in range(kh):
                for j in range(kw):
                    pixel = xp[:, r * strides[0] + i * dilation[0],
                               q * strides[1] + j * dilation[1]]      # (N, C)
                    out[:, r, q] += pixel[:, :, None] * kernel[i, j]
    return out.reshape(n, *win.out, c * m)


def _predict(layer: layers.Layer, x: np.ndarray) -> np.ndarray:
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    model.set_weights([RNG.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.compile(loss="mse", backend="reference")
    out = model.predict(x, verbose=0)
    assert model.outputs[0].shape == (None, *out.shape[1:])
    return out


geometry = st.fixed_dictionaries({
    "size": st.tuples(st.integers(5, 7), st.integers(5, 7)),
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "strides": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "dilation": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "padding": st.sampled_from(["valid", "same"]),
    "multiplier": st.integers(1, 3)})


@settings(max_examples=30, deadline=None)
@given(geometry, st.booleans())
def test_matches_keras_definition(g: dict, separable: bool) -> None:
    args = {"strides": g["strides"], "padding": g["padding"],
            "dilation_rate": g["dilation"], "depth_multiplier": g["multiplier"]}
    layer = (layers.SeparableConv2D(3, g["kernel"], **args) if separable
             else layers.DepthwiseConv2D(g["kernel"], **args))
    x = RNG.standard_normal((2, *g["size"], 2)).astype(np.float32)
    out = _predict(layer, x)
    kernel = (layer.depthwise_kernel if separable else layer.kernel).numpy()
    want = depthwise(x, kernel, g["strides"], g["padding"], g["dilation"])
    if separable:
        want = want @ layer.pointwise_kernel.numpy()[0, 0]
    np.testing.assert_allclose(out, want + layer.bias.numpy(), rtol=1e-4, atol=1e-5)


def test_one_dimensional_layers_are_the_2d_ones_on_a_row() -> None:
    x = RNG.standard_normal((2, 7, 3)).astype(np.float32)
    layer = layers.DepthwiseConv1D(3, strides=2, padding="same", depth_multiplier=2)
    out = _predict(layer, x)
    want = depthwise(x[:, None], layer.kernel.numpy()[None], (1, 2), "same", (1, 1))[:, 0]
    np.testing.assert_allclose(out, want + layer.bias.numpy(), rtol=1e-4, atol=1e-5)
    sep = layers.SeparableConv1D(4, 2, dilation_rate=2)
    out = _predict(sep, x)
    want = depthwise(x[:, None], sep.depthwise_kernel.numpy()[None], (1, 1), "valid",
                     (1, 2))[:, 0] @ sep.pointwise_kernel.numpy()[0]
    np.testing.assert_allclose(out, want + sep.bias.numpy(), rtol=1e-4, atol=1e-5)


def _model(backend: str) -> models.Model:
    """The book's chapter-7 shape in small: SeparableConv2D blocks, pooling, a classifier."""
    model = models.Sequential([
        layers.Input((8, 8, 3)),
        layers.SeparableConv2D(4, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(2),
        layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same"),
        layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
    model.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy",
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_trains_like_the_reference(backend: str) -> None:
    x = RNG.standard_normal((4, 8, 8, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 4)]
    assert_trains_like_the_reference(_model, backend, x, y)


def test_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        model = models.Sequential([layers.Input((4, 4, 2)), layers.SeparableConv2D(
            2, 3, strides=2, padding="same", depth_multiplier=2), layers.Flatten(),
            layers.Dense(1)])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in build().get_weights()]
    x = RNG.standard_normal((2, 4, 4, 2)).astype(np.float32)
    y = RNG.standard_normal((2, 1)).astype(np.float32)
    for index in (0, 1):  # the depthwise and the pointwise kernel
        assert_gradient_matches_finite_differences(build, weights, x, y, index=index)


def test_weights_configs_and_errors() -> None:
    sep = layers.SeparableConv2D(5, 3, depth_multiplier=2, pointwise_regularizer="l2",
                                 depthwise_constraint="non_neg")
    dw = layers.DepthwiseConv2D(2, depth_multiplier=3, use_bias=False)
    models.Sequential([layers.Input((6, 6, 4)), sep])
    models.Sequential([layers.Input((6, 6, 4)), dw])
    assert [w.shape for w in sep.weights] == [(3, 3, 4, 2), (1, 1, 8, 5), (5,)]
    assert [w.path for w in sep.weights][0].endswith("depthwise_kernel")
    assert [w.shape for w in dw.weights] == [(2, 2, 4, 3)]
    for layer in (sep, dw):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config
    with pytest.raises(KilnValueError, match="'dw'.*`depth_multiplier`.*strictly positive"):
        layers.DepthwiseConv2D(3, depth_multiplier=0, name="dw")
    with pytest.raises(KilnValueError, match="'sep'.*`filters`"):
        layers.SeparableConv2D(0, 3, name="sep")
    with pytest.raises(KilnValueError, match="needs known rows and cols"):
        models.Sequential([layers.Input((None, 5, 2)), layers.DepthwiseConv2D(3)])
    with pytest.raises(KilnValueError, match="channels_last"):
        layers.SeparableConv1D(2, 3, data_format="channels_first")
