"""scikit-learn's bundled 8x8 handwritten digits, split like Keras's loaders: real image data
that loads with no network (scikit-learn is the optional `examples` extra)."""

from __future__ import annotations

import numpy as np

from kiln.frontends.keras.datasets import sequences
from kiln.ir.errors import KilnError


class OptionalDependencyError(KilnError, ImportError):
    """A loader needs a package that kiln does not require (install the named extra)."""


def load_data(
    test_split: float = 0.2, seed: int = 113
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the 1,797 8x8 digits of `sklearn.datasets.load_digits`, shuffled and split.

    Args:
        test_split: the fraction of the (shuffled) samples held out as the test set.
        seed: the seed of the shuffle before the split (drawn as Keras's loaders draw it).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x float32 of shape (num_samples, 64), the
        flattened 8x8 images with pixel values in [0, 16] as scikit-learn gives them (divide
        by 16 to scale to [0, 1]); y int64 labels 0-9. With the defaults: 1,437 training and
        360 test samples.
    """
    sequences.check_test_split(test_split)
    sequences.check_int("seed", seed, 0)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise OptionalDependencyError(
            "digits.load_data needs scikit-learn, which bundles the digits. Install it with "
            "`pip install scikit-learn` (or `pip install kiln[examples]`)."
        ) from exc
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x, y = sequences.shuffled(np.random.RandomState(seed), x, y)
    idx = int(len(x) * (1 - test_split))
    return (x[:idx], y[:idx]), (x[idx:], y[idx:])
