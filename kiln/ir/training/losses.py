"""Loss functions as IR builders, following Keras 3's definitions.

Each takes (builder, y_true, y_pred) and returns the per-sample loss (the last axis
reduced, as Keras does); the training step averages it over the batch ("sum over batch
size", sample weights applied first). Probabilities are clipped to [1e-7, 1 - 1e-7] as in
Keras; `from_logits=True` uses the stable log-softmax / logits forms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.ir.errors import KilnTypeError, KilnValueError
from kiln.ir.graph import Value

EPSILON = 1e-7
LossFn = Callable[[Any, Value, Value], Value]


def match_rank(b: Any, y_true: Value, y_pred: Value) -> Value:
    """Keras's squeeze-or-expand: a [N] target against a [N, 1] prediction and back."""
    if y_true.type.rank == y_pred.type.rank - 1 and y_pred.type.shape[-1] == 1:
        return b.expand_dims(y_true, axes=(y_true.type.rank,))
    if y_true.type.rank == y_pred.type.rank + 1 and y_true.type.shape[-1] == 1:
        return b.reshape(y_true, shape=y_true.type.shape[:-1])
    return y_true


def _float_target(b: Any, y_true: Value, y_pred: Value, loss: str) -> Value:
    y_true = match_rank(b, y_true, y_pred)
    if y_true.type.rank != y_pred.type.rank:
        raise KilnTypeError(f"{loss}: expected targets of rank {y_pred.type.rank} like the "
                            f"predictions {y_pred.type}. Received: y_true: {y_true.type}")
    if y_true.type.dtype != y_pred.type.dtype:
        y_true = b.cast(y_true, dtype=y_pred.type.dtype)
    return y_true


def _last_axis_mean(b: Any, x: Value) -> Value:
    return b.mean(x, axes=(-1,)) if x.type.rank > 1 else x


def _last_axis_sum(b: Any, x: Value) -> Value:
    return b.sum(x, axes=(-1,)) if x.type.rank > 1 else x


def mean_squared_error(b: Any, y_true: Value, y_pred: Value) -> Value:
    y_true = _float_target(b, y_true, y_pred, "mean_squared_error")
    return _last_axis_mean(b, b.square(b.sub(y_pred, y_true)))


def mean_absolute_error(b: Any, y_true: Value, y_pred: Value) -> Value:
    y_true = _float_target(b, y_true, y_pred, "mean_absolute_error")
    return _last_axis_mean(b, b.abs(b.sub(y_pred, y_true)))


def binary_crossentropy(b: Any, y_true: Value, y_pred: Value, from_logits: bool = False) -> Value:
    y_true = _float_target(b, y_true, y_pred, "binary_crossentropy")
    if from_logits:
        # max(x, 0) - x*z + log(1 + exp(-|x|)): no overflow for any logit.
        x = y_pred
        per = b.add(b.sub(b.relu(x), b.mul(x, y_true)), b.log1p(b.exp(b.neg(b.abs(x)))))
    else:
        p = b.clip(y_pred, min=EPSILON, max=1 - EPSILON)
        per = b.neg(b.add(b.mul(y_true, b.log(p)),
                          b.mul(b.sub(1.0, y_true), b.log(b.sub(1.0, p)))))
    return _last_axis_mean(b, per)


def _categorical(b: Any, target: Value, y_pred: Value, from_logits: bool) -> Value:
    if from_logits:
        log_p = b.log_softmax(y_pred, axis=-1)
    else:
        p = b.div(y_pred, b.sum(y_pred, axes=(-1,), keepdims=True))
        log_p = b.log(b.clip(p, min=EPSILON, max=1 - EPSILON))
    return b.neg(b.sum(b.mul(target, log_p), axes=(-1,)))


def categorical_crossentropy(b: Any, y_true: Value, y_pred: Value,
                             from_logits: bool = False) -> Value:
    y_true = _float_target(b, y_true, y_pred, "categorical_crossentropy")
    return _categorical(b, y_true, y_pred, from_logits)


def sparse_labels(b: Any, y_true: Value, y_pred: Value, what: str) -> Value:
    """Integer class labels of rank y_pred.rank - 1 (a trailing axis of 1 is squeezed)."""
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = b.reshape(y_true, shape=y_true.type.shape[:-1])
    if y_true.type.rank != y_pred.type.rank - 1:
        raise KilnTypeError(f"{what}: expected integer labels of shape "
                            f"{list(y_pred.type.shape[:-1])}. Received: y_true: {y_true.type}")
    if y_true.type.dtype not in ("int32", "int64"):
        y_true = b.cast(y_true, dtype="int64")
    return y_true


def sparse_categorical_crossentropy(b: Any, y_true: Value, y_pred: Value,
                                    from_logits: bool = False) -> Value:
    labels = sparse_labels(b, y_true, y_pred, "sparse_categorical_crossentropy")
    depth = y_pred.type.shape[-1]
    target = b.one_hot(labels, depth=depth, dtype=y_pred.type.dtype)
    return _categorical(b, target, y_pred, from_logits)


def mean_absolute_percentage_error(b: Any, y_true: Value, y_pred: Value) -> Value:
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)."""
    y_true = _float_target(b, y_true, y_pred, "mean_absolute_percentage_error")
    diff = b.abs(b.div(b.sub(y_true, y_pred), b.maximum(b.abs(y_true), EPSILON)))
    return b.mul(_last_axis_mean(b, diff), 100.0)


def mean_squared_logarithmic_error(b: Any, y_true: Value, y_pred: Value) -> Value:
    """mean(square(log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1)), axis=-1)."""
    y_true = _float_target(b, y_true, y_pred, "mean_squared_logarithmic_error")
    first = b.log(b.add(b.maximum(y_pred, EPSILON), 1.0))
    second = b.log(b.add(b.maximum(y_true, EPSILON), 1.0))
    return _last_axis_mean(b, b.square(b.sub(first, second)))


def huber(b: Any, y_true: Value, y_pred: Value, delta: float = 1.0) -> Value:
    """mean(0.5 * e^2 where |e| <= delta, else delta * |e| - 0.5 * delta^2; axis=-1),
    e = y_pred - y_true."""
    y_true = _float_target(b, y_true, y_pred, "huber")
    dtype = np.dtype(y_pred.type.dtype).type
    error = b.sub(y_pred, y_true)
    abs_error = b.abs(error)
    linear = b.sub(b.mul(abs_error, delta), float(dtype(0.5) * dtype(delta) * dtype(delta)))
    quadratic = b.mul(b.square(error), 0.5)
    return _last_axis_mean(b, b.where(b.greater(abs_error, delta), linear, quadratic))


def log_cosh(b: Any, y_true: Value, y_pred: Value) -> Value:
    """mean(log(cosh(y_pred - y_true)), axis=-1), as x + softplus(-2x) - log(2)."""
    y_true = _float_target(b, y_true, y_pred, "log_cosh")
    x = b.sub(y_pred, y_true)
    return _last_axis_mean(b, b.sub(b.add(x, b.softplus(b.mul(x, -2.0))), math.log(2.0)))


def kl_divergence(b: Any, y_true: Value, y_pred: Value) -> Value:
    """sum(t * log(t / p), axis=-1), t and p clipped to [1e-7, 1]."""
    y_true = _float_target(b, y_true, y_pred, "kl_divergence")
    t = b.clip(y_true, min=EPSILON, max=1.0)
    p = b.clip(y_pred, min=EPSILON, max=1.0)
    return _last_axis_sum(b, b.mul(t, b.log(b.div(t, p))))


def poisson(b: Any, y_true: Value, y_pred: Value) -> Value:
    """mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1)."""
    y_true = _float_target(b, y_true, y_pred, "poisson")
    return _last_axis_mean(b, b.sub(y_pred, b.mul(y_true, b.log(b.add(y_pred, EPSILON)))))


def _hinge_labels(b: Any, y_true: Value, y_pred: Value, loss: str) -> Value:
    """Keras's conversion: when every label of the batch is 0 or 1, they become -1 and 1."""
    y_true = _float_target(b, y_true, y_pred, loss)
    binary = b.logical_or(b.equal(y_true, 0.0), b.equal(y_true, 1.0))
    others = b.sum(b.cast(b.logical_not(binary), dtype="int32"))
    return b.where(b.equal(others, 0), b.sub(b.mul(y_true, 2.0), 1.0), y_true)


def hinge(b: Any, y_true: Value, y_pred: Value) -> Value:
    """mean(max(1 - y_true * y_pred, 0), axis=-1), 0/1 labels taken as -1/1."""
    y_true = _hinge_labels(b, y_true, y_pred, "hinge")
    return _last_axis_mean(b, b.maximum(b.sub(1.0, b.mul(y_true, y_pred)), 0.0))


def squared_hinge(b: Any, y_true: Value, y_pred: Value) -> Value:
    """mean(square(max(1 - y_true * y_pred, 0)), axis=-1), 0/1 labels taken as -1/1."""
    y_true = _hinge_labels(b, y_true, y_pred, "squared_hinge")
    return _last_axis_mean(b, b.square(b.maximum(b.sub(1.0, b.mul(y_true, y_pred)), 0.0)))


def categorical_hinge(b: Any, y_true: Value, y_pred: Value) -> Value:
    """max(max((1 - t) * p, axis=-1) - sum(t * p, axis=-1) + 1, 0)."""
    y_true = _float_target(b, y_true, y_pred, "categorical_hinge")
    pos = b.sum(b.mul(y_true, y_pred), axes=(-1,))
    neg = b.max(b.mul(b.sub(1.0, y_true), y_pred), axes=(-1,))
    return b.maximum(b.add(b.sub(neg, pos), 1.0), 0.0)


def _l2_normalize(b: Any, x: Value, axis: int) -> Value:
    """x * min(rsqrt(sum(x^2, axis)), 1e7): a zero vector stays zero."""
    inv_norm = b.rsqrt(b.sum(b.square(x), axes=(axis,), keepdims=True))
    return b.mul(x, b.minimum(inv_norm, 1.0 / EPSILON))


def cosine_similarity(b: Any, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): the metric; the loss is its
    negation (`cosine_similarity_loss`)."""
    y_true = _float_target(b, y_true, y_pred, "cosine_similarity")
    if not isinstance(axis, int) or isinstance(axis, bool) \
            or not -y_pred.type.rank <= axis < y_pred.type.rank:
        raise KilnValueError(f"cosine_similarity: expected an axis of the predictions "
                             f"{y_pred.type}. Received: axis={axis!r}")
    return b.sum(b.mul(_l2_normalize(b, y_true, axis), _l2_normalize(b, y_pred, axis)),
                 axes=(axis,))


def cosine_similarity_loss(b: Any, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """-cosine_similarity: Keras's loss of that name."""
    return b.neg(cosine_similarity(b, y_true, y_pred, axis))


LOSSES: dict[str, Callable[..., Value]] = {
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "huber": huber,
    "log_cosh": log_cosh,
    "kl_divergence": kl_divergence,
    "poisson": poisson,
    "hinge": hinge,
    "squared_hinge": squared_hinge,
    "categorical_hinge": categorical_hinge,
    "cosine_similarity": cosine_similarity_loss,
}
# Keras 3's short names of losses
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
           "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
           "kld": "kl_divergence", "bce": "binary_crossentropy"}
