"""Generated stand-ins for the book's data sets, for tests and demos with no network.

Each generator returns what the matching `load_data` returns, `(x_train, y_train), (x_test,
y_test)`, with the same layout and dtypes, and a real signal to learn:

- imdb_like: reviews as word-index lists (start_char, Zipf-distributed words shifted by
  index_from, oov_char for words past num_words); a set of "positive" and of "negative" words
  each appear more often in their class.
- reuters_like: newswires the same way, each of `num_classes` topics with its own words and
  mildly unequal topic frequencies.
- boston_like: 13 features on the scales of Boston housing's columns and a price in k$ that
  depends on them (mostly linearly) plus noise.
"""

from __future__ import annotations

import numpy as np

from kiln.frontends.keras.datasets import sequences
from kiln.frontends.keras.datasets.encoding import to_categorical, vectorize_sequences
from kiln.ir.errors import KilnValueError

__all__ = ["boston_like", "imdb_like", "reuters_like", "to_categorical", "vectorize_sequences"]

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

# The share of a text's words drawn from its own class's words, and from the other classes'.
_OWN_RATE = 0.05
_OTHER_RATE = 0.02
_FIRST_SIGNAL_RANK = 20  # below this, words are too common to carry a class (the, a, and, ...)


def _check_common(
    num_samples: int, num_words: int, maxlen: int, seed: int, test_split: float, index_from: int
) -> None:
    sequences.check_int("num_samples", num_samples, 2)
    sequences.check_int("num_words", num_words, 100)
    sequences.check_int("maxlen", maxlen, 4)
    sequences.check_int("seed", seed, 0)
    sequences.check_int("index_from", index_from, 0)
    sequences.check_test_split(test_split)


def _split(x: np.ndarray, y: np.ndarray, test_split: float) -> Split:
    idx = int(len(x) * (1 - test_split))
    return (x[:idx], y[:idx]), (x[idx:], y[idx:])


def _signal_words(
    rng: np.random.Generator, count: int, num_words: int, index_from: int
) -> np.ndarray:
    """`count` distinct word ranks that stay inside the vocabulary after the shift."""
    top = min(num_words - index_from, 4000)
    if top - _FIRST_SIGNAL_RANK < count:
        raise KilnValueError(
            f"Expected num_words large enough for {count} class words above rank "
            f"{_FIRST_SIGNAL_RANK}. Received: num_words={num_words}"
        )
    return rng.choice(np.arange(_FIRST_SIGNAL_RANK, top), size=count, replace=False)


def _texts(
    rng: np.random.Generator,
    labels: np.ndarray,
    class_words: list[np.ndarray],
    num_words: int,
    maxlen: int,
    median_len: float,
    start_char: int,
    oov_char: int,
    index_from: int,
) -> np.ndarray:
    """Word-index lists: Zipf background words (ranks up to 2 * num_words, so some fall past
    the vocabulary and become oov_char), mixed with the label's own words and others'."""
    vocab = 2 * num_words
    zipf = 1.0 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    body_max = maxlen - 1  # leave room for start_char
    lengths = np.clip(rng.lognormal(np.log(median_len), 0.5, len(labels)), 5, body_max)
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    # Draw every text's words at once, then cut them apart: one pass over the Zipf table.
    ranks = rng.choice(vocab, size=total, p=zipf) + 1
    owner = np.repeat(labels, lengths)
    kind = rng.random(total)
    own = kind < _OWN_RATE
    other = (kind >= _OWN_RATE) & (kind < _OWN_RATE + _OTHER_RATE)
    table = np.stack(class_words)  # (classes, words per class)
    ranks[own] = table[owner[own], rng.integers(0, table.shape[1], int(own.sum()))]
    everything = table.reshape(-1)
    ranks[other] = everything[rng.integers(0, everything.size, int(other.sum()))]
    ids = ranks + index_from
    ids[ids >= num_words] = oov_char
    out = [[start_char, *piece.tolist()] for piece in np.split(ids, np.cumsum(lengths)[:-1])]
    return sequences.object_array(out)


def imdb_like(
    num_samples: int = 2000,
    num_words: int = 10000,
    maxlen: int = 200,
    seed: int = 113,
    test_split: float = 0.2,
    start_char: int = 1,
    oov_char: int = 2,
    index_from: int = 3,
) -> Split:
    """Generated reviews shaped like `imdb.load_data(num_words=num_words)`.

    Args:
        num_samples: reviews in all, split into train and test; labels are balanced.
        num_words: the vocabulary size: every index is below it.
        maxlen: the longest a review can be, start_char included (the median is about half).
        seed: the generator's seed; the same seed gives the same data.
        test_split: the fraction held out as the test set.
        start_char, oov_char, index_from: as in imdb.load_data.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x a 1-D object array of lists of ints, y int64
        labels 0 (negative) or 1 (positive).
    """
    _check_common(num_samples, num_words, maxlen, seed, test_split, index_from)
    rng = np.random.default_rng(seed)
    per_class = max(10, num_words // 200)
    words = _signal_words(rng, 2 * per_class, num_words, index_from)
    class_words = [words[:per_class], words[per_class:]]
    labels = rng.permutation(np.arange(num_samples) % 2).astype(np.int64)
    x = _texts(rng, labels, class_words, num_words, maxlen, maxlen / 2, start_char, oov_char,
               index_from)  # fmt: skip
    return _split(x, labels, test_split)


def reuters_like(
    num_samples: int = 2000,
    num_words: int = 10000,
    num_classes: int = 46,
    maxlen: int = 200,
    seed: int = 113,
    test_split: float = 0.2,
    start_char: int = 1,
    oov_char: int = 2,
    index_from: int = 3,
) -> Split:
    """Generated newswires shaped like `reuters.load_data(num_words=num_words)`.

    Args:
        num_samples: newswires in all, split into train and test.
        num_words: the vocabulary size: every index is below it.
        num_classes: the number of topics (46 in Reuters); topic k is about (k + 1) ** -0.5
            times as frequent as the most frequent, a mild version of Reuters' imbalance.
        maxlen: the longest a newswire can be, start_char included (the median is about half).
        seed: the generator's seed; the same seed gives the same data.
        test_split: the fraction held out as the test set.
        start_char, oov_char, index_from: as in reuters.load_data.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x a 1-D object array of lists of ints, y int64
        topic labels in [0, num_classes).
    """
    _check_common(num_samples, num_words, maxlen, seed, test_split, index_from)
    sequences.check_int("num_classes", num_classes, 2)
    rng = np.random.default_rng(seed)
    per_class = 8
    words = _signal_words(rng, num_classes * per_class, num_words, index_from)
    class_words = [words[k * per_class : (k + 1) * per_class] for k in range(num_classes)]
    prior = 1.0 / np.sqrt(np.arange(1, num_classes + 1))
    labels = rng.choice(num_classes, size=num_samples, p=prior / prior.sum()).astype(np.int64)
    x = _texts(rng, labels, class_words, num_words, maxlen, maxlen / 2, start_char, oov_char,
               index_from)  # fmt: skip
    return _split(x, labels, test_split)


def boston_like(
    num_samples: int = 506, seed: int = 113, test_split: float = 0.2, noise: float = 2.5
) -> Split:
    """Generated housing data shaped like `boston_housing.load_data()`.

    The 13 columns follow Boston's (CRIM, ZN, INDUS, CHAS, NOX, RM, AGE, DIS, RAD, TAX,
    PTRATIO, B, LSTAT) in rough range and correlation: a hidden "urban" factor raises crime,
    industry, pollution, age, tax and lower-status share, and lowers distance and room count.
    The price (k$, clipped to [5, 50] as Boston's is) rises with rooms and falls with
    lower-status share, pupil-teacher ratio, crime and pollution.

    Args:
        num_samples: samples in all (Boston has 506), split into train and test.
        seed: the generator's seed.
        test_split: the fraction held out as the test set.
        noise: the standard deviation of the price noise, in k$.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: x float64 of shape (num_samples, 13), y float64.
    """
    sequences.check_int("num_samples", num_samples, 2)
    sequences.check_int("seed", seed, 0)
    sequences.check_test_split(test_split)
    if not isinstance(noise, (int, float)) or noise < 0:
        raise KilnValueError(f"Expected noise to be a float >= 0. Received: noise={noise!r}")
    rng = np.random.default_rng(seed)
    n = num_samples
    urban = rng.normal(size=n)

    def around(center: float, spread: float, weight: float, lo: float, hi: float) -> np.ndarray:
        value = center + spread * (weight * urban + np.sqrt(1 - weight**2) * rng.normal(size=n))
        return np.clip(value, lo, hi)

    crim = np.clip(np.exp(rng.normal(-1.0 + 1.2 * urban, 1.0)), 0.006, 89.0)
    zn = np.where(rng.random(n) < 0.25 * (urban < 0), rng.uniform(12.5, 100, n), 0.0)
    indus = around(11.1, 6.8, 0.7, 0.46, 27.7)
    chas = (rng.random(n) < 0.07).astype(np.float64)
    nox = around(0.55, 0.115, 0.75, 0.385, 0.871)
    rm = around(6.28, 0.70, -0.35, 3.56, 8.78)
    age = around(68.6, 28.1, 0.65, 2.9, 100.0)
    dis = around(3.8, 2.1, -0.75, 1.13, 12.1)
    rad = np.where(urban > 1.0, 24.0, np.clip(np.round(around(5.0, 2.0, 0.5, 1, 8)), 1, 8))
    tax = around(408.0, 168.0, 0.7, 187.0, 711.0)
    ptratio = around(18.5, 2.16, 0.4, 12.6, 22.0)
    b = np.clip(396.9 - np.abs(rng.normal(0, 60 + 20 * np.maximum(urban, 0), n)), 0.32, 396.9)
    lstat = around(12.65, 7.1, 0.6, 1.73, 37.97)
    x = np.stack([crim, zn, indus, chas, nox, rm, age, dis, rad, tax, ptratio, b, lstat], axis=1)

    price = (
        22.5
        + 5.0 * (rm - 6.28)
        - 0.55 * (lstat - 12.65)
        - 0.9 * (ptratio - 18.5)
        - 0.08 * (crim - 3.6)
        - 12.0 * (nox - 0.55)
        + 2.5 * chas
        + 0.015 * (lstat - 12.65) ** 2  # the curve of price against LSTAT seen in Boston
        + noise * rng.normal(size=n)
    )
    y = np.clip(price, 5.0, 50.0)
    return _split(x, y, test_split)
