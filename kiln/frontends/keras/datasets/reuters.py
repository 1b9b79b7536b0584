"""The Reuters newswire topic set, read from Keras's reuters.npz (as keras.datasets.reuters).

11,228 newswires as lists of word indices, labelled with one of 46 topics. Without a network,
place reuters.npz in ~/.keras/datasets (or pass path=), or use
`kiln.datasets.synthetic.reuters_like` for generated data of the same shape.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kiln.frontends.keras.datasets import sequences
from kiln.frontends.keras.datasets.cache import ORIGIN, get_file
from kiln.frontends.keras.datasets.npz import load_npz, require_keys

_NPZ_SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
_WORD_INDEX_MD5 = "4d44cc38712099c9e383dc6e5f11a921"

_LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply",
    "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas",
    "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin",
    "strategic-metal", "livestock", "retail", "ipi", "iron-steel", "rubber", "heat", "jobs",
    "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead",
)  # fmt: skip


def load_data(
    path: str | os.PathLike = "reuters.npz",
    num_words: int | None = None,
    skip_top: int = 0,
    maxlen: int | None = None,
    test_split: float = 0.2,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the Reuters newswire dataset, as `keras.datasets.reuters.load_data`.

    Args:
        path: the file: an absolute path, or a path relative to ~/.keras/datasets
            ($KERAS_HOME/datasets). Downloaded from Keras's URL only when missing.
        num_words: keep the `num_words` most frequent words (indices below num_words after
            the index_from shift); others become `oov_char`. None keeps all.
        skip_top: words with an index below this become `oov_char` too.
        maxlen: drop sequences of this length or longer (start_char included). None keeps all.
        test_split: the fraction of the (shuffled) newswires held out as the test set.
        seed: the seed of the shuffle before the split.
        start_char: the index that opens every sequence; None for none.
        oov_char: the index that replaces dropped words; None removes them instead.
        index_from: added to every stored word rank, reserving the indices below it.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x a 1-D object array of lists of ints, y the
        int topic labels (0 to 45).
    """
    sequences.check_options(num_words, skip_top, maxlen, start_char, oov_char, index_from)
    sequences.check_test_split(test_split)
    sequences.check_int("seed", seed, 0)
    path = get_file(path, ORIGIN + "reuters.npz", _NPZ_SHA256)
    arrays = load_npz(path)
    require_keys(arrays, ("x", "y"), path)

    rng = np.random.RandomState(seed)
    xs, labels = sequences.shuffled(rng, arrays["x"], arrays["y"])
    xs = sequences.offset(xs, start_char, index_from)
    if maxlen:
        xs, labels = sequences.remove_long(maxlen, xs, labels)
    xs = sequences.limit_vocabulary(xs, num_words, skip_top, oov_char)

    idx = int(len(xs) * (1 - test_split))
    x_train, y_train = sequences.object_array(xs[:idx]), np.array(labels[:idx])
    x_test, y_test = sequences.object_array(xs[idx:]), np.array(labels[idx:])
    return (x_train, y_train), (x_test, y_test)


def get_word_index(path: str | os.PathLike = "reuters_word_index.json") -> dict[str, int]:
    """The word -> rank map of the Reuters set (rank 1 = most frequent), from Keras's
    reuters_word_index.json. A loaded index is this rank plus `index_from` (3 by default)."""
    path = get_file(path, ORIGIN + "reuters_word_index.json", _WORD_INDEX_MD5)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def get_label_names() -> tuple[str, ...]:
    """The 46 topic names, indexed by label."""
    return _LABEL_NAMES
