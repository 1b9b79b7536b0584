"""Loss functions as IR builders, following Keras 3's definitions.

Each takes (builder, y_true, y_pred) and returns the per-sample loss (the last axis
reduced, as Keras does); the training step averages it over the batch ("sum over batch
size", sample weights applied first). Probabilities are clipped to [1e-7, 1 - 1e-7] as in
Keras; `from_logits=True` uses the stable log-softmax / logits forms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln.ir.errors import KilnTypeError
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


LOSSES: dict[str, Callable[..., Value]] = {
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
