"""Preprocessing and augmentation layers against real Keras 3 (optional, as test_keras3.py):
the deterministic layers at inference, and the random ones in training with factor ranges of
one value (which draw exactly that value on both), on every fill mode and interpolation;
Normalization's adapt; the book's chapter-8 augmented convnet's predictions with Keras's
weights."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models  # noqa: E402
from tests.frontends.keras.test_layers_core import predict  # noqa: E402

rng = np.random.default_rng(8)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
IMAGES = rng.uniform(0, 255, (3, 9, 11, 2)).astype(np.float32)


def _agree(make, x: np.ndarray, training: bool) -> None:  # noqa: ANN001
    """make(L) -> a layer; kiln's output on x (through the reference runtime) is Keras's."""
    theirs = make(keras.layers)(x, training=training)
    theirs = np.asarray(theirs.detach().cpu().numpy() if hasattr(theirs, "detach") else theirs)
    model = models.Sequential([layers.Input(x.shape[1:]), make(layers)])
    ours = predict(model, x, training=training)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


FILLS = [(mode, interp) for mode in ("reflect", "wrap", "constant", "nearest")
         for interp in ("bilinear", "nearest")]


@pytest.mark.parametrize("fill_mode, interpolation", FILLS)
def test_fixed_rotations_zooms_and_translations_resample_as_keras(fill_mode: str,
                                                                  interpolation: str) -> None:
    common = {"fill_mode": fill_mode, "interpolation": interpolation, "fill_value": 7.0}
    for make in (lambda L: L.RandomRotation((0.07, 0.07), **common),
                 lambda L: L.RandomRotation((-0.3, -0.3), **common),
                 lambda L: L.RandomZoom((0.25, 0.25), (-0.3, -0.3), **common),
                 lambda L: L.RandomZoom((-0.2, -0.2), **common),
                 lambda L: L.RandomTranslation((0.15, 0.15), (-0.23, -0.23), **common)):
        _agree(make, IMAGES, training=True)
        _agree(make, IMAGES, training=False)  # the identity, as float


def test_fixed_contrast_and_brightness_as_keras() -> None:
    _agree(lambda L: L.RandomContrast((-0.3, 0.3)), IMAGES, training=True)  # factor 1.3
    _agree(lambda L: L.RandomBrightness((0.2, 0.2)), IMAGES, training=True)
    _agree(lambda L: L.RandomBrightness((-0.1, -0.1), value_range=(0, 1)), IMAGES / 255,
           training=True)
    for make in (lambda L: L.RandomContrast(0.5), lambda L: L.RandomBrightness(0.5)):
        _agree(make, IMAGES, training=False)


@pytest.mark.parametrize("make", [
    lambda L: L.Rescaling(1 / 127.5, offset=-1),
    lambda L: L.CenterCrop(5, 6),
    lambda L: L.CenterCrop(4, 11),
    lambda L: L.CenterCrop(12, 8),  # larger than the images: their smart resize
    lambda L: L.Resizing(4, 5),
    lambda L: L.Resizing(17, 23),
    lambda L: L.Resizing(4, 7, interpolation="nearest"),
    lambda L: L.Resizing(18, 13, interpolation="nearest"),
    lambda L: L.Resizing(6, 6, crop_to_aspect_ratio=True),
    lambda L: L.Resizing(6, 3, pad_to_aspect_ratio=True, fill_value=3.0),
    lambda L: L.Resizing(4, 9, pad_to_aspect_ratio=True),
    lambda L: L.Normalization(mean=[10.0, 20.0], variance=[4.0, 9.0]),
    lambda L: L.Normalization(axis=None, mean=5.0, variance=2.0, invert=True),
], ids=lambda f: "")
def test_deterministic_layers_compute_what_keras_computes(make) -> None:  # noqa: ANN001
    _agree(make, IMAGES, training=False)


def test_random_crop_of_a_dimension_not_larger_takes_keras_centre_window() -> None:
    _agree(lambda L: L.RandomCrop(9, 6), IMAGES, training=True)
    _agree(lambda L: L.RandomCrop(5, 11), IMAGES, training=True)


@pytest.mark.parametrize("axis", [-1, None, (1, -1)])
def test_normalization_adapts_as_keras(axis) -> None:  # noqa: ANN001
    data = rng.normal(3.0, 2.0, (40, 9, 11, 2)).astype(np.float32)
    theirs, ours = keras.layers.Normalization(axis=axis), layers.Normalization(axis=axis)
    theirs.adapt(data)
    ours.adapt(data)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        assert mine.shape == reference.shape
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    model = models.Sequential([layers.Input(IMAGES.shape[1:]), ours])
    np.testing.assert_allclose(predict(model, IMAGES),
                               np.asarray(theirs(IMAGES).detach().cpu().numpy()),
                               rtol=1e-5, atol=1e-4)


def _augmented_convnet(L, M):  # noqa: ANN001, ANN202, N803
    """The book's chapter-8 model (smaller): augmentation, rescaling, a convnet."""
    augmentation = M.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1),
                                 L.RandomZoom(0.2)])
    inputs = L.Input(shape=(20, 20, 3))
    x = augmentation(inputs)
    x = L.Rescaling(1.0 / 255)(x)
    x = L.Conv2D(4, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.5)(x)
    return M.Model(inputs, L.Dense(1, activation="sigmoid")(x))


def test_the_books_augmented_convnet_predicts_as_keras() -> None:
    theirs, ours = _augmented_convnet(keras.layers, keras), _augmented_convnet(layers, models)
    ours.set_weights(theirs.get_weights())
    x = rng.uniform(0, 255, (4, 20, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
