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
from typing import Any

import numpy as np

from kiln.frontends.keras.losses import run_eager
from kiln.ir import KilnTypeError, KilnValueError, Value
from kiln.ir.training import metrics as ir_metrics
from kiln.ir.training.losses import mean_absolute_error as _mae
from kiln.ir.training.losses import mean_squared_error as _mse

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


class BinaryAccuracy(MeanMetricWrapper):
    """mean(y_true == (y_pred > threshold), axis=-1)."""

    def __init__(self, name: str = "binary_accuracy", dtype: str | None = None,
                 threshold: float = 0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise KilnValueError(f"BinaryAccuracy: expected a float threshold. "
                                 f"Received: threshold={threshold!r}")
        super().__init__(ir_metrics.binary_accuracy, name, dtype, threshold=float(threshold))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.fn_kwargs["threshold"]}


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
        super().__init__(_mae, name, dtype, direction="down")


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_squared_error", dtype: str | None = None):
        super().__init__(_mse, name, dtype, direction="down")


# -- functions: per-sample values on arrays, and usable in `compile(metrics=[fn])` --------
def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.binary_accuracy(b, t, p, threshold),
                     y_true, y_pred)


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_metrics.categorical_accuracy, y_true, y_pred)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_metrics.sparse_categorical_accuracy, y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(_mae, y_true, y_pred)


def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(_mse, y_true, y_pred)


mae = mean_absolute_error
mse = mean_squared_error

_CLASSES: dict[str, type[Metric]] = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mean_absolute_error": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError,
}
_ALIASES = {"mae": "mean_absolute_error", "mse": "mean_squared_error",
            **{cls.__name__: name for name, cls in _CLASSES.items()}}
_FUNCTIONS: dict[Callable[..., Any], str] = {
    binary_accuracy: "binary_accuracy", categorical_accuracy: "categorical_accuracy",
    sparse_categorical_accuracy: "sparse_categorical_accuracy",
    mean_absolute_error: "mean_absolute_error", mean_squared_error: "mean_squared_error",
}


def check(identifier: Any, argument: str = "metrics") -> Metric | str:
    """Validate a metric identifier at compile time: a Metric, or a name kept as given
    ("accuracy" needs the data's shapes, so it resolves in `get`)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in ACCURACY_NAMES or _ALIASES.get(identifier, identifier) in _CLASSES:
            return identifier
        raise KilnValueError(f"Could not interpret metric identifier: {identifier!r}. Expected "
                             f"one of {sorted({*ACCURACY_NAMES, *_CLASSES, 'mae', 'mse'})} or a "
                             f"kiln.metrics.Metric. Received: {argument}={identifier!r}")
    if callable(identifier) and identifier in _FUNCTIONS:
        return identifier.__name__
    # kiln.losses functions double as metrics, as in Keras.
    from kiln.frontends.keras import losses

    if callable(identifier) and identifier in (losses.mean_absolute_error,
                                               losses.mean_squared_error):
        return identifier.__name__
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
    "BinaryAccuracy", "CategoricalAccuracy", "MeanAbsoluteError", "MeanMetricWrapper",
    "MeanSquaredError", "Metric", "SparseCategoricalAccuracy", "binary_accuracy",
    "categorical_accuracy", "check", "get", "mae", "mean_absolute_error", "mean_squared_error",
    "mse", "sparse_categorical_accuracy",
]
