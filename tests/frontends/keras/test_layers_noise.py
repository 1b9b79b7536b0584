"""GaussianNoise, GaussianDropout, AlphaDropout, SpatialDropout1D/2D: the identity at
inference, Keras 3's distributions in training (moments of many draws, whole channels for
the spatial dropouts), reproducible with the seed, different per step; configs and errors."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models
from kiln.ir import KilnValueError
from tests.frontends.keras.test_layers_core import predict

RNG = np.random.default_rng(14)


def _draw(layer: layers.Layer, x: np.ndarray, seed: int = 1) -> np.ndarray:
    """The layer's output in training mode with this seed, through the reference runtime."""
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    return predict(model, x, training=True, key=seed)


LAYERS = [lambda: layers.GaussianNoise(0.5), lambda: layers.GaussianDropout(0.3),
          lambda: layers.AlphaDropout(0.2), lambda: layers.SpatialDropout1D(0.5),
          lambda: layers.SpatialDropout2D(0.5)]


@pytest.mark.parametrize("make", LAYERS)
def test_identity_at_inference_and_reproducible_in_training(make) -> None:  # noqa: ANN001
    layer = make()
    shape = (3, 4, 5, 2) if isinstance(layer, layers.SpatialDropout2D) else (3, 4, 5)
    x = RNG.standard_normal(shape).astype(np.float32)
    model = models.Sequential([layers.Input(shape[1:]), layer])
    model.compile(loss="mse", backend="reference")
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    first = _draw(make(), x, seed=3)
    assert not np.array_equal(first, x)
    np.testing.assert_array_equal(_draw(make(), x, seed=3), first)
    assert not np.array_equal(_draw(make(), x, seed=4), first)


def test_gaussian_noise_and_dropout_moments() -> None:
    x = np.full((200, 500), 2.0, np.float32)
    noisy = _draw(layers.GaussianNoise(0.5), x) - x
    assert abs(noisy.mean()) < 0.01 and noisy.std() == pytest.approx(0.5, rel=0.02)
    scaled = _draw(layers.GaussianDropout(0.3), x) / x
    assert scaled.mean() == pytest.approx(1.0, abs=0.01)
    assert scaled.std() == pytest.approx(np.sqrt(0.3 / 0.7), rel=0.02)


def test_alpha_dropout_keeps_mean_and_variance_of_selu_activations() -> None:
    x = RNG.standard_normal((400, 500)).astype(np.float32)
    out = _draw(layers.AlphaDropout(0.2), x)
    assert out.mean() == pytest.approx(0.0, abs=0.02)
    assert out.var() == pytest.approx(1.0, abs=0.03)
    saturation = -1.6732632423543772 * 1.0507009873554805
    a = (0.8 * (1 + 0.2 * saturation ** 2)) ** -0.5
    dropped = np.isclose(out, a * saturation - a * saturation * 0.2, atol=1e-6)
    assert dropped.mean() == pytest.approx(0.2, abs=0.01)
    np.testing.assert_allclose(out[~dropped], a * x[~dropped] - a * saturation * 0.2,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer, shape, axes", [
    (layers.SpatialDropout1D(0.5), (8, 6, 5), (1,)),
    (layers.SpatialDropout2D(0.5), (8, 3, 4, 5), (1, 2)),
    (layers.SpatialDropout2D(0.5, data_format="channels_first"), (8, 5, 3, 4), (2, 3))])
def test_spatial_dropout_drops_whole_channels(layer: layers.Layer, shape: tuple,
                                              axes: tuple) -> None:
    x = np.ones(shape, np.float32)
    out = _draw(layer, x)
    assert set(np.unique(out)) == {0.0, 2.0}
    np.testing.assert_array_equal(out.min(axis=axes), out.max(axis=axes))


def test_configs_and_errors() -> None:
    for layer in (layers.GaussianNoise(0.1, seed=2), layers.GaussianDropout(0.4),
                  layers.AlphaDropout(0.1, noise_shape=(None, 1)), layers.SpatialDropout1D(0.3),
                  layers.SpatialDropout2D(0.3, data_format="channels_first")):
        config = layer.get_config()
        assert type(layer)(**config).get_config() == config
    assert "noise_shape" not in layers.SpatialDropout2D(0.3).get_config()
    with pytest.raises(KilnValueError, match="'noise'.*`stddev`.*between 0 and 1"):
        layers.GaussianNoise(2.0, name="noise")
    with pytest.raises(KilnValueError, match="`rate`.*1 excluded"):
        layers.GaussianDropout(1.0)
    with pytest.raises(KilnValueError, match="expected ndim=4, found ndim=3"):
        models.Sequential([layers.Input((4, 5)), layers.SpatialDropout2D(0.5)])
