"""Metric functions as IR builders, following Keras 3's definitions.

Each returns a per-sample value; a step reports its batch mean and the training loop keeps
the sample-weighted mean over an epoch, as Keras's mean metrics do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln.ir.graph import Value
from kiln.ir.training.losses import (
    _float_target,
    _last_axis_mean,
    mean_absolute_error,
    mean_squared_error,
    sparse_labels,
)


def binary_accuracy(b: Any, y_true: Value, y_pred: Value, threshold: float = 0.5) -> Value:
    y_true = _float_target(b, y_true, y_pred, "binary_accuracy")
    predicted = b.cast(b.greater(y_pred, threshold), dtype=y_pred.type.dtype)
    hits = b.cast(b.equal(y_true, predicted), dtype=y_pred.type.dtype)
    return _last_axis_mean(b, hits)


def categorical_accuracy(b: Any, y_true: Value, y_pred: Value) -> Value:
    y_true = _float_target(b, y_true, y_pred, "categorical_accuracy")
    hits = b.equal(b.argmax(y_true, axis=-1), b.argmax(y_pred, axis=-1))
    return b.cast(hits, dtype=y_pred.type.dtype)


def sparse_categorical_accuracy(b: Any, y_true: Value, y_pred: Value) -> Value:
    labels = sparse_labels(b, y_true, y_pred, "sparse_categorical_accuracy")
    hits = b.equal(b.cast(labels, dtype="int64"), b.argmax(y_pred, axis=-1))
    return b.cast(hits, dtype=y_pred.type.dtype)


METRICS: dict[str, Callable[..., Value]] = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_absolute_error": mean_absolute_error,
    "mean_squared_error": mean_squared_error,
}
