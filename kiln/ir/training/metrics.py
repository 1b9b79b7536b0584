"""Metric functions as IR builders, following Keras 3's definitions.

Each returns a per-sample value; a step reports its batch mean and the training loop keeps
the sample-weighted mean over an epoch, as Keras's mean metrics do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Value
from kiln.ir.training import losses
from kiln.ir.training.losses import _float_target, _last_axis_mean, sparse_labels


def accuracy(b: Any, y_true: Value, y_pred: Value) -> Value:
    """1 where the target equals the prediction, averaged per sample (Keras's Accuracy)."""
    y_true = _float_target(b, y_true, y_pred, "accuracy")
    hits = b.cast(b.equal(y_true, y_pred), dtype=y_pred.type.dtype)
    return b.mean(hits, axes=tuple(range(1, hits.type.rank))) if hits.type.rank > 1 else hits


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


def check_k(k: Any, owner: str = "top-k accuracy") -> int:
    """k of a top-k accuracy: an integer of at least 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KilnValueError(f"{owner}: expected an integer k >= 1. Received: k={k!r}")
    return k


def _in_top_k(b: Any, labels: Value, y_pred: Value, k: int) -> Value:
    """1 where the label's score is among the k largest of its row, as Keras's in_top_k:
    at least the k-th largest score, i.e. fewer than k scores strictly above it (ties
    count for the label)."""
    check_k(k)
    hot = b.one_hot(labels, depth=y_pred.type.shape[-1], dtype="bool")
    score = b.sum(b.where(hot, y_pred, 0.0), axes=(-1,), keepdims=True)
    above = b.sum(b.cast(b.greater(y_pred, score), dtype="int32"), axes=(-1,))
    return b.cast(b.less(above, k), dtype=y_pred.type.dtype)


def top_k_categorical_accuracy(b: Any, y_true: Value, y_pred: Value, k: int = 5) -> Value:
    """1 where argmax(y_true) is among the k highest-scored classes."""
    y_true = _float_target(b, y_true, y_pred, "top_k_categorical_accuracy")
    return _in_top_k(b, b.argmax(y_true, axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(b: Any, y_true: Value, y_pred: Value,
                                      k: int = 5) -> Value:
    """1 where the integer label is among the k highest-scored classes."""
    labels = sparse_labels(b, y_true, y_pred, "sparse_top_k_categorical_accuracy")
    return _in_top_k(b, labels, y_pred, k)


def _variance(b: Any, x: Value, axis: int) -> Value:
    """The population variance along `axis`, kept (Keras's ops.var)."""
    centered = b.sub(x, b.mean(x, axes=(axis,), keepdims=True))
    return b.mean(b.square(centered), axes=(axis,), keepdims=True)


def pearson_correlation(b: Any, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """The Pearson correlation of targets and predictions along `axis`, per sample."""
    y_true = _float_target(b, y_true, y_pred, "pearson_correlation")
    unit = []
    for v in (y_true, y_pred):
        centered = b.sub(v, b.mean(v, axes=(axis,), keepdims=True))
        unit.append(b.div(centered, b.sqrt(_variance(b, centered, axis))))
    return b.mean(b.mul(unit[0], unit[1]), axes=(axis,))


def concordance_correlation(b: Any, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """Lin's concordance correlation along `axis`, per sample, as Keras 3 computes it (its
    covariance term centres the targets on the predictions' mean)."""
    y_true = _float_target(b, y_true, y_pred, "concordance_correlation")
    true_mean = b.mean(y_true, axes=(axis,), keepdims=True)
    pred_mean = b.mean(y_pred, axes=(axis,), keepdims=True)
    spread = b.add(b.add(_variance(b, b.sub(y_true, true_mean), axis),
                         _variance(b, b.sub(y_pred, pred_mean), axis)),
                   b.square(b.sub(true_mean, pred_mean)))
    covariance = b.mul(b.sub(y_true, pred_mean), b.sub(y_pred, pred_mean))
    return b.mean(b.div(b.mul(covariance, 2.0), b.add(spread, losses.EPSILON)), axes=(axis,))


METRICS: dict[str, Callable[..., Value]] = {
    "accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "pearson_correlation": pearson_correlation,
    "concordance_correlation": concordance_correlation,
    # the losses that are metrics too; cosine_similarity with its own sign (1 is best)
    **{name: getattr(losses, name) for name in (
        "mean_absolute_error", "mean_squared_error", "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error", "log_cosh", "kl_divergence", "poisson", "hinge",
        "squared_hinge", "categorical_hinge", "cosine_similarity", "binary_crossentropy",
        "categorical_crossentropy", "sparse_categorical_crossentropy")},
}
