"""The Boston housing prices, read from Keras's boston_housing.npz (as
keras.datasets.boston_housing).

506 suburbs, 13 features each, the median home value in k$ as target. Without a network, place
boston_housing.npz in ~/.keras/datasets (or pass path=), or use
`kiln.datasets.synthetic.boston_like`.
"""

from __future__ import annotations

import os

import numpy as np

from kiln.frontends.keras.datasets import sequences
from kiln.frontends.keras.datasets.cache import ORIGIN, get_file
from kiln.frontends.keras.datasets.npz import load_npz, require_keys

_NPZ_SHA256 = "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"


def load_data(
    path: str | os.PathLike = "boston_housing.npz", test_split: float = 0.2, seed: int = 113
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the Boston housing dataset, as `keras.datasets.boston_housing.load_data`.

    Args:
        path: the file: an absolute path, or a path relative to ~/.keras/datasets
            ($KERAS_HOME/datasets). Downloaded from Keras's URL only when missing.
        test_split: the fraction of the (shuffled) samples held out as the test set.
        seed: the seed of the shuffle before the split.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x of shape (num_samples, 13), y the prices,
        in the file's dtype (float64).
    """
    sequences.check_test_split(test_split)
    sequences.check_int("seed", seed, 0)
    path = get_file(path, ORIGIN + "boston_housing.npz", _NPZ_SHA256)
    arrays = load_npz(path)
    require_keys(arrays, ("x", "y"), path)
    x, y = sequences.shuffled(np.random.RandomState(seed), arrays["x"], arrays["y"])
    idx = int(len(x) * (1 - test_split))
    return (x[:idx].copy(), y[:idx].copy()), (x[idx:].copy(), y[idx:].copy())
