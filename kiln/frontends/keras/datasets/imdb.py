"""The IMDB movie-review sentiment set, read from Keras's imdb.npz (as keras.datasets.imdb).

25,000 training and 25,000 test reviews, each a list of word indices, labelled 0 (negative) or
1 (positive). Without a network, place imdb.npz in ~/.keras/datasets (or pass path=), or use
`kiln.datasets.synthetic.imdb_like` for generated data of the same shape.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kiln.frontends.keras.datasets import sequences
from kiln.frontends.keras.datasets.cache import ORIGIN, get_file
from kiln.frontends.keras.datasets.npz import load_npz, require_keys
from kiln.ir.errors import KilnValueError

_NPZ_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
_WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"


def load_data(
    path: str | os.PathLike = "imdb.npz",
    num_words: int | None = None,
    skip_top: int = 0,
    maxlen: int | None = None,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the IMDB dataset, as `keras.datasets.imdb.load_data`.

    Args:
        path: the file: an absolute path, or a path relative to ~/.keras/datasets
            ($KERAS_HOME/datasets). Downloaded from Keras's URL only when missing.
        num_words: keep the `num_words` most frequent words (indices below num_words after
            the index_from shift); others become `oov_char`. None keeps all.
        skip_top: words with an index below this become `oov_char` too.
        maxlen: drop sequences of this length or longer (start_char included). None keeps all.
        seed: the seed of the shuffles of the training and then the test set.
        start_char: the index that opens every sequence; None for none.
        oov_char: the index that replaces dropped words; None removes them instead.
        index_from: added to every stored word rank, reserving the indices below it.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x a 1-D object array of lists of ints, y the
        int labels (0 or 1).
    """
    sequences.check_options(num_words, skip_top, maxlen, start_char, oov_char, index_from)
    sequences.check_int("seed", seed, 0)
    path = get_file(path, ORIGIN + "imdb.npz", _NPZ_SHA256)
    arrays = load_npz(path)
    require_keys(arrays, ("x_train", "y_train", "x_test", "y_test"), path)

    rng = np.random.RandomState(seed)
    x_train, labels_train = sequences.shuffled(rng, arrays["x_train"], arrays["y_train"])
    x_test, labels_test = sequences.shuffled(rng, arrays["x_test"], arrays["y_test"])

    x_train = sequences.offset(x_train, start_char, index_from)
    x_test = sequences.offset(x_test, start_char, index_from)
    if maxlen:
        x_train, labels_train = sequences.remove_long(maxlen, x_train, labels_train)
        x_test, labels_test = sequences.remove_long(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise KilnValueError(
                f"After filtering for sequences shorter than maxlen={maxlen}, no sequence was "
                f"kept. Increase maxlen. Received: maxlen={maxlen}"
            )
    labels = np.concatenate([np.asarray(labels_train), np.asarray(labels_test)])
    xs = sequences.limit_vocabulary(x_train + x_test, num_words, skip_top, oov_char)

    idx = len(x_train)
    x_train, y_train = sequences.object_array(xs[:idx]), labels[:idx]
    x_test, y_test = sequences.object_array(xs[idx:]), labels[idx:]
    return (x_train, y_train), (x_test, y_test)


def get_word_index(path: str | os.PathLike = "imdb_word_index.json") -> dict[str, int]:
    """The word -> rank map of the IMDB set (rank 1 = most frequent), from Keras's
    imdb_word_index.json. A loaded index is this rank plus `index_from` (3 by default)."""
    path = get_file(path, ORIGIN + "imdb_word_index.json", _WORD_INDEX_MD5)
    with open(path, encoding="utf-8") as f:
        return json.load(f)
