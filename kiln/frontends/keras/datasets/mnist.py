"""The MNIST handwritten digits, read from Keras's mnist.npz (as keras.datasets.mnist).

60,000 training and 10,000 test images, 28x28 uint8 in [0, 255], labels 0-9. Without a network,
place mnist.npz in ~/.keras/datasets (or pass path=), or use `kiln.datasets.digits` (scikit-learn's
bundled 8x8 digits).
"""

from __future__ import annotations

import os

import numpy as np

from kiln.frontends.keras.datasets.cache import ORIGIN, get_file
from kiln.frontends.keras.datasets.npz import load_npz, require_keys

_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def load_data(
    path: str | os.PathLike = "mnist.npz",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the MNIST dataset, as `keras.datasets.mnist.load_data`.

    Args:
        path: the file: an absolute path, or a path relative to ~/.keras/datasets
            ($KERAS_HOME/datasets). Downloaded from Keras's URL only when missing.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x uint8 arrays of shape (num_samples, 28, 28),
        y uint8 labels 0-9, as stored in the file.
    """
    path = get_file(path, ORIGIN + "mnist.npz", _NPZ_SHA256)
    arrays = load_npz(path)
    require_keys(arrays, ("x_train", "y_train", "x_test", "y_test"), path)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
