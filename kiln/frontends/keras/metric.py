"""The bases of kiln.metrics: Metric (per-sample values, averaged over the samples of any
number of batches), MeanMetricWrapper (a Metric from an IR builder function) and SummedMetric
(statistics summed over the batches, then finished into the value: precision, AUC, R2, ...).

A training or test step emits each metric as IR: a Metric's batch mean, or a SummedMetric's
batch statistics. The loop that runs the steps keeps the sample-weighted mean of the former
and the sum of the latter, whose `finish` gives the value the logs report.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.frontends.keras.losses import run_eager
from kiln.ir import KilnValueError, Value


def snake_case(name: str) -> str:
    """A class name as Keras 3 names its instances and registers it: PrecisionAtRecall ->
    precision_at_recall."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Metric:
    """Base of the metrics: `ir(b, y_true, y_pred)` emits per-sample values. Used eagerly it
    keeps Keras's running state: `update_state`, `result`, `reset_state`.

    `direction` ("up" or "down") tells callbacks in mode="auto" which way is better."""

    direction = "up"

    def __init__(self, name: str | None = None, dtype: str | None = None):
        self.name = name or snake_case(type(self).__name__)
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


class SummedMetric(Metric):
    """Base of the metrics whose value is a function of statistics summed over the batches
    (Keras's confusion-matrix metrics, RootMeanSquaredError, R2Score). Subclasses define
    `statistics(b, y_true, y_pred, weights)`, which emits one batch's statistics as IR (a float
    tensor of a shape fixed when the graph is built; `weights` is None or the per-sample
    weights [N]), and `finish(sums)`, which turns the statistics summed over any number of
    batches into the value: a float, or an array for several thresholds or classes.

    A compiled step outputs the statistics of its batch; fit, evaluate and the *_on_batch
    calls add them up and report `finish` of the sum. Used eagerly, `update_state` adds a
    batch's statistics to the running sum and `result` finishes it."""

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        raise NotImplementedError(f"{type(self).__name__}.statistics")

    def finish(self, sums: np.ndarray) -> float | np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.finish")

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        return self.statistics(b, y_true, y_pred, None)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        weights = None
        if sample_weight is not None:
            rows = np.shape(y_pred)[0] if np.ndim(y_pred) else 1
            weights = np.asarray(sample_weight, np.float32)
            if weights.ndim == 0:
                weights = np.full(rows, weights, np.float32)
            if weights.shape != (rows,):
                raise KilnValueError(f"{self.name}: expected sample_weight of shape ({rows},), "
                                     f"one weight per sample, or a scalar. Received: "
                                     f"sample_weight of shape {weights.shape}")
        sums = np.asarray(run_eager(self.statistics, y_true, y_pred, weights), np.float64)
        self.sums = sums if self.sums is None else self.sums + sums

    def result(self) -> float | np.ndarray:
        return 0.0 if self.sums is None else self.finish(self.sums)

    def reset_state(self) -> None:
        self.sums: np.ndarray | None = None
