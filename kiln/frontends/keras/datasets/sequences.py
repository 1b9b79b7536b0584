"""The word-index preprocessing imdb and reuters share, with Keras's semantics.

A stored sequence holds word ranks (1 = most frequent). Loading shifts them by `index_from`,
prepends `start_char`, drops sequences of `maxlen` or more, and replaces words outside
[skip_top, num_words) by `oov_char` (or drops them when oov_char is None).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from kiln.ir.errors import KilnValueError


def check_int(name: str, value: object, minimum: int, allow_none: bool = False) -> None:
    """Raise unless `value` is an int >= minimum (or None when allowed)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < minimum:
        what = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise KilnValueError(f"Expected {name} to be {what}. Received: {name}={value!r}")


def check_test_split(test_split: object) -> None:
    ok = isinstance(test_split, numbers.Real) and not isinstance(test_split, bool)
    if not ok or not 0 <= test_split < 1:
        raise KilnValueError(
            f"Expected test_split to be a float in [0, 1). Received: test_split={test_split!r}"
        )


def check_options(
    num_words: object,
    skip_top: object,
    maxlen: object,
    start_char: object,
    oov_char: object,
    index_from: object,
) -> None:
    """Check the word-index options imdb and reuters share, as they are given."""
    check_int("num_words", num_words, 0, allow_none=True)
    check_int("skip_top", skip_top, 0)
    check_int("maxlen", maxlen, 0, allow_none=True)
    check_int("start_char", start_char, 0, allow_none=True)
    check_int("oov_char", oov_char, 0, allow_none=True)
    check_int("index_from", index_from, 0)


def shuffled(rng: np.random.RandomState, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays reordered by one permutation drawn as Keras draws it (rng.shuffle)."""
    indices = np.arange(len(arrays[0]))
    rng.shuffle(indices)
    return [a[indices] for a in arrays]


def offset(xs: Sequence, start_char: int | None, index_from: int) -> list[list[int]]:
    """Shift every word by index_from and prepend start_char (when not None)."""
    head = [] if start_char is None else [start_char]
    return [head + [int(w) + index_from for w in x] for x in xs]


def remove_long(maxlen: int, xs: list[list[int]], labels: Sequence) -> tuple[list, list]:
    """Keep the sequences shorter than maxlen (strictly, as Keras does) and their labels."""
    kept = [(x, y) for x, y in zip(xs, labels) if len(x) < maxlen]
    return [x for x, _ in kept], [y for _, y in kept]


def limit_vocabulary(
    xs: list[list[int]], num_words: int | None, skip_top: int, oov_char: int | None
) -> list[list[int]]:
    """Replace (or drop, when oov_char is None) words outside [skip_top, num_words).

    As in Keras, num_words=None means the largest index present, which itself falls outside
    the half-open range and so becomes oov_char.
    """
    if not num_words:
        num_words = max((max(x) for x in xs if x), default=0)
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return [[w for w in x if skip_top <= w < num_words] for x in xs]


def object_array(xs: list[list[int]]) -> np.ndarray:
    """A 1-D object array of lists (Keras's np.array(xs, dtype=object) turns equal-length
    lists into a 2-D array; this stays 1-D whatever the lengths)."""
    out = np.empty(len(xs), dtype=object)
    for i, x in enumerate(xs):
        out[i] = x
    return out
