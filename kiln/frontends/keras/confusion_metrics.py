"""Keras 3's confusion-matrix metrics: the counts (TruePositives, ...), Precision, Recall,
AUC, the constrained rates (SensitivityAtSpecificity, PrecisionAtRecall, ...) and the
F-scores. Each sums its counts over the batches (SummedMetric); the IR that counts one batch
and the NumPy that finishes the sums are in kiln.ir.training.summed_metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras.metric import SummedMetric
from kiln.ir import KilnValueError, Value
from kiln.ir.training import summed_metrics as sm


def _thresholds(thresholds: Any, default: float, owner: str) -> list[float]:
    """Keras's parse_init_thresholds: one number or a list, each in [0, 1]."""
    if thresholds is None:
        return [default]
    given = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) \
        else [thresholds]
    bad = [t for t in given if isinstance(t, bool) or not isinstance(t, (int, float, np.number))
           or not 0 <= t <= 1]
    if bad or not given:
        raise KilnValueError(f"{owner}: threshold values must be in [0, 1]. "
                             f"Received: thresholds={thresholds!r}")
    return [float(t) for t in given]


def _optional_int(value: Any, argument: str, owner: str, least: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise KilnValueError(f"{owner}: expected `{argument}` to be None or an integer >= "
                             f"{least}. Received: {argument}={value!r}")
    return int(value)


def _rate(value: Any, argument: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise KilnValueError(f"{owner}: argument `{argument}` must be in the range [0, 1]. "
                             f"Received: {argument}={value!r}")
    return float(value)


class _ConfusionCount(SummedMetric):
    """One cell of the confusion matrix (0 tp, 1 fp, 2 tn, 3 fn), counted at each threshold
    (default 0.5): a float, or an array for several thresholds."""

    cell = 0

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: str | None = None):
        self.init_thresholds = thresholds
        self.thresholds = _thresholds(thresholds, 0.5, type(self).__name__)
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return sm.confusion_statistics(b, y_true, y_pred, self.thresholds, weights=weights,
                                       what=self.name)

    def finish(self, sums: np.ndarray) -> float | np.ndarray:
        return sm.finish_count(sums, self.cell)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionCount):
    cell = 0


class FalsePositives(_ConfusionCount):
    cell, direction = 1, "down"


class TrueNegatives(_ConfusionCount):
    cell = 2


class FalseNegatives(_ConfusionCount):
    cell, direction = 3, "down"


class Precision(SummedMetric):
    """tp / (tp + fp) at each threshold (default 0.5; with top_k, only the k highest scores
    of a row are positive), of one class with class_id, else of every value."""

    finish = staticmethod(sm.finish_precision)

    def __init__(self, thresholds: Any = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None):
        owner = type(self).__name__
        self.init_thresholds = thresholds
        self.top_k = _optional_int(top_k, "top_k", owner, least=1)
        self.class_id = _optional_int(class_id, "class_id", owner)
        self.thresholds = _thresholds(thresholds, 0.5 if top_k is None else sm.NEG_INF, owner)
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return sm.confusion_statistics(b, y_true, y_pred, self.thresholds, top_k=self.top_k,
                                       class_id=self.class_id, weights=weights, what=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """tp / (tp + fn), with Precision's arguments."""

    finish = staticmethod(sm.finish_recall)


_CURVES = ("ROC", "PR", "PRGAIN")
_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(SummedMetric):
    """The area under the ROC (or PR, PRGAIN) curve, by a Riemann sum over num_thresholds
    thresholds (or the given ones) between -epsilon and 1 + epsilon. multi_label: the mean
    (label_weights: the weighted mean) of one AUC per label of predictions [N, labels];
    otherwise every value counts in one curve, weighted by label_weights along the last axis.
    from_logits: the predictions go through a sigmoid first."""

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: str | None = None, thresholds: Sequence[float] | None = None,
                 multi_label: bool = False, num_labels: int | None = None,
                 label_weights: Sequence[float] | None = None, from_logits: bool = False):
        owner = "AUC"
        if str(curve).upper() not in _CURVES:
            raise KilnValueError(f"{owner}: invalid `curve` argument value {curve!r}. Expected "
                                 f"one of: {list(_CURVES)}")
        if str(summation_method).lower() not in _SUMMATIONS:
            raise KilnValueError(f"{owner}: invalid `summation_method` argument value "
                                 f"{summation_method!r}. Expected one of: {list(_SUMMATIONS)}")
        if thresholds is not None:
            inner = sorted(_thresholds(thresholds, 0.5, owner))
            self.num_thresholds = len(inner) + 2
            self.evenly = sm.evenly_spaced([0.0, *inner, 1.0])
        else:
            if (isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int)
                    or num_thresholds <= 1):
                raise KilnValueError(f"{owner}: argument `num_thresholds` must be an integer "
                                     f"> 1. Received: num_thresholds={num_thresholds!r}")
            inner, self.num_thresholds, self.evenly = None, num_thresholds, True
        self.init_thresholds = inner
        self.thresholds = sm.auc_thresholds(self.num_thresholds, self.init_thresholds)
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        self.multi_label, self.from_logits = bool(multi_label), bool(from_logits)
        if num_labels is not None and not self.multi_label:
            raise KilnValueError(f"{owner}: `num_labels` is needed only when `multi_label` is "
                                 f"True. Received: num_labels={num_labels!r}")
        self.num_labels = _optional_int(num_labels, "num_labels", owner, least=1)
        self.label_weights = None if label_weights is None else \
            [float(w) for w in np.ravel(label_weights)]
        super().__init__(name or "auc", dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        labels = y_pred.type.shape[-1] if y_pred.type.rank else 1
        if self.multi_label and self.num_labels is not None and labels != self.num_labels:
            raise KilnValueError(f"{self.name}: expected predictions of {self.num_labels} "
                                 f"labels (num_labels). Received: y_pred: {y_pred.type}")
        if self.label_weights is not None and len(self.label_weights) != labels:
            raise KilnValueError(f"{self.name}: expected one label weight per label, "
                                 f"{labels}. Received: {len(self.label_weights)} label_weights")
        if self.from_logits:
            y_pred = b.sigmoid(y_pred)
        return sm.confusion_statistics(
            b, y_true, y_pred, self.thresholds, multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights, weights=weights,
            evenly=self.evenly, what=self.name)

    def finish(self, sums: np.ndarray) -> float:
        return sm.finish_auc(sums, self.curve, self.summation_method, self.multi_label,
                             self.label_weights if self.multi_label else None)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "num_labels": self.num_labels,
                  "label_weights": self.label_weights, "from_logits": self.from_logits}
        if self.init_thresholds is not None:
            config["thresholds"] = self.init_thresholds
        return config


class _AtConstraint(SummedMetric):
    """The best `dependent` rate over the thresholds where the `constrained` rate reaches the
    given value; counts at num_thresholds evenly spaced thresholds in [0, 1]."""

    constrained = dependent = argument = ""

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None):
        owner = type(self).__name__
        self.value = _rate(value, self.argument, owner)
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) \
                or num_thresholds <= 0:
            raise KilnValueError(f"{owner}: argument `num_thresholds` must be an integer > 0. "
                                 f"Received: num_thresholds={num_thresholds!r}")
        self.num_thresholds = num_thresholds
        self.class_id = _optional_int(class_id, "class_id", owner)
        self.thresholds = sm.constrained_thresholds(num_thresholds)
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return sm.confusion_statistics(b, y_true, y_pred, self.thresholds,
                                       class_id=self.class_id, weights=weights,
                                       evenly=self.num_thresholds > 1, what=self.name)

    def finish(self, sums: np.ndarray) -> float:
        return sm.finish_at(sums, self.constrained, self.value, self.dependent)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_id": self.class_id,
                "num_thresholds": self.num_thresholds, self.argument: self.value}


class SensitivityAtSpecificity(_AtConstraint):
    constrained, dependent, argument = "specificity", "recall", "specificity"

    def __init__(self, specificity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_AtConstraint):
    constrained, dependent, argument = "recall", "specificity", "sensitivity"

    def __init__(self, sensitivity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class PrecisionAtRecall(_AtConstraint):
    constrained, dependent, argument = "recall", "precision", "recall"

    def __init__(self, recall: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_AtConstraint):
    constrained, dependent, argument = "precision", "recall", "precision"

    def __init__(self, precision: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: str | None = None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


class FBetaScore(SummedMetric):
    """The F-beta score of predictions [N, classes] against targets of that shape: per class
    (average=None), or its "micro", "macro" or "weighted" average. A prediction is positive
    above `threshold`, or (None) where it is the row's largest score."""

    def __init__(self, average: str | None = None, beta: float = 1.0,
                 threshold: float | None = None, name: str = "fbeta_score",
                 dtype: str | None = None):
        owner = type(self).__name__
        if average not in (None, "micro", "macro", "weighted"):
            raise KilnValueError(f"{owner}: invalid `average` argument value. Expected one of: "
                                 f"{{None, 'micro', 'macro', 'weighted'}}. "
                                 f"Received: average={average!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta <= 0:
            raise KilnValueError(f"{owner}: invalid `beta` argument value. It should be a "
                                 f"number > 0. Received: beta={beta!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(
                threshold, (int, float)) or not 0 < threshold <= 1):
            raise KilnValueError(f"{owner}: invalid `threshold` argument value. It should "
                                 f"verify 0 < threshold <= 1. Received: threshold={threshold!r}")
        self.average, self.beta = average, float(beta)
        self.threshold = None if threshold is None else float(threshold)
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return sm.fbeta_statistics(b, y_true, y_pred, self.threshold, weights=weights,
                                   what=self.name)

    def finish(self, sums: np.ndarray) -> float | np.ndarray:
        return sm.finish_fbeta(sums, self.beta, self.average)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta = 1."""

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str = "f1_score", dtype: str | None = None):
        super().__init__(average, 1.0, threshold, name, dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]
        return config


class IoU(SummedMetric):
    """Intersection over union of the target_class_ids, averaged over those that occur:
    class ids (sparse_y_true / sparse_y_pred False: one-hot targets or scores, reduced by
    argmax along `axis`) counted into a num_classes x num_classes confusion matrix over the
    batches; targets equal to ignore_class count nothing."""

    threshold: float | None = None  # BinaryIoU's: scores at or above it predict class 1

    def __init__(self, num_classes: int, target_class_ids: Sequence[int],
                 name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1):
        owner = type(self).__name__
        self.num_classes = _optional_int(num_classes, "num_classes", owner, least=1)
        if self.num_classes is None:
            raise KilnValueError(f"{owner}: expected `num_classes`, an integer >= 1. "
                                 f"Received: num_classes=None")
        ids = [_optional_int(i, "target_class_ids", owner) for i in target_class_ids]
        if not ids or max(ids) >= self.num_classes:
            raise KilnValueError(f"{owner}: expected target class ids in [0, "
                                 f"{self.num_classes}). Received: "
                                 f"target_class_ids={list(target_class_ids)!r}")
        self.target_class_ids = ids
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.sparse_y_true, self.sparse_y_pred = bool(sparse_y_true), bool(sparse_y_pred)
        self.axis = int(axis)
        super().__init__(name, dtype)

    def statistics(self, b: Any, y_true: Value, y_pred: Value,
                   weights: Value | None = None) -> Value:
        return sm.class_confusion_statistics(
            b, y_true, y_pred, self.num_classes, self.ignore_class, self.sparse_y_true,
            self.sparse_y_pred, self.axis, threshold=self.threshold, weights=weights,
            what=self.name)

    def finish(self, sums: np.ndarray) -> float:
        return sm.finish_iou(sums, self.target_class_ids)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes,
                "target_class_ids": self.target_class_ids, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class BinaryIoU(IoU):
    """IoU of two classes: a score at or above `threshold` predicts class 1."""

    def __init__(self, target_class_ids: Sequence[int] = (0, 1), threshold: float = 0.5,
                 name: str | None = None, dtype: str | None = None):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise KilnValueError(f"BinaryIoU: expected a number threshold. "
                                 f"Received: threshold={threshold!r}")
        self.threshold = float(threshold)
        super().__init__(2, target_class_ids, name, dtype)

    def get_config(self) -> dict[str, Any]:
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold,
                "name": self.name, "dtype": self.dtype}


class MeanIoU(IoU):
    """IoU averaged over every class."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1):
        classes = num_classes if isinstance(num_classes, int) else 0
        super().__init__(num_classes, list(range(classes)), name, dtype, ignore_class,
                         sparse_y_true, sparse_y_pred, axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["target_class_ids"]
        return config


class OneHotIoU(IoU):
    """IoU of one-hot targets and scores (or, sparse_y_pred=True, predicted class ids)."""

    def __init__(self, num_classes: int, target_class_ids: Sequence[int],
                 name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False,
                         sparse_y_pred, axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """MeanIoU of one-hot targets and scores (or, sparse_y_pred=True, predicted class ids)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["sparse_y_true"]
        return config
