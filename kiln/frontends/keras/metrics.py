"""Keras-facing metrics: classes (BinaryAccuracy, ...), functions (binary_accuracy, mae, ...)
and name resolution for `compile(metrics=...)`.

A mean metric emits its per-sample value as IR (`Metric.ir(b, y_true, y_pred)`); a training
or test step reports the batch mean and the loop keeps the sample-weighted mean over an
epoch, as Keras's mean metrics do. A SummedMetric (RootMeanSquaredError, R2Score and the
confusion-matrix metrics of confusion_metrics.py) emits its batch's statistics; the loop
sums them and finishes the sum into the value (kiln.frontends.keras.metric).

"accuracy"/"acc", in any case, resolve from the shapes of targets and predictions exactly as
Keras 3 does: binary_accuracy for a 1-unit output, sparse_categorical_accuracy for integer
labels (target rank below the prediction's, or a last axis of 1 against several classes),
categorical_accuracy otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from kiln.frontends.keras import losses
from kiln.frontends.keras.confusion_metrics import (
    AUC,
    BinaryIoU,
    F1Score,
    FalseNegatives,
    FalsePositives,
    FBetaScore,
    IoU,
    MeanIoU,
    OneHotIoU,
    OneHotMeanIoU,
    Precision,
    PrecisionAtRecall,
    Recall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
    TrueNegatives,
    TruePositives,
)
from kiln.frontends.keras.losses import run_eager
from kiln.frontends.keras.metric import MeanMetricWrapper, Metric, SummedMetric, snake_case
from kiln.ir import KilnTypeError, KilnValueError, Value
from kiln.ir.training import losses as ir_losses
from kiln.ir.training import metrics as ir_metrics
from kiln.ir.training import summed_metrics as ir_summed

ACCURACY_NAMES = ("accuracy", "acc")


class Accuracy(MeanMetricWrapper):
    """How often predictions equal targets exactly (for class scores, compile with
    "accuracy", which picks binary, categorical or sparse accuracy from the shapes)."""

    def __init__(self, name: str = "accuracy", dtype: str | None = None):
        super().__init__(ir_metrics.accuracy, name, dtype)


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


class PearsonCorrelation(MeanMetricWrapper):
    """The Pearson correlation of targets and predictions along `axis`, per sample."""

    def __init__(self, name: str = "pearson_correlation", dtype: str | None = None,
                 axis: int = -1):
        super().__init__(ir_metrics.pearson_correlation, name, dtype, axis=axis)


class ConcordanceCorrelation(MeanMetricWrapper):
    """Lin's concordance correlation along `axis`, per sample, as Keras 3 computes it."""

    def __init__(self, name: str = "concordance_correlation", dtype: str | None = None,
                 axis: int = -1):
        super().__init__(ir_metrics.concordance_correlation, name, dtype, axis=axis)


class RootMeanSquaredError(SummedMetric):
    """sqrt of the mean over samples of each sample's mean squared error."""

    direction = "down"
    finish = staticmethod(ir_summed.finish_root_mean_squared)

    def __init__(self, name: str = "root_mean_squared_error", dtype: str | None = None):
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return ir_summed.squared_error_statistics(b, y_true, y_pred, weights, what=self.name)


class R2Score(SummedMetric):
    """The coefficient of determination of predictions [N, outputs]: per output
    (class_aggregation=None) or averaged ("uniform_average", "variance_weighted_average"),
    adjusted for num_regressors independent variables when that is not 0."""

    def __init__(self, class_aggregation: str | None = "uniform_average",
                 num_regressors: int = 0, name: str = "r2_score", dtype: str | None = None):
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise KilnValueError(f"R2Score: invalid value for argument `class_aggregation`. "
                                 f"Expected one of {valid}. "
                                 f"Received: class_aggregation={class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, int) \
                or num_regressors < 0:
            raise KilnValueError(f"R2Score: invalid value for argument `num_regressors`. "
                                 f"Expected an integer >= 0. "
                                 f"Received: num_regressors={num_regressors!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return ir_summed.r2_statistics(b, y_true, y_pred, weights, what=self.name)

    def finish(self, sums: np.ndarray) -> float | np.ndarray:
        return ir_summed.finish_r2(sums, self.class_aggregation, self.num_regressors)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


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


def pearson_correlation(y_true: Any, y_pred: Any, axis: int = -1) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.pearson_correlation(b, t, p, axis),
                     y_true, y_pred)


def concordance_correlation(y_true: Any, y_pred: Any, axis: int = -1) -> np.ndarray:
    return run_eager(lambda b, t, p: ir_metrics.concordance_correlation(b, t, p, axis),
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
    "root_mean_squared_error": RootMeanSquaredError,
    "r2_score": R2Score,
    "true_positives": TruePositives,
    "false_positives": FalsePositives,
    "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
    "f1_score": F1Score,
    "fbeta_score": FBetaScore,
    "binary_io_u": BinaryIoU,
    "pearson_correlation": PearsonCorrelation,
    "concordance_correlation": ConcordanceCorrelation,
}
# Classes only given as objects: Accuracy, since every spelling of "accuracy" picks one from
# the shapes as Keras does.
OBJECTS_ONLY: tuple[type[Metric], ...] = (Accuracy,)
# Classes that need arguments (class -> their names), so that no name stands for them (in
# Keras the name is found and the class then fails to build without them); saved models
# name them.
NEEDS_ARGUMENTS: dict[type[Metric], str] = {
    SensitivityAtSpecificity: "specificity", SpecificityAtSensitivity: "sensitivity",
    PrecisionAtRecall: "recall", RecallAtPrecision: "precision",
    IoU: "num_classes, target_class_ids", MeanIoU: "num_classes",
    OneHotIoU: "num_classes, target_class_ids", OneHotMeanIoU: "num_classes"}
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
    log_cosh, cosine_similarity, pearson_correlation, concordance_correlation, kl_divergence,
    poisson, hinge, squared_hinge, categorical_hinge, binary_crossentropy,
    categorical_crossentropy, sparse_categorical_crossentropy)}


def check(identifier: Any, argument: str = "metrics") -> Metric | str:
    """Validate a metric identifier at compile time: a Metric, or a name kept as given
    ("accuracy" needs the data's shapes, so it resolves in `get`; a function resolves to its
    name)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if (identifier.lower() in ACCURACY_NAMES
                or _ALIASES.get(identifier, identifier) in _CLASSES):
            return identifier
        for cls, needed in NEEDS_ARGUMENTS.items():
            if identifier in (cls.__name__, snake_case(cls.__name__)):
                given = ", ".join(f"{a}=..." for a in needed.split(", "))
                raise KilnValueError(f"metric {identifier!r} needs arguments ({needed}): pass "
                                     f"kiln.metrics.{cls.__name__}({given}). "
                                     f"Received: {argument}={identifier!r}")
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
    if identifier.lower() in ACCURACY_NAMES:  # "Accuracy" and "ACC" too, as in Keras
        binary = y_pred_shape[-1] == 1
        sparse = len(y_true_shape) < len(y_pred_shape) or (
            y_true_shape[-1] == 1 and y_pred_shape[-1] != 1)
        cls = BinaryAccuracy if binary else (SparseCategoricalAccuracy if sparse
                                             else CategoricalAccuracy)
        return cls(name=identifier)
    return _CLASSES[_ALIASES.get(identifier, identifier)](name=identifier)


__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "BinaryCrossentropy", "BinaryIoU", "CategoricalAccuracy",
    "CategoricalCrossentropy", "CategoricalHinge", "ConcordanceCorrelation", "CosineSimilarity",
    "F1Score", "FBetaScore", "FalseNegatives", "FalsePositives", "Hinge", "IoU", "KLDivergence",
    "LogCoshError", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanIoU",
    "MeanMetricWrapper", "MeanSquaredError", "MeanSquaredLogarithmicError", "Metric", "OneHotIoU",
    "OneHotMeanIoU", "PearsonCorrelation", "Poisson", "Precision", "PrecisionAtRecall", "R2Score",
    "Recall", "RecallAtPrecision", "RootMeanSquaredError", "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy", "SparseTopKCategoricalAccuracy",
    "SpecificityAtSensitivity", "SquaredHinge", "SummedMetric", "TopKCategoricalAccuracy",
    "TrueNegatives", "TruePositives", "binary_accuracy", "binary_crossentropy",
    "categorical_accuracy", "categorical_crossentropy", "categorical_hinge", "check",
    "concordance_correlation", "cosine_similarity", "get", "hinge", "kl_divergence", "log_cosh",
    "mae", "mape", "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_error",
    "mean_squared_logarithmic_error", "mse", "msle", "pearson_correlation", "poisson",
    "sparse_categorical_accuracy", "sparse_categorical_crossentropy",
    "sparse_top_k_categorical_accuracy", "squared_hinge", "top_k_categorical_accuracy",
]
