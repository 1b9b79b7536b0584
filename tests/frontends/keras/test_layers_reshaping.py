"""Permute, RepeatVector, ZeroPadding1D/2D, Cropping1D/2D and UpSampling1D/2D against NumPy
(np.transpose, np.pad, slicing, np.repeat, and bilinear resizing written per output pixel),
in both data formats; gradients through bilinear up-sampling against finite differences;
configs and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(12)


def predict(layer: layers.Layer, x: np.ndarray) -> np.ndarray:
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    model.compile(loss="mse", backend="reference")
    out = model.predict(x, verbose=0)
    assert model.outputs[0].shape == (None, *out.shape[1:])
    return out


def test_permute_and_repeat_vector() -> None:
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(predict(layers.Permute((3, 1, 2)), x),
                                  x.transpose(0, 3, 1, 2))
    v = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(predict(layers.RepeatVector(3), v),
                                  np.repeat(v[:, None], 3, axis=1))


@settings(max_examples=20, deadline=None)
@given(st.tuples(st.integers(0, 2), st.integers(0, 2)),
       st.tuples(st.integers(0, 2), st.integers(0, 2)), st.booleans())
def test_zero_padding_and_cropping_2d(rows: tuple, cols: tuple, first: bool) -> None:
    fmt = "channels_first" if first else "channels_last"
    x = RNG.standard_normal((2, 3, 5, 6) if first else (2, 5, 6, 3)).astype(np.float32)
    axes = (2, 3) if first else (1, 2)
    pads = [(0, 0)] * 4
    pads[axes[0]], pads[axes[1]] = rows, cols
    np.testing.assert_array_equal(predict(layers.ZeroPadding2D((rows, cols), fmt), x),
                                  np.pad(x, pads))
    index = [slice(None)] * 4
    index[axes[0]] = slice(rows[0], 5 - rows[1])
    index[axes[1]] = slice(cols[0], 6 - cols[1])
    np.testing.assert_array_equal(predict(layers.Cropping2D((rows, cols), fmt), x),
                                  x[tuple(index)])


def test_padding_and_cropping_arguments() -> None:
    x = RNG.standard_normal((2, 5, 6, 3)).astype(np.float32)
    assert predict(layers.ZeroPadding2D(1), x).shape == (2, 7, 8, 3)
    assert predict(layers.ZeroPadding2D((2, 0)), x).shape == (2, 9, 6, 3)
    assert predict(layers.Cropping2D(1), x).shape == (2, 3, 4, 3)
    s = RNG.standard_normal((2, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(predict(layers.ZeroPadding1D((2, 1)), s),
                                  np.pad(s, ((0, 0), (2, 1), (0, 0))))
    np.testing.assert_array_equal(
        predict(layers.ZeroPadding1D(1, data_format="channels_first"), s),
        np.pad(s, ((0, 0), (0, 0), (1, 1))))
    np.testing.assert_array_equal(predict(layers.Cropping1D((2, 1)), s), s[:, 2:5])
    np.testing.assert_array_equal(predict(layers.Cropping1D(), s), s[:, 1:5])


def test_nearest_up_sampling() -> None:
    s = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict(layers.UpSampling1D(3), s), np.repeat(s, 3, axis=1))
    x = RNG.standard_normal((2, 3, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(predict(layers.UpSampling2D((2, 3)), x),
                                  np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))
    first = x.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(
        predict(layers.UpSampling2D(2, data_format="channels_first"), first),
        np.repeat(np.repeat(first, 2, axis=2), 2, axis=3))


def bilinear(x: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Half-pixel bilinear resizing of NHWC images, pixel by pixel (torch's interpolate,
    align_corners=False): output (i, j) reads the input at ((i + .5) / fy - .5, ...), each
    coordinate clamped below at 0 and its upper neighbour at the last row/col."""
    n, h, w, c = x.shape
    out = np.zeros((n, h * fy, w * fx, c))

    def taps(i: int, factor: int, size: int) -> tuple[int, int, float]:
        source = max((i + 0.5) / factor - 0.5, 0.0)
        low = min(int(source), size - 1)
        return low, min(low + 1, size - 1), source - low

    for i in range(h * fy):
        r0, r1, wr = taps(i, fy, h)
        for j in range(w * fx):
            c0, c1, wc = taps(j, fx, w)
            top = x[:, r0, c0] * (1 - wc) + x[:, r0, c1] * wc
            bottom = x[:, r1, c0] * (1 - wc) + x[:, r1, c1] * wc
            out[:, i, j] = top * (1 - wr) + bottom * wr
    return out


@pytest.mark.parametrize("size", [(2, 2), (3, 1), (1, 4), (3, 2)])
def test_bilinear_up_sampling(size: tuple) -> None:
    x = RNG.standard_normal((2, 3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(predict(layers.UpSampling2D(size, interpolation="bilinear"), x),
                               bilinear(x, *size), rtol=1e-5, atol=1e-6)


def test_bilinear_up_sampling_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        model = models.Sequential([layers.Input((2, 3, 1)), layers.Conv2D(2, 1),
                                   layers.UpSampling2D((2, 3), interpolation="bilinear"),
                                   layers.Flatten(), layers.Dense(1)])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [w.astype(np.float32) for w in build().get_weights()]
    weights[0] = RNG.standard_normal(weights[0].shape).astype(np.float32)
    x = RNG.standard_normal((3, 2, 3, 1)).astype(np.float32)
    y = RNG.standard_normal((3, 1)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, weights, x, y, index=0)


def test_configs_round_trip() -> None:
    for layer in (layers.Permute((2, 1)), layers.RepeatVector(4), layers.ZeroPadding1D((1, 2)),
                  layers.ZeroPadding2D(((1, 2), (0, 3)), "channels_first"),
                  layers.Cropping1D(2), layers.Cropping2D(((1, 0), (0, 2))),
                  layers.UpSampling1D(3), layers.UpSampling2D((2, 1), interpolation="bilinear")):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config


def test_errors_name_the_layer() -> None:
    with pytest.raises(KilnValueError, match="'perm'.*consecutive integers starting from 1"):
        layers.Permute((0, 1), name="perm")
    with pytest.raises(KilnValueError, match="expected ndim=2, found ndim=3"):
        models.Sequential([layers.Input((3, 4)), layers.RepeatVector(2)])
    with pytest.raises(KilnValueError, match=r"'crop'.*must leave something"):
        models.Sequential([layers.Input((4, 2)), layers.Cropping1D((2, 2), name="crop")])
    with pytest.raises(KilnValueError, match="'pad'.*needs a known number of steps"):
        models.Sequential([layers.Input((None, 2)), layers.ZeroPadding1D(name="pad")])
    with pytest.raises(KilnValueError, match="zero_padding2d.*should be either an int"):
        layers.ZeroPadding2D((1, 2, 3))
    with pytest.raises(KilnValueError, match="interpolation='nearest' or 'bilinear'"):
        layers.UpSampling2D(interpolation="bicubic")
    with pytest.raises(KilnValueError, match="`size` as a positive int"):
        layers.UpSampling1D(0)


def _mixed_model(backend: str) -> models.Model:
    """The new activation, merge and reshaping layers in one functional model (no
    convolutions: their layers are tested on every backend elsewhere, and each one here
    would cost the numba driver seconds of compile time)."""
    seq = layers.Input((6, 3))
    img = layers.Input((4, 5, 2))
    a = layers.PReLU(alpha_initializer="random_uniform", shared_axes=[1])(
        layers.Dense(4)(layers.Cropping1D((1, 0))(layers.ZeroPadding1D((2, 1))(seq))))
    a = layers.UpSampling1D(2)(layers.ELU(0.5)(a))                      # (16, 4)
    b = layers.Permute((2, 1))(layers.ReLU(max_value=2.0, negative_slope=0.1)(
        layers.Dense(16)(layers.Permute((2, 1))(seq))))                 # (16, 3)
    b = layers.Dense(4)(b)
    merged = layers.Average()([a, layers.Maximum()([a, b]), layers.Subtract()([b, a])])
    v = layers.Flatten()(layers.Dot(axes=(1, 1))([merged, b]))         # (4 * 4,)
    i = layers.Cropping2D(((1, 0), (0, 1)))(layers.ZeroPadding2D(1)(
        layers.UpSampling2D(2, interpolation="bilinear")(img)))         # (9, 11, 2)
    i = layers.LeakyReLU()(i)
    w = layers.Flatten()(layers.Minimum()([i, layers.UpSampling2D((1, 1))(i)]))
    rep = layers.Flatten()(layers.RepeatVector(2)(layers.Dense(3)(v)))
    out = layers.Softmax()(layers.Dense(4)(layers.concatenate([v, w, rep])))
    model = models.Model([seq, img], out)
    model.set_weights([RNG.standard_normal(x.shape).astype(np.float32) * 0.3
                       for x in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy",
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_new_layers_train_like_the_reference(backend: str) -> None:
    x = [RNG.standard_normal((5, 6, 3)).astype(np.float32),
         RNG.standard_normal((5, 4, 5, 2)).astype(np.float32)]
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 5)]
    assert_trains_like_the_reference(_mixed_model, backend, x, y)
