"""Preprocessing and augmentation layers: the identity at inference for the random ones,
exact geometry in training (flips, integer crops shared by the batch, rotations that keep the
centre), reproducible with the seed and different per seed; Normalization's adapt (arrays and
batches, after compile too); configs, saving, every backend, gradients through a resampling,
and errors. Keras 3's values for the same transforms: tests/oracle/test_keras3_preprocessing.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)
from tests.frontends.keras.test_layers_core import predict

RNG = np.random.default_rng(21)
IMAGES = RNG.uniform(0, 255, (6, 8, 10, 3)).astype(np.float32)

RANDOM = [lambda: layers.RandomFlip(), lambda: layers.RandomRotation(0.2),
          lambda: layers.RandomZoom(0.3, 0.2), lambda: layers.RandomTranslation(0.2, 0.3),
          lambda: layers.RandomContrast(0.5), lambda: layers.RandomBrightness(0.3)]


def _model(*stack: layers.Layer, shape: tuple = IMAGES.shape[1:]) -> models.Model:
    return models.Sequential([layers.Input(shape), *stack])


@pytest.mark.parametrize("make", RANDOM)
def test_random_layers_are_the_identity_at_inference_and_draw_by_the_seed(make) -> None:  # noqa: ANN001
    model = _model(make())
    model.compile(loss="mse", backend="reference")
    np.testing.assert_array_equal(model.predict(IMAGES, verbose=0), IMAGES)
    first = predict(model, IMAGES, training=True, key=3)
    assert first.shape == IMAGES.shape and not np.allclose(first, IMAGES)
    np.testing.assert_array_equal(predict(model, IMAGES, training=True, key=3), first)
    assert not np.array_equal(predict(model, IMAGES, training=True, key=4), first)


def test_a_model_called_on_images_augments_them_as_the_books_chapter_8_shows() -> None:
    augmentation = models.Sequential([layers.RandomFlip("horizontal"),
                                      layers.RandomRotation(0.1), layers.RandomZoom(0.2)])
    first, second = augmentation(IMAGES), augmentation(IMAGES)
    assert first.shape == IMAGES.shape and not np.allclose(first, IMAGES)
    assert not np.allclose(first, second)  # each call draws anew
    np.testing.assert_array_equal(augmentation(IMAGES, training=False), IMAGES)
    np.testing.assert_array_equal(augmentation.predict(IMAGES, verbose=0), IMAGES)
    # Only the augmentation layers: a dropout runs as at inference, as in Keras.
    model = _model(layers.RandomFlip("vertical"), layers.Dropout(0.9))
    out = model(IMAGES)
    assert all(np.array_equal(o, i) or np.array_equal(o, i[::-1])
               for o, i in zip(out, IMAGES, strict=True))
    assert not np.array_equal(out, IMAGES)
    # A training= given to an inner call holds, also inside a model called on arrays.
    inputs = layers.Input(IMAGES.shape[1:])
    held = models.Model(inputs, augmentation(inputs, training=False))
    np.testing.assert_array_equal(held(IMAGES), IMAGES)


def test_random_flip_flips_whole_images_about_half_of_the_time() -> None:
    x = RNG.uniform(0, 1, (400, 3, 4, 1)).astype(np.float32)
    for mode, flip in (("horizontal", lambda a: a[:, ::-1]), ("vertical", lambda a: a[::-1]),
                       ("horizontal_and_vertical", lambda a: a[::-1, ::-1])):
        out = predict(_model(layers.RandomFlip(mode), shape=x.shape[1:]), x, training=True)
        flipped = np.array([np.array_equal(o, flip(i)) for o, i in zip(out, x, strict=True)])
        kept = np.array([np.array_equal(o, i) for o, i in zip(out, x, strict=True)])
        assert np.all(flipped | kept) and 0.4 < flipped.mean() < 0.6, mode


def test_random_crop_cuts_one_window_for_the_batch_at_integer_offsets() -> None:
    model = _model(layers.RandomCrop(5, 6))
    offsets = set()
    for key in range(12):
        out = predict(model, IMAGES, training=True, key=key)
        assert out.shape == (6, 5, 6, 3)
        found = [(t, s) for t in range(4) for s in range(5)
                 if np.array_equal(out, IMAGES[:, t:t + 5, s:s + 6])]
        assert len(found) == 1, key
        offsets.add(found[0])
    assert len(offsets) > 4
    # At inference: the centred window of the target's aspect ratio (8 x 9.6 -> 8 x 9),
    # resized to 5 x 6; both modes give the target shape.
    inference = predict(model, IMAGES)
    centre = predict(_model(layers.CenterCrop(8, 9), layers.Resizing(5, 6)), IMAGES)
    np.testing.assert_allclose(inference, centre, rtol=1e-6)


def test_rotations_by_a_half_turn_and_centred_crops_are_exact() -> None:
    half = predict(_model(layers.RandomRotation((0.5, 0.5))), IMAGES, training=True)
    np.testing.assert_allclose(half, IMAGES[:, ::-1, ::-1], atol=2e-3)
    crop = predict(_model(layers.CenterCrop(5, 7)), IMAGES)
    np.testing.assert_array_equal(crop, IMAGES[:, 1:6, 1:8])  # odd surplus: extra row below
    zoom = predict(_model(layers.RandomZoom((0.0, 0.0))), IMAGES, training=True)
    np.testing.assert_array_equal(zoom, IMAGES)


def test_rescaling_casts_integer_images_and_takes_per_channel_arrays() -> None:
    x = RNG.integers(0, 256, (2, 3, 3, 3)).astype(np.int32)
    inputs = layers.Input((3, 3, 3), dtype="int32")
    model = models.Model(inputs, layers.Rescaling([1 / 255, 2 / 255, 1.0], offset=-0.5)(inputs))
    out = predict(model, x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x * np.float32([1 / 255, 2 / 255, 1.0]) - 0.5, rtol=1e-6)


def test_normalization_adapts_from_arrays_and_batches_and_after_compile() -> None:
    data = RNG.normal(4.0, 3.0, (50, 8, 10, 3)).astype(np.float32)
    whole = layers.Normalization()
    whole.adapt(data)
    np.testing.assert_allclose(whole.mean.numpy(), data.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(whole.variance.numpy(), data.var(axis=(0, 1, 2)), rtol=1e-5)
    batched = layers.Normalization()
    batched.adapt((data[i:i + 7], None) for i in range(0, 50, 7))  # uneven batches, (x, y)
    np.testing.assert_allclose(batched.mean.numpy(), whole.mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(batched.variance.numpy(), whole.variance.numpy(), rtol=1e-5)
    norm = layers.Normalization(axis=(1, -1))
    model = _model(norm)
    model.compile(loss="mse", backend="numba")
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), IMAGES, rtol=1e-6)
    norm.adapt(data)  # after compile: the next predict uses the new statistics
    mean, std = data.mean(axis=(0, 2), keepdims=True), data.std(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), (IMAGES - mean[0]) / std[0],
                               rtol=1e-4, atol=1e-4)
    assert [w.name for w in norm.weights] == ["mean", "variance", "count"]
    assert not norm.trainable_weights


def test_the_augmented_convnet_trains_saves_and_loads(tmp_path) -> None:  # noqa: ANN001
    def build() -> models.Model:
        augmentation = models.Sequential([layers.RandomFlip("horizontal"),
                                          layers.RandomRotation(0.1), layers.RandomZoom(0.2),
                                          layers.RandomTranslation(0.1, 0.1),
                                          layers.RandomContrast(0.2),
                                          layers.RandomBrightness(0.1)])
        inputs = layers.Input(shape=(12, 12, 3))
        x = layers.Rescaling(1.0 / 255)(augmentation(inputs))
        x = layers.Resizing(10, 10)(layers.RandomCrop(11, 11)(x))
        x = layers.Conv2D(4, 3, activation="relu")(layers.CenterCrop(9, 9)(x))
        x = layers.Flatten()(layers.MaxPooling2D(2)(x))
        model = models.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    x = RNG.uniform(0, 255, (16, 12, 12, 3)).astype(np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(np.float32)
    model = build()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "augmented.kiln"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    inner = loaded.layers[1]
    assert [type(layer).__name__ for layer in inner.layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
        "RandomBrightness"]
    assert inner.layers[1].get_config()["factor"] == (-0.1, 0.1)


FORMATS = [lambda f: layers.RandomFlip(data_format=f),
           lambda f: layers.RandomRotation(0.2, fill_mode="wrap", data_format=f),
           lambda f: layers.RandomZoom(0.3, 0.2, fill_mode="constant", data_format=f),
           lambda f: layers.RandomTranslation(0.2, 0.3, interpolation="nearest", data_format=f),
           lambda f: layers.RandomContrast(0.5, data_format=f),
           lambda f: layers.RandomCrop(5, 7, data_format=f),
           lambda f: layers.CenterCrop(5, 12, data_format=f),
           lambda f: layers.Resizing(5, 12, interpolation="nearest", data_format=f),
           lambda f: layers.Resizing(7, 4, pad_to_aspect_ratio=True, data_format=f)]


@pytest.mark.parametrize("make", FORMATS)
def test_channels_first_computes_the_transpose_of_channels_last(make) -> None:  # noqa: ANN001
    nchw = IMAGES.transpose(0, 3, 1, 2)
    for training in (False, True):
        last = predict(_model(make("channels_last")), IMAGES, training=training, key=5)
        first = predict(_model(make("channels_first"), shape=nchw.shape[1:]), nchw,
                        training=training, key=5)
        np.testing.assert_allclose(first, last.transpose(0, 3, 1, 2), rtol=1e-6, atol=1e-4)


CONFIGS = [
    lambda: layers.Rescaling(0.5, offset=1.0),
    lambda: layers.Normalization(axis=None, mean=2.0, variance=3.0, invert=True),
    lambda: layers.CenterCrop(4, 5),
    lambda: layers.Resizing(4, 5, interpolation="nearest", pad_to_aspect_ratio=True,
                            fill_value=1.0),
    lambda: layers.RandomFlip("vertical", seed=3),
    lambda: layers.RandomRotation((-0.2, 0.1), fill_mode="constant", fill_value=2.0),
    lambda: layers.RandomZoom(0.2, (-0.1, 0.3), interpolation="nearest"),
    lambda: layers.RandomTranslation(0.1, 0.2, fill_mode="wrap"),
    lambda: layers.RandomContrast((0.2, 0.4), value_range=(0, 1), data_format="channels_first"),
    lambda: layers.RandomBrightness(0.2, value_range=(1, 0)),
    lambda: layers.RandomCrop(4, 4, seed=1),
]


@pytest.mark.parametrize("make", CONFIGS)
def test_configs_round_trip(make) -> None:  # noqa: ANN001
    layer = make()
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    if hasattr(layer, "data_format"):
        assert again.data_format == layer.data_format


def augmented(backend: str) -> models.Model:
    """Every augmentation layer after a convolution (a gradient through each resampling)."""
    inputs = layers.Input(shape=(8, 8, 2))
    x = layers.Conv2D(3, 3, padding="same")(inputs)
    x = layers.RandomRotation(0.2, fill_mode="constant")(layers.RandomFlip()(x))
    x = layers.RandomZoom(0.2, fill_mode="wrap", interpolation="nearest")(x)
    x = layers.RandomTranslation(0.2, 0.2, fill_mode="nearest")(x)
    x = layers.RandomContrast(0.3)(layers.RandomBrightness(0.2, value_range=(-5, 5))(x))
    x = layers.Resizing(6, 5)(layers.RandomCrop(7, 7)(x))
    x = layers.Flatten()(layers.CenterCrop(4, 4)(x))
    model = models.Model(inputs, layers.Dense(1)(x))
    model.compile(optimizer=optimizers.SGD(0.01), loss="mse", backend=backend)
    model._seed = np.array(11, np.int64)  # one seed state for every twin: the same draws
    return model


AUGMENTED_DATA = (RNG.standard_normal((4, 8, 8, 2)).astype(np.float32),
                  RNG.standard_normal((4, 1)).astype(np.float32))


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_augmentation_trains_on_every_backend_as_the_reference(backend: str) -> None:
    assert_trains_like_the_reference(augmented, backend, *AUGMENTED_DATA)


def test_the_gradient_through_a_fixed_resampling_matches_finite_differences() -> None:
    def build() -> models.Model:
        inputs = layers.Input(shape=(5, 6, 1))
        x = layers.Dense(2)(inputs)
        x = layers.RandomRotation((0.1, 0.1), fill_mode="reflect")(x, training=True)
        x = layers.Resizing(3, 4)(layers.RandomZoom((0.3, 0.3), fill_mode="constant")(
            x, training=True))
        model = models.Model(inputs, layers.Dense(1)(layers.Flatten()(x)))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    x = RNG.standard_normal((3, 5, 6, 1)).astype(np.float32)
    y = RNG.standard_normal((3, 1)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, build().get_weights(), x, y, index=0)


@pytest.mark.parametrize("make, message", [
    (lambda: layers.RandomRotation(1.5), "expected factor"),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "expected fill_mode"),
    (lambda: layers.RandomZoom(-1.0), "expected height_factor"),
    (lambda: layers.RandomTranslation(0.1, (0.1, 0.2, 0.3)), "expected width_factor"),
    (lambda: layers.RandomFlip("diagonal"), "expected mode"),
    (lambda: layers.RandomContrast(1.5), "expected factor"),
    (lambda: layers.RandomBrightness(0.1, value_range=(0,)), "expected value_range"),
    (lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
     "at most one"),
    (lambda: layers.Resizing(4, 4, antialias=True), "antialias"),
    (lambda: layers.Resizing(4, 4, interpolation="bicubic"), "expected interpolation"),
    (lambda: layers.CenterCrop(0, 4), "expected height"),
    (lambda: layers.Normalization(mean=1.0), "both mean and variance"),
    (lambda: layers.Normalization(mean=[1.0, 2.0], variance=[1.0]), "of one shape"),
])
def test_bad_arguments_name_the_layer(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(KilnValueError, match=message):
        make()


def test_bad_inputs_name_the_layer() -> None:
    with pytest.raises(KilnValueError, match="expected images of rank 4"):
        _model(layers.RandomFlip(name="flip"), shape=(8, 10))
    with pytest.raises(KilnValueError, match="static height and width"):
        _model(layers.RandomZoom(0.1), shape=(None, 10, 3))
    norm = layers.Normalization(name="norm")
    norm.adapt(IMAGES)
    with pytest.raises(KilnValueError, match="'norm'.*kept axes"):
        _model(norm, shape=(8, 10, 4))
    with pytest.raises(KilnValueError, match="'norm'.*kept axes"):
        norm.adapt(np.zeros((2, 8, 10, 4), np.float32))
    with pytest.raises(KilnValueError, match="no data"):
        layers.Normalization().adapt(iter([]))
    with pytest.raises(KilnValueError, match="nothing to learn"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(IMAGES)
