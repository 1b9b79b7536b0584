"""Metrics whose value over many batches is a function of statistics summed over them, not a
mean of batch values: Keras 3's confusion-matrix metrics (counts, precision, recall, AUC and
the constrained ones, F-scores), RootMeanSquaredError and R2Score.

Each comes in two halves. `*_statistics(b, y_true, y_pred, ..., weights=None)` emits, as IR,
one batch's statistics summed over its samples: a float tensor whose shape is fixed when the
graph is built (no batch axis). A step outputs it as it is; the loop that runs the steps adds
the batches' tensors up, and a NumPy `finish_*` turns the sum into the metric's value. Both
follow Keras 3's definitions, so the value over an epoch is what Keras reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.graph import Value
from kiln.ir.training.losses import _float_target, match_rank

NEG_INF = -1e10  # Keras's stand-in for -inf where top_k drops a score
EPSILON = 1e-7


# -- the statistics, as IR --------------------------------------------------------------------
def _expect_float(y_pred: Value, what: str) -> None:
    if not y_pred.type.is_float:
        raise KilnTypeError(f"{what}: expected float predictions. Received: y_pred: {y_pred.type}")


def _paired(b: Any, y_true: Value, y_pred: Value, what: str) -> Value:
    """y_true in y_pred's float dtype, after Keras's squeeze-or-expand; same shapes."""
    _expect_float(y_pred, what)
    y_true = _float_target(b, y_true, y_pred, what)
    if y_true.type.shape != y_pred.type.shape:
        raise KilnTypeError(f"{what}: expected targets of the predictions' shape "
                            f"{list(y_pred.type.shape)}. Received: y_true: {y_true.type}")
    return y_true


def _sample_weights(b: Any, weights: Value | None, like: Value) -> Value | None:
    """Per-sample weights [N] as a tensor of `like`'s rank and dtype (trailing axes of 1)."""
    if weights is None:
        return None
    if weights.type.dtype != like.type.dtype:
        weights = b.cast(weights, dtype=like.type.dtype)
    if like.type.rank > 1:
        weights = b.expand_dims(weights, axes=tuple(range(1, like.type.rank)))
    return weights


def _stack(b: Any, rows: Sequence[Value]) -> Value:
    """Values of one shape as the rows of a new first axis."""
    return b.concat(*[b.expand_dims(r, axes=(0,)) for r in rows], axis=0)


def _keep_top_k(b: Any, y_pred: Value, k: int) -> Value:
    """Keras's _filter_top_k: scores outside the k largest of their row become NEG_INF (of
    equal scores the first ones count as larger, as a stable top-k picks them)."""
    n = y_pred.type.shape[-1]
    rank = y_pred.type.rank
    mine = b.expand_dims(y_pred, axes=(rank,))       # [..., i, 1]
    others = b.expand_dims(y_pred, axes=(rank - 1,))  # [..., 1, j]
    earlier = b.constant(np.tril(np.ones((n, n), bool), -1))  # j < i
    beats = b.logical_or(b.greater(others, mine),
                         b.logical_and(b.equal(others, mine), earlier))
    ahead = b.sum(b.cast(beats, dtype="int32"), axes=(-1,))
    return b.where(b.less(ahead, k), y_pred, NEG_INF)


def evenly_spaced(thresholds: Sequence[float]) -> bool:
    """Keras's is_evenly_distributed_thresholds: 3 or more, i / (T - 1) for i = 0..T-1."""
    t = len(thresholds)
    if t < 3:
        return False
    even = np.arange(t, dtype=np.float32) / (t - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


def confusion_statistics(b: Any, y_true: Value, y_pred: Value, thresholds: Sequence[float],
                         top_k: int | None = None, class_id: int | None = None,
                         multi_label: bool = False, label_weights: Sequence[float] | None = None,
                         weights: Value | None = None, evenly: bool | None = None,
                         what: str = "confusion matrix") -> Value:
    """True positives, false positives, true negatives and false negatives at each threshold:
    [4, T], or [4, T, L] with multi_label (y_pred [N, L], each label on its own). A target is
    positive where it is nonzero; a prediction where it is above the threshold. Elsewise all
    values are flattened into one population.

    `evenly` (default: whether the thresholds are i / (T - 1)) takes Keras's bucketing path:
    predictions clipped to [0, 1], positive at threshold i where p * (T - 1) > i, and always at
    the first threshold when it lies below 0 (AUC's -epsilon)."""
    y_true = _paired(b, y_true, y_pred, what)
    dtype = y_pred.type.dtype
    if top_k is not None:
        y_pred = _keep_top_k(b, y_pred, top_k)
    if class_id is not None:
        if y_pred.type.rank < 2 or not 0 <= class_id < y_pred.type.shape[-1]:
            raise KilnValueError(f"{what}: expected class_id in [0, {y_pred.type.shape[-1]}) "
                                 f"of predictions [N, classes]. Received: class_id={class_id} "
                                 f"for y_pred: {y_pred.type}")
        pick = {"begin": (None,) * (y_pred.type.rank - 1) + (class_id,),
                "end": (None,) * (y_pred.type.rank - 1) + (class_id + 1,)}
        y_true, y_pred = b.slice(y_true, **pick), b.slice(y_pred, **pick)
    if multi_label and y_pred.type.rank != 2:
        raise KilnTypeError(f"{what}: with multi_label=True expected predictions of rank 2 "
                            f"[N, labels]. Received: y_pred: {y_pred.type}")
    count = len(thresholds)
    if evenly is None:
        evenly = evenly_spaced(thresholds)
    if evenly:
        cuts = np.arange(count, dtype=np.float64)
        if thresholds[0] < 0.0 or thresholds[-1] > 1.0:
            cuts[0] = -1.0
        y_pred = b.mul(b.clip(y_pred, min=0.0, max=1.0), float(count - 1))
    else:
        cuts = np.asarray(thresholds, np.float64)
    # [..., 4, T] (multi_label: [N, 4, T, L]): the cells' axis, then the thresholds'
    axis = 1 if multi_label else y_pred.type.rank
    cut = b.constant(cuts.reshape((count, 1) if multi_label else (count,)), dtype=dtype)
    predicted = b.cast(b.greater(b.expand_dims(y_pred, axes=(axis, axis + 1)), cut),
                       dtype=dtype)
    positive = b.cast(b.logical_not(b.equal(y_true, 0.0)), dtype=dtype)
    negative = b.sub(1.0, positive)
    scale = _sample_weights(b, weights, y_pred)
    if label_weights is not None and not multi_label:
        lw = b.constant(np.asarray(label_weights, np.float64), dtype=dtype)
        scale = lw if scale is None else b.mul(scale, lw)
    if scale is not None:
        positive, negative = b.mul(positive, scale), b.mul(negative, scale)
    # cell k sums label_k * prediction_k, the labels (positive, negative, negative, positive)
    # and the predictions (positive, positive, negative, negative): one reduction
    cells = (4, 1, 1) if multi_label else (4, 1)
    label = _combine(b, [b.expand_dims(positive, axes=(axis, axis + 1)),
                         b.expand_dims(negative, axes=(axis, axis + 1))],
                     [[1, 0, 0, 1], [0, 1, 1, 0]], cells)
    pred = _combine(b, [predicted, b.constant(1.0, dtype)], [[1, 1, -1, -1], [0, 0, 1, 1]],
                    cells)
    reduce = (0,) if multi_label else tuple(range(y_pred.type.rank))
    return b.sum(b.mul(label, pred), axes=reduce)


def _combine(b: Any, terms: Sequence[Value], rows: Sequence[Sequence[float]],
             shape: tuple[int, ...]) -> Value:
    """sum_i terms[i] * rows[i], each row a constant of `shape` along a new cells' axis: the
    cells of a statistics tensor as one expression, so that one reduction sums them all."""
    dtype = terms[0].type.dtype
    total = None
    for term, row in zip(terms, rows):
        weights = b.constant(np.asarray(row, np.float64).reshape(shape), dtype=dtype)
        part = b.mul(term, weights)
        total = part if total is None else b.add(total, part)
    return total


def fbeta_statistics(b: Any, y_true: Value, y_pred: Value, threshold: float | None = None,
                     weights: Value | None = None, what: str = "fbeta_score") -> Value:
    """Per class: true positives, false positives, false negatives and the targets' sum, [4, C]
    of predictions [N, C]. A prediction is positive above `threshold`, or (None) where it is
    its row's largest score and not zero."""
    if y_pred.type.rank != 2 or y_true.type.rank != 2:
        raise KilnTypeError(f"{what}: expected 2D inputs with shape (batch_size, output_dim). "
                            f"Received: y_true: {y_true.type}, y_pred: {y_pred.type}")
    y_true = _paired(b, y_true, y_pred, what)
    if threshold is None:
        top = b.max(y_pred, axes=(-1,), keepdims=True)
        hit = b.logical_and(b.equal(y_pred, top), b.greater(b.abs(y_pred), 1e-9))
    else:
        hit = b.greater(y_pred, threshold)
    dtype = y_pred.type.dtype
    predicted = b.expand_dims(b.cast(hit, dtype=dtype), axes=(1,))
    actual = b.expand_dims(y_true, axes=(1,))
    # rows: predicted * actual, predicted * (1 - actual), (1 - predicted) * actual, actual
    one = b.constant(1.0, dtype)
    pred = _combine(b, [predicted, one], [[1, 1, -1, 0], [0, 0, 1, 1]], (4, 1))
    label = _combine(b, [actual, one], [[1, -1, 1, 1], [0, 1, 0, 0]], (4, 1))
    cells = b.mul(pred, label)
    scale = _sample_weights(b, weights, cells)
    return b.sum(cells if scale is None else b.mul(cells, scale), axes=(0,))


def class_confusion_statistics(b: Any, y_true: Value, y_pred: Value, num_classes: int,
                               ignore_class: int | None = None, sparse_y_true: bool = True,
                               sparse_y_pred: bool = True, axis: int = -1,
                               threshold: float | None = None, weights: Value | None = None,
                               what: str = "iou") -> Value:
    """The confusion matrix of class ids, [C, C] (rows: the true class, columns: the
    predicted one), as Keras 3's IoU metrics count it: one-hot targets or scores are first
    reduced to ids by argmax along `axis`, float ids truncate, `threshold` makes scores at or
    above it class 1 (BinaryIoU); pairs with an id outside [0, C), or a target equal to
    ignore_class, count nothing."""
    if not sparse_y_true:
        y_true = b.argmax(y_true, axis=axis)
    if threshold is not None:
        at_least = b.logical_or(b.greater(y_pred, threshold), b.equal(y_pred, threshold))
        y_pred = b.cast(at_least, dtype="int32")
    elif not sparse_y_pred:
        y_pred = b.argmax(y_pred, axis=axis)
    ids = []
    for v in (y_true, y_pred):
        ids.append(v if v.type.dtype in ("int32", "int64") else b.cast(v, dtype="int32"))
    y_true, y_pred = match_rank(b, ids[0], ids[1]), ids[1]
    if y_true.type.shape != y_pred.type.shape:
        raise KilnTypeError(f"{what}: expected class ids of one shape for targets and "
                            f"predictions. Received: y_true: {y_true.type}, y_pred: "
                            f"{y_pred.type}")
    inside = None
    for v in (y_true, y_pred):
        ok = b.logical_and(b.logical_not(b.less(v, 0)), b.less(v, num_classes))
        inside = ok if inside is None else b.logical_and(inside, ok)
    if ignore_class is not None:
        inside = b.logical_and(inside, b.logical_not(b.equal(y_true, ignore_class)))
    dtype = weights.type.dtype if weights is not None else "float32"
    count = b.cast(inside, dtype=dtype)
    scale = _sample_weights(b, weights, count)
    if scale is not None:
        count = b.mul(count, scale)
    rank = y_true.type.rank
    true_hot = b.one_hot(b.where(inside, y_true, 0), depth=num_classes, dtype=dtype)
    pred_hot = b.one_hot(b.where(inside, y_pred, 0), depth=num_classes, dtype=dtype)
    cells = b.mul(b.expand_dims(b.mul(true_hot, b.expand_dims(count, axes=(rank,))),
                                axes=(rank + 1,)),
                  b.expand_dims(pred_hot, axes=(rank,)))
    return b.sum(cells, axes=tuple(range(rank)))


def r2_statistics(b: Any, y_true: Value, y_pred: Value, weights: Value | None = None,
                  what: str = "r2_score") -> Value:
    """Per output: the sum of targets, of squared targets, of squared residuals, of weights,
    and the number of target values, [5, C] of predictions [N, C]."""
    if y_pred.type.rank != 2:
        raise KilnTypeError(f"{what}: expected 2D inputs with shape (batch_size, output_dim). "
                            f"Received: y_true: {y_true.type}, y_pred: {y_pred.type}")
    y_true = _paired(b, y_true, y_pred, what)
    dtype = y_pred.type.dtype
    # rows: targets, squared targets, squared residuals, ones; weighted, summed over samples
    terms = [y_true, b.mul(y_true, y_true), b.square(b.sub(y_true, y_pred)),
             b.constant(1.0, dtype)]
    cells = _combine(b, [b.expand_dims(t, axes=(1,)) if t.type.rank else t for t in terms],
                     np.eye(4), (4, 1))
    scale = _sample_weights(b, weights, cells)
    sums = b.sum(cells if scale is None else b.mul(cells, scale), axes=(0,))
    samples = b.broadcast_to(b.size(y_true, dtype=dtype), shape=(1, y_pred.type.shape[-1]))
    return b.concat(sums, samples, axis=0)


def squared_error_statistics(b: Any, y_true: Value, y_pred: Value,
                             weights: Value | None = None,
                             what: str = "root_mean_squared_error") -> Value:
    """The sum over samples of each sample's mean squared error, and the number (or total
    weight) of samples, [2]: RootMeanSquaredError's total and count."""
    _expect_float(y_pred, what)
    y_true = match_rank(b, y_true, y_pred)
    if y_true.type.dtype != y_pred.type.dtype:
        y_true = b.cast(y_true, dtype=y_pred.type.dtype)
    error = b.square(b.sub(y_pred, y_true))
    if error.type.rank > 1:
        error = b.mean(error, axes=tuple(range(1, error.type.rank)))
    w = _sample_weights(b, weights, error)
    if w is None:
        return _stack(b, [b.sum(error), b.size(error, axes=(0,), dtype=error.type.dtype)])
    return _stack(b, [b.sum(b.mul(error, w)), b.sum(w)])


# -- the values, from summed statistics (NumPy, float64) --------------------------------------
def divide_no_nan(a: Any, b: Any) -> np.ndarray:
    """a / b, and 0 where b is 0 (Keras's ops.divide_no_nan)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return np.divide(a, b, out=np.zeros(a.shape), where=b != 0)


def value_of(x: np.ndarray) -> float | np.ndarray:
    """A result as a log holds it: a float, or an array when it has several values."""
    x = np.asarray(x, np.float64)
    return float(x) if x.ndim == 0 else x


def _per_threshold(values: np.ndarray) -> float | np.ndarray:
    """A value per threshold: a float for one threshold, as Keras's result()[0]."""
    return value_of(values[0] if values.shape == (1,) else values)


def finish_count(sums: np.ndarray, cell: int) -> float | np.ndarray:
    """One cell of the confusion statistics (0 tp, 1 fp, 2 tn, 3 fn): a count per threshold."""
    return _per_threshold(np.asarray(sums, np.float64)[cell])


def finish_precision(sums: np.ndarray) -> float | np.ndarray:
    tp, fp = np.asarray(sums, np.float64)[:2]
    return _per_threshold(divide_no_nan(tp, tp + fp))


def finish_recall(sums: np.ndarray) -> float | np.ndarray:
    tp, fn = np.asarray(sums, np.float64)[[0, 3]]
    return _per_threshold(divide_no_nan(tp, tp + fn))


def _rates(sums: np.ndarray) -> dict[str, np.ndarray]:
    tp, fp, tn, fn = np.asarray(sums, np.float64)
    return {"recall": divide_no_nan(tp, tp + fn), "precision": divide_no_nan(tp, tp + fp),
            "specificity": divide_no_nan(tn, tn + fp)}


def finish_at(sums: np.ndarray, constrained: str, value: float, dependent: str) -> float:
    """The best `dependent` rate over the thresholds where `constrained` >= value (0 if none):
    SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision
    (sensitivity is recall)."""
    rates = _rates(sums)
    feasible = rates[constrained] >= value
    return float(np.max(np.where(feasible, rates[dependent], 0.0), initial=0.0))


def _label_mean(by_label: np.ndarray, label_weights: Sequence[float] | None) -> float:
    if label_weights is None:
        return float(np.mean(by_label))
    lw = np.asarray(label_weights, np.float64)
    return float(divide_no_nan(np.sum(by_label * lw), np.sum(lw)))


def finish_auc(sums: np.ndarray, curve: str = "ROC", summation_method: str = "interpolation",
               multi_label: bool = False,
               label_weights: Sequence[float] | None = None) -> float:
    """The area under the ROC, PR or PRGAIN curve by Riemann sums over the thresholds, as
    Keras 3's AUC.result (PR with interpolation: Davis & Goadrich's interpolation)."""
    tp, fp, tn, fn = np.asarray(sums, np.float64)
    if curve == "PR" and summation_method == "interpolation":
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        slope = divide_no_nan(dtp, np.maximum(p[:-1] - p[1:], 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                         divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        terms = divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                              np.maximum(tp[1:] + fn[1:], 0))
    else:
        recall = divide_no_nan(tp, tp + fn)
        if curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        elif curve == "PR":
            x, y = recall, divide_no_nan(tp, tp + fp)
        else:  # PRGAIN
            scale = divide_no_nan(tp + fn, tn + fp)
            x = np.maximum(np.where(tp == 0, 0.0, 1.0 - scale * divide_no_nan(fn, tp)), 0.0)
            y = np.where(tp == 0, 1.0, 1.0 - scale * divide_no_nan(fp, tp))
        heights = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
                   "majoring": np.maximum(y[:-1], y[1:])}[summation_method]
        terms = (x[:-1] - x[1:]) * heights
    if multi_label:
        return _label_mean(np.sum(terms, axis=0), label_weights)
    return float(np.sum(terms))


def finish_fbeta(sums: np.ndarray, beta: float = 1.0,
                 average: str | None = None) -> float | np.ndarray:
    """Keras 3's FBetaScore.result: per class, or its micro, macro or weighted average."""
    tp, fp, fn, support = np.asarray(sums, np.float64)
    if average == "micro":
        tp, fp, fn, support = tp.sum(), fp.sum(), fn.sum(), support.sum()
    precision = tp / (tp + fp + EPSILON)
    recall = tp / (tp + fn + EPSILON)
    score = precision * recall / (beta**2 * precision + recall + EPSILON) * (1 + beta**2)
    if average == "weighted":
        return float(np.sum(score * support / (np.sum(support) + EPSILON)))
    if average is not None:
        return float(np.mean(score))
    return value_of(score)


def finish_iou(sums: np.ndarray, target_class_ids: Sequence[int]) -> float:
    """Keras 3's IoU.result: tp / (predicted + actual - tp) per target class, averaged over
    the target classes that occur (in targets or predictions)."""
    matrix = np.asarray(sums, np.float64)
    tp = np.diag(matrix)
    denominator = (matrix.sum(0) + matrix.sum(1) - tp)[list(target_class_ids)]
    iou = np.where(denominator > 1e-9, tp[list(target_class_ids)] / (denominator + EPSILON), 0)
    return float(np.sum(iou) / (np.sum(denominator > 1e-9) + EPSILON))


def finish_r2(sums: np.ndarray, class_aggregation: str | None = "uniform_average",
              num_regressors: int = 0) -> float | np.ndarray:
    """Keras 3's R2Score.result: the coefficient of determination per output, averaged
    uniformly or by variance, adjusted for `num_regressors` when there are enough samples."""
    total, squares, residual, count, samples = np.asarray(sums, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = squares - total * (total / count)
        scores = 1 - residual / variance
    scores = np.where(np.isinf(scores), 0.0, scores)
    if class_aggregation == "uniform_average":
        r2 = np.mean(scores)
    elif class_aggregation == "variance_weighted_average":
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.sum(variance * scores) / np.sum(variance)
    else:
        r2 = scores
    n = float(samples[0]) if samples.size else 0.0
    if num_regressors and num_regressors < n - 1:
        r2 = 1 - (1 - r2) * (n - 1) / (n - num_regressors - 1)
    return value_of(r2)


def finish_mean(sums: np.ndarray) -> float:
    """[total, count] -> total / count (0 when nothing counted)."""
    total, count = np.asarray(sums, np.float64)
    return float(divide_no_nan(total, count))


def finish_root_mean_squared(sums: np.ndarray) -> float:
    total, count = np.asarray(sums, np.float64)
    return math.sqrt(float(divide_no_nan(total, count)))


def auc_thresholds(num_thresholds: int = 200,
                   thresholds: Sequence[float] | None = None) -> list[float]:
    """AUC's thresholds: the given ones sorted, or num_thresholds - 2 evenly spaced, between
    -epsilon and 1 + epsilon."""
    inner = sorted(thresholds) if thresholds is not None else [
        (i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return [-EPSILON, *inner, 1.0 + EPSILON]


def constrained_thresholds(num_thresholds: int = 200) -> list[float]:
    """The thresholds of SensitivityAtSpecificity and its kind: 0, evenly spaced, 1."""
    if num_thresholds == 1:
        return [0.5]
    return [0.0, *[(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)], 1.0]

