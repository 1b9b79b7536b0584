"""Keras-facing metrics: classes (BinaryAccuracy, ...), functions (binary_accuracy, mae, ...)
and name resolution for `compile(metrics=...)`.

A metric emits its per-sample value as IR (`Metric.ir(b, y_true, y_pred)`); a training or
test step reports the batch mean and the loop keeps the sample-weighted mean over an epoch,
as Keras's mean metrics do. "accuracy"/"acc" resolve from the shapes of targets and
predictions exactly as Keras 3 does: binary_accuracy for a 1-unit output,
sparse_categorical_accuracy for integer labels (target rank below the prediction's, or a
last axis of 1 against several classes), categorical_accuracy otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from kiln.frontends.keras import losses
from kiln.frontends.keras.losses import run_eager
from kiln.ir import KilnTypeError, KilnValueError, Value
from kiln.ir.training import losses as ir_losses
from kiln.ir.training import metrics as ir_metrics

ACCURACY_NAMES = ("accuracy", "acc")


class Metric:
    """Base of the metrics: `ir(b, y_true, y_pred)` emits per-sample values. Used eagerly it
    keeps Keras's running state: `update_state`, `result`, `reset_state`.

    `direction` ("up" or "down") tells callbacks in mode="auto" which way is better."""

    direction = "up"

    def __init__(self, name: str | None = None, dtype: str | None = None):
        self.name = name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()
        self.dtype = dtype
        self.reset_state()

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        raise NotImplementedError(f"{type(self).__name__}.ir")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = np.asarray(run_eager(self.ir, y_true, y_pred), np.float64)
        weights = np.ones(values.shape) if sample_weight is None else \
            np.broadcast_to(np.asarray(sample_weight, np.float64).reshape(
                np.shape(sample_weight) + (1,) * (values.ndim - np.ndim(sample_weight))),
                values.shape)
        self.total += float(np.sum(values * weights))
        self.count += float(np.sum(weights))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class MeanMetricWrapper(Metric):
    """A metric from an IR builder function `fn(b, y_true, y_pred, **kwargs)`."""

    def __init__(self, fn: Callable[..., Value], name: str | None = None,
                 dtype: str | None = None, direction: str = "up", **kwargs: Any):
        self.fn = fn
        self.fn_kwargs = kwargs
        self.direction = direction
        super().__init__(name or fn.__name__, dtype)

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        return self.fn(b, y_true, y_pred, **self.fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.fn_kwargs}


class BinaryAccuracy(MeanMetricWrapper):
    """mean(y_true == (y_pred > threshold), axis=-1)."""

    def __init__(self, name: str = "binary_accuracy", dtype: str | None = None,
                 threshold: float = 0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise KilnValueError(f"BinaryAccuracy: expected a float threshold. "
                                 f"Received: threshold={threshold!r}")
        super().__init__(ir_metrics.binary_accuracy, name, dtype, threshold=float(threshold))


class CategoricalAccuracy(MeanMetricWrapper):
    """argmax(y_true, -1) == argmax(y_pred, -1)."""

    def __init__(self, name: str = "categorical_accuracy", dtype: str | None = None):
        super().__init__(ir_metrics.categorical_accuracy, name, dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """y_true == argmax(y_pred, -1), with integer labels."""

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: str | None = None):
        super().__init__(ir_metrics.sparse_categorical_accuracy, name, dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_absolute_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_absolute_error, name, dtype, direction="down")


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_squared_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_squared_error, name, dtype, direction="down")


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """1 where argmax(y_true) is among the k highest-scored classes (ties count)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy",
                 dtype: str | None = None):
        super().__init__(ir_metrics.top_k_categorical_accuracy, name, dtype,
                         k=ir_metrics.check_k(k, "TopKCategoricalAccuracy"))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """1 where the integer label is among the k highest-scored classes (ties count)."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy",
                 dtype: str | None = None):
        super().__init__(ir_metrics.sparse_top_k_categorical_accuracy, name, dtype,
                         k=ir_metrics.check_k(k, "SparseTopKCategoricalAccuracy"))


class MeanAbsolutePercentageError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_absolute_percentage_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_absolute_percentage_error, name, dtype,
                         direction="down")


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_squared_logarithmic_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_squared_logarithmic_error, name, dtype,
                         direction="down")


class LogCoshError(MeanMetricWrapper):
    def __init__(self, name: str = "logcosh", dtype: str | None = None):
        super().__init__(ir_losses.log_cosh, name, dtype, direction="down")


class CosineSimilarity(MeanMetricWrapper):
    """sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): 1 for the same direction."""

    def __init__(self, name: str = "cosine_similarity", dtype: str | None = None,
                 axis: int = -1):
        super().__init__(ir_losses.cosine_similarity, name, dtype, axis=axis)


class KLDivergence(MeanMetricWrapper):
    def __init__(self, name: str = "kl_divergence", dtype: str | None = None):
        super().__init__(ir_losses.kl_divergence, name, dtype, direction="down")


class Poisson(MeanMetricWrapper):
    def __init__(self, name: str = "poisson", dtype: str | None = None):
        super().__init__(ir_losses.poisson, name, dtype, direction="down")


class Hinge(MeanMetricWrapper):
    def __init__(self, name: str = "hinge", dtype: str | None = None):
        super().__init__(ir_losses.hinge, name, dtype, direction="down")


class SquaredHinge(MeanMetricWrapper):
    def __init__(self, name: str = "squared_hinge", dtype: str | None = None):
        super().__init__(ir_losses.squared_hinge, name, dtype, direction="down")


class CategoricalHinge(MeanMetricWrapper):
    def __init__(self, name: str = "categorical_hinge", dtype: str | None = None):
        super().__init__(ir_losses.categorical_hinge, name, dtype, direction="down")


def _crossentropy(loss: type[losses.Loss], b: Any, y_true: Value, y_pred: Value,
                  **kwargs: Any) -> Value:
    """The per-sample values of the kiln.losses class `loss` made with kwargs."""
    return loss(**kwargs, reduction="none").ir(b, y_true, y_pred)


class BinaryCrossentropy(MeanMetricWrapper):
    def __init__(self, name: str = "binary_crossentropy", dtype: str | None = None,
                 from_logits: bool = False, label_smoothing: float = 0.0):
        losses.BinaryCrossentropy(from_logits, label_smoothing)  # checks the arguments
        super().__init__(partial(_crossentropy, losses.BinaryCrossentropy), name, dtype,
                         direction="down", from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


class CategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name: str = "categorical_crossentropy", dtype: str | None = None,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1):
        losses.CategoricalCrossentropy(from_logits, label_smoothing, axis)
        super().__init__(partial(_crossentropy, losses.CategoricalCrossentropy), name, dtype,
                         direction="down", from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype: str | None = None,
                 from_logits: bool = False, axis: int = -1):
        losses._check_axis(axis, "SparseCategoricalCrossentropy")
        super().__init__(partial(_crossentropy, losses.SparseCategoricalCrossentropy), name,
                         dtype, direction="down", from_logits=bool(from_logits))


# -- functions: per-sample values on arrays, and usable in `compile(metrics=[fn])` --------
def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.binary_accuracy(b, t, p, threshold),
                     y_true, y_pred)


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_metrics.categorical_accuracy, y_true, y_pred)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_metrics.sparse_categorical_accuracy, y_true, y_pred)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.top_k_categorical_accuracy(b, t, p, k),
                     y_true, y_pred)


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.sparse_top_k_categorical_accuracy(b, t, p, k),
                     y_true, y_pred)


def cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> np.ndarray:
    """The cosine similarity per sample (kiln.losses.cosine_similarity is its negation)."""
    return run_eager(lambda b, t, p: ir_losses.cosine_similarity(b, t, p, axis), y_true, y_pred)


# The losses' functions are metric functions too, as in keras.metrics.
from kiln.frontends.keras.losses import (  # noqa: E402
    binary_crossentropy,
    categorical_crossentropy,
    categorical_hinge,
    hinge,
    kl_divergence,
    log_cosh,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
    poisson,
    sparse_categorical_crossentropy,
    squared_hinge,
)

mae = mean_absolute_error
mse = mean_squared_error
mape = mean_absolute_percentage_error
msle = mean_squared_logarithmic_error

_CLASSES: dict[str, type[Metric]] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_absolute_error": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "log_cosh": LogCoshError,
    "cosine_similarity": CosineSimilarity,
    "kl_divergence": KLDivergence,
    "poisson": Poisson,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
# Keras 3's short names (either case), its snake-case class names, then the class names.
_SHORT = {"mae": "mean_absolute_error", "mse": "mean_squared_error",
          "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
          "bce": "binary_crossentropy"}
_ALIASES = {**_SHORT, **{k.upper(): v for k, v in _SHORT.items()},
            "log_cosh_error": "log_cosh",
            **{cls.__name__: name for name, cls in _CLASSES.items()}}
_FUNCTIONS: dict[Callable[..., Any], str] = {fn: fn.__name__ for fn in (
    binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mean_absolute_error,
    mean_squared_error, mean_absolute_percentage_error, mean_squared_logarithmic_error,
    log_cosh, cosine_similarity, kl_divergence, poisson, hinge, squared_hinge,
    categorical_hinge, binary_crossentropy, categorical_crossentropy,
    sparse_categorical_crossentropy)}


def check(identifier: Any, argument: str = "metrics") -> Metric | str:
    """Validate a metric identifier at compile time: a Metric, or a name kept as given
    ("accuracy" needs the data's shapes, so it resolves in `get`; a function resolves to its
    name)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in ACCURACY_NAMES or _ALIASES.get(identifier, identifier) in _CLASSES:
            return identifier
        raise KilnValueError(f"Could not interpret metric identifier: {identifier!r}. Expected "
                             f"one of {sorted({*ACCURACY_NAMES, *_CLASSES, *_SHORT})} (or a "
                             f"class name) or a kiln.metrics.Metric. "
                             f"Received: {argument}={identifier!r}")
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]
    if callable(identifier) and identifier is losses.cosine_similarity:
        raise KilnValueError(f"kiln.losses.cosine_similarity is the negated similarity; as a "
                             f"metric use kiln.metrics.cosine_similarity or "
                             f"'cosine_similarity'. Received: {argument}={identifier!r}")
    raise KilnTypeError(f"Could not interpret metric identifier: expected a metric name, a "
                        f"kiln.metrics function or a kiln.metrics.Metric. "
                        f"Received: {argument}={identifier!r}")


def get(identifier: Metric | str, y_true_shape: Sequence[Any], y_pred_shape: Sequence[Any],
        ) -> Metric:
    """The metric for a checked identifier, given the target and prediction shapes."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ACCURACY_NAMES:
        binary = y_pred_shape[-1] == 1
        sparse = len(y_true_shape) < len(y_pred_shape) or (
            y_true_shape[-1] == 1 and y_pred_shape[-1] != 1)
        cls = BinaryAccuracy if binary else (SparseCategoricalAccuracy if sparse
                                             else CategoricalAccuracy)
        return cls(name=identifier)
    return _CLASSES[_ALIASES.get(identifier, identifier)](name=identifier)


__all__ = [
    "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy", "CategoricalCrossentropy",
    "CategoricalHinge", "CosineSimilarity", "Hinge", "KLDivergence", "LogCoshError",
    "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanMetricWrapper", "MeanSquaredError",
    "MeanSquaredLogarithmicError", "Metric", "Poisson", "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy", "SparseTopKCategoricalAccuracy", "SquaredHinge",
    "TopKCategoricalAccuracy", "binary_accuracy", "binary_crossentropy", "categorical_accuracy",
    "categorical_crossentropy", "categorical_hinge", "check", "cosine_similarity", "get", "hinge",
    "kl_divergence", "log_cosh", "mae", "mape", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_error", "mean_squared_logarithmic_error",
    "mse", "msle", "poisson", "sparse_categorical_accuracy", "sparse_categorical_crossentropy",
    "sparse_top_k_categorical_accuracy", "squared_hinge", "top_k_categorical_accuracy",
]
