"""Turning word-index sequences and class labels into the dense arrays a Dense model takes:
multi-hot vectors (the book's `vectorize_sequences`) and one-hot rows (`to_categorical`)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from kiln.ir.errors import KilnValueError


def vectorize_sequences(
    sequences: Sequence[Iterable[int]], dimension: int = 10000, dtype: str = "float32"
) -> np.ndarray:
    """Multi-hot encode word-index sequences, as in Deep Learning with Python (section 3.4).

    Row i has a 1 at every index that occurs in sequences[i] and 0 elsewhere.

    Args:
        sequences: sequences of int indices in [0, dimension), e.g. the x of imdb.load_data.
        dimension: the vocabulary size (the num_words the sequences were loaded with).
        dtype: the output dtype; float32 by default (the book's NumPy code gives float64).

    Returns:
        An array of shape (len(sequences), dimension).
    """
    if not isinstance(dimension, numbers.Integral) or isinstance(dimension, bool) or dimension < 1:
        raise KilnValueError(
            f"Expected dimension to be a positive int. Received: dimension={dimension!r}"
        )
    rows = [np.asarray(list(seq), dtype=np.int64).reshape(-1) for seq in sequences]
    results = np.zeros((len(rows), dimension), dtype=dtype)
    if not rows:
        return results
    cols = np.concatenate(rows)
    if cols.size and (cols.min() < 0 or cols.max() >= dimension):
        bad = int(cols.min() if cols.min() < 0 else cols.max())
        raise KilnValueError(
            f"Expected every index in [0, {dimension}) (dimension={dimension}). "
            f"Received: index={bad}"
        )
    row_ids = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    results[row_ids, cols] = 1
    return results


def to_categorical(x: Sequence[int] | np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Converts a class vector (integers) to a one-hot class matrix, as
    `keras.utils.to_categorical`.

    Args:
        x: array-like of class values in [0, num_classes). A trailing axis of size 1 is
            dropped, so labels of shape (n, 1) give (n, num_classes).
        num_classes: the number of classes; None infers max(x) + 1.

    Returns:
        A float64 NumPy array (as Keras returns) of shape x.shape + (num_classes,), the class
        axis last.
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))
    ):
        raise KilnValueError(
            f"Expected integer class labels. Received: x with dtype={labels.dtype}"
        )
    labels = labels.astype(np.int64)
    input_shape = labels.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = input_shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is not None and (
        not isinstance(num_classes, numbers.Integral)
        or isinstance(num_classes, bool)
        or num_classes < 1
    ):
        raise KilnValueError(
            f"Expected num_classes to be a positive int or None. "
            f"Received: num_classes={num_classes!r}"
        )
    if not num_classes:
        if labels.size == 0:
            raise KilnValueError("Expected num_classes when x is empty. Received: num_classes=None")
        num_classes = int(labels.max()) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise KilnValueError(
            f"Expected class labels in [0, {num_classes}) (num_classes={num_classes}). "
            f"Received: label={bad}"
        )
    categorical = np.zeros((labels.size, num_classes))
    categorical[np.arange(labels.size), labels] = 1
    return categorical.reshape(tuple(input_shape) + (num_classes,))


def pad_sequences(sequences: Sequence[Iterable[int]], maxlen: int | None = None,
                  dtype: str = "int32", padding: str = "pre", truncating: str = "pre",
                  value: float = 0.0) -> np.ndarray:
    """Sequences of different lengths as one (n, maxlen) array, as `keras.utils.pad_sequences`:
    shorter rows padded with `value` ("pre": at the start, "post": at the end), longer rows
    cut ("pre": their start is dropped, "post": their end)."""
    for name, given in (("padding", padding), ("truncating", truncating)):
        if given not in ("pre", "post"):
            raise KilnValueError(f"Expected {name} 'pre' or 'post'. Received: {name}={given!r}")
    rows = [list(seq) for seq in sequences]
    if maxlen is None:
        maxlen = max((len(r) for r in rows), default=0)
    if not isinstance(maxlen, numbers.Integral) or maxlen < 0:
        raise KilnValueError(f"Expected maxlen to be an int >= 0. Received: maxlen={maxlen!r}")
    out = np.full((len(rows), maxlen), value, dtype=dtype)
    for i, row in enumerate(rows):
        kept = (row[-maxlen:] if truncating == "pre" else row[:maxlen]) if maxlen else []
        if kept:
            if padding == "pre":
                out[i, maxlen - len(kept):] = kept
            else:
                out[i, :len(kept)] = kept
    return out
