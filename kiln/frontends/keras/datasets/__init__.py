"""Data sets as keras.datasets: each module's `load_data()` returns
`(x_train, y_train), (x_test, y_test)`.

mnist, imdb, reuters and boston_housing read Keras's own files (from path= or Keras's cache
folder, downloading only when missing and allowed); digits is scikit-learn's bundled set;
synthetic generates look-alikes of the book's sets with no network at all.
"""

from kiln.frontends.keras.datasets import (
    boston_housing,
    digits,
    imdb,
    mnist,
    reuters,
    synthetic,
)
from kiln.frontends.keras.datasets.cache import DatasetNotFoundError
from kiln.frontends.keras.datasets.digits import OptionalDependencyError
from kiln.frontends.keras.datasets.encoding import to_categorical, vectorize_sequences
from kiln.frontends.keras.datasets.npz import UnsafePickleError

__all__ = [
    "DatasetNotFoundError",
    "OptionalDependencyError",
    "UnsafePickleError",
    "boston_housing",
    "digits",
    "imdb",
    "mnist",
    "reuters",
    "synthetic",
    "to_categorical",
    "vectorize_sequences",
]
