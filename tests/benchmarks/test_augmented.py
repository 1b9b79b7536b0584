"""The augmented benchmark model's fixed resamplings: kiln's RandomRotation and RandomZoom,
the torch peer's grid_sample grids and the JAX peer's map_coordinates read the same pixels as
the NumPy yardstick (Keras's bilinear with "reflect"). The first-step loss of the benchmark
run cannot tell reflection from clamping at the border on noise images (3e-5 relative), so the
images are compared here. torch and JAX are skipped where not installed (CI has neither)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.models import A_ROTATION, A_ZOOM, augment_numpy, data

# float32 coordinates: a pixel read 1e-5 off moves a value in [0, 255) by up to 3e-3
TOLERANCE = 5e-3


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    x = data("augmented", 2)[0]
    return x, augment_numpy(x)


def test_kiln_layers(images: tuple[np.ndarray, np.ndarray]) -> None:
    from kiln import layers, models

    x, expected = images
    inputs = layers.Input(shape=x.shape[1:])
    h = layers.RandomRotation((A_ROTATION, A_ROTATION))(inputs)
    out = models.Model(inputs, layers.RandomZoom((A_ZOOM, A_ZOOM))(h))(x)  # augments
    assert np.abs(np.asarray(out) - expected).max() <= TOLERANCE


def test_torch_grids(images: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("torch")
    from benchmarks.torch_peer import AugmentedNet, augment, inputs

    x, expected = images
    net = AugmentedNet()
    out = augment(inputs("augmented", x), [net.grid0, net.grid1]).numpy()
    assert np.abs(out.transpose(0, 2, 3, 1) - expected).max() <= TOLERANCE


def test_jax_coordinates(images: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("jax")
    from benchmarks.jax_peer import _augment

    x, expected = images
    assert np.abs(np.asarray(_augment(x)) - expected).max() <= TOLERANCE
