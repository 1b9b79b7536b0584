"""Keras-facing losses: classes (MeanSquaredError, ...), functions (mean_squared_error, mse, ...)
and name resolution for `compile(loss=...)`.

A loss knows how to emit its per-sample value as IR (`Loss.ir(b, y_true, y_pred)`, from
kiln.ir.training.losses); the training step reduces it as Keras's "sum_over_batch_size".
Called on arrays, a loss computes its value eagerly through the reference runtime: a class
instance returns the reduced scalar, a function the per-sample values, as in Keras.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, Value
from kiln.ir.training import losses as ir_losses

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "none", None)


def _as_array(value: Any, float_dtype: bool) -> np.ndarray:
    array = np.asarray(value)
    if float_dtype and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    return array


def run_eager(fn: Callable[..., Value], y_true: Any, y_pred: Any,
              sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Emit `fn` on two inputs typed like the arrays and run it with the reference runtime.
    Given `sample_weight` (float32 [N]), fn also gets it: fn(b, y_true, y_pred, weights)."""
    from kiln.runtimes.reference import run_graph

    pred = _as_array(y_pred, float_dtype=True)
    true = _as_array(y_true, float_dtype=False)
    b = GraphBuilder("eager")
    t = b.input("y_true", TensorType(true.shape, str(true.dtype)))
    p = b.input("y_pred", TensorType(pred.shape, str(pred.dtype)))
    feed = {"y_true": true, "y_pred": pred}
    if sample_weight is None:
        b.output(fn(b, t, p), "out")
    else:
        w = b.input("sample_weight", TensorType(sample_weight.shape, str(sample_weight.dtype)))
        feed["sample_weight"] = sample_weight
        b.output(fn(b, t, p, w), "out")
    return run_graph(b.build(), feed)[0]["out"]


def _to_float(b: Any, y_true: Value, y_pred: Value) -> Value:
    y_true = ir_losses.match_rank(b, y_true, y_pred)
    if y_true.type.dtype != y_pred.type.dtype:
        y_true = b.cast(y_true, dtype=y_pred.type.dtype)
    return y_true


class Loss:
    """Base of the losses. Subclasses (yours too) override `ir(b, y_true, y_pred)` to emit the
    per-sample loss as IR with the builder `b`.

    `sparse` marks losses whose targets are integer class labels (the trainer checks them
    against the number of classes); `same_shape` marks losses whose targets have the
    prediction's shape (checked before training starts)."""

    sparse = False
    same_shape = True

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size",
                 dtype: str | None = None):
        if reduction not in REDUCTIONS:
            raise KilnValueError(f"Invalid value for argument `reduction`. Expected one of "
                                 f"{list(REDUCTIONS)}. Received: reduction={reduction!r}")
        self.name = name or _snake(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        raise NotImplementedError(f"{type(self).__name__}.ir")

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> np.ndarray:
        values = run_eager(self.ir, y_true, y_pred)
        if sample_weight is not None:
            w = np.asarray(sample_weight, values.dtype)
            values = values * w.reshape(w.shape + (1,) * (values.ndim - w.ndim))
        if self.reduction in ("none", None):
            return values
        if self.reduction == "sum":
            return values.sum(dtype=values.dtype)
        return values.sum(dtype=values.dtype) / values.dtype.type(max(values.size, 1))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class LossFunctionWrapper(Loss):
    """A loss made from an IR builder function `fn(b, y_true, y_pred, **kwargs)`."""

    def __init__(self, fn: Callable[..., Value], name: str | None = None,
                 reduction: str | None = "sum_over_batch_size", **kwargs: Any):
        super().__init__(name=name or fn.__name__, reduction=reduction)
        self.fn = fn
        self.fn_kwargs = kwargs

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        return self.fn(b, y_true, y_pred, **self.fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.fn_kwargs}


class MeanSquaredError(LossFunctionWrapper):
    """mean(square(y_true - y_pred), axis=-1)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "mean_squared_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_squared_error, name, reduction)


class MeanAbsoluteError(LossFunctionWrapper):
    """mean(abs(y_true - y_pred), axis=-1)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "mean_absolute_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_absolute_error, name, reduction)


class MeanAbsolutePercentageError(LossFunctionWrapper):
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "mean_absolute_percentage_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_absolute_percentage_error, name, reduction)


class MeanSquaredLogarithmicError(LossFunctionWrapper):
    """mean(square(log(y_pred + 1) - log(y_true + 1)), axis=-1), both at least 1e-7."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "mean_squared_logarithmic_error", dtype: str | None = None):
        super().__init__(ir_losses.mean_squared_logarithmic_error, name, reduction)


class Huber(LossFunctionWrapper):
    """Quadratic for errors up to `delta`, linear beyond: mean over the last axis."""

    def __init__(self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str = "huber_loss", dtype: str | None = None):
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta >= 0:
            raise KilnValueError(f"Huber: expected a number delta >= 0. "
                                 f"Received: delta={delta!r}")
        super().__init__(ir_losses.huber, name, reduction, delta=float(delta))


class LogCosh(LossFunctionWrapper):
    """mean(log(cosh(y_pred - y_true)), axis=-1)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str = "log_cosh",
                 dtype: str | None = None):
        super().__init__(ir_losses.log_cosh, name, reduction)


class KLDivergence(LossFunctionWrapper):
    """sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [1e-7, 1]."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "kl_divergence", dtype: str | None = None):
        super().__init__(ir_losses.kl_divergence, name, reduction)


class Poisson(LossFunctionWrapper):
    """mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str = "poisson",
                 dtype: str | None = None):
        super().__init__(ir_losses.poisson, name, reduction)


class Hinge(LossFunctionWrapper):
    """mean(max(1 - y_true * y_pred, 0), axis=-1); labels -1/1 (a batch of 0/1 labels is
    converted, as Keras does)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str = "hinge",
                 dtype: str | None = None):
        super().__init__(ir_losses.hinge, name, reduction)


class SquaredHinge(LossFunctionWrapper):
    """mean(square(max(1 - y_true * y_pred, 0)), axis=-1); labels as Hinge's."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "squared_hinge", dtype: str | None = None):
        super().__init__(ir_losses.squared_hinge, name, reduction)


class CategoricalHinge(LossFunctionWrapper):
    """max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis."""

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str = "categorical_hinge", dtype: str | None = None):
        super().__init__(ir_losses.categorical_hinge, name, reduction)


class CosineSimilarity(LossFunctionWrapper):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): -1 for the same direction."""

    def __init__(self, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str = "cosine_similarity", dtype: str | None = None):
        super().__init__(ir_losses.cosine_similarity_loss, name, reduction, axis=axis)


def _check_smoothing(value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise KilnValueError(f"{owner}: expected label_smoothing in [0, 1]. "
                             f"Received: label_smoothing={value!r}")
    return float(value)


def _check_axis(axis: Any, owner: str) -> None:
    if axis != -1:
        raise KilnValueError(f"{owner}: kiln supports the class axis -1 only. "
                             f"Received: axis={axis!r}")


class BinaryCrossentropy(Loss):
    """-mean(y*log(p) + (1-y)*log(1-p), axis=-1), p clipped to [1e-7, 1-1e-7]; with
    from_logits=True, the stable form on logits. label_smoothing moves targets toward 0.5."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str = "binary_crossentropy", dtype: str | None = None):
        super().__init__(name, reduction)
        _check_axis(axis, "BinaryCrossentropy")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, "BinaryCrossentropy")

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        if self.label_smoothing:
            y_true = _to_float(b, y_true, y_pred)
            y_true = b.add(b.mul(y_true, 1.0 - self.label_smoothing), 0.5 * self.label_smoothing)
        return ir_losses.binary_crossentropy(b, y_true, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(Loss):
    """-sum(y * log(p), axis=-1), p normalized and clipped; from_logits=True uses
    log_softmax. label_smoothing moves one-hot targets toward 1/num_classes."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str = "categorical_crossentropy", dtype: str | None = None):
        super().__init__(name, reduction)
        _check_axis(axis, "CategoricalCrossentropy")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, "CategoricalCrossentropy")

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        if self.label_smoothing:
            y_true = _to_float(b, y_true, y_pred)
            classes = y_pred.type.shape[-1]
            y_true = b.add(b.mul(y_true, 1.0 - self.label_smoothing),
                           self.label_smoothing / classes)
        return ir_losses.categorical_crossentropy(b, y_true, y_pred, from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(Loss):
    """Categorical crossentropy with integer class labels (shape of y_pred without its last
    axis, or with a last axis of 1)."""

    sparse = True
    same_shape = False

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = "sum_over_batch_size",
                 name: str = "sparse_categorical_crossentropy", dtype: str | None = None):
        super().__init__(name, reduction)
        if ignore_class is not None:
            raise KilnValueError("SparseCategoricalCrossentropy: ignore_class is not supported "
                                 f"by kiln yet. Received: ignore_class={ignore_class!r}")
        self.from_logits = bool(from_logits)

    def ir(self, b: Any, y_true: Value, y_pred: Value) -> Value:
        return ir_losses.sparse_categorical_crossentropy(b, y_true, y_pred,
                                                         from_logits=self.from_logits)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits}


# -- functions: per-sample values on arrays, and usable as `compile(loss=fn)` -------------
def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.mean_squared_error, y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.mean_absolute_error, y_true, y_pred)


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    return BinaryCrossentropy(from_logits, label_smoothing, axis, reduction="none")(y_true, y_pred)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    return CategoricalCrossentropy(from_logits, label_smoothing, axis,
                                   reduction="none")(y_true, y_pred)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None,
                                    axis: int = -1) -> np.ndarray:
    _check_axis(axis, "sparse_categorical_crossentropy")
    return SparseCategoricalCrossentropy(from_logits, ignore_class,
                                         reduction="none")(y_true, y_pred)


def mean_absolute_percentage_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.mean_absolute_percentage_error, y_true, y_pred)


def mean_squared_logarithmic_error(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.mean_squared_logarithmic_error, y_true, y_pred)


def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> np.ndarray:
    return Huber(delta, reduction="none")(y_true, y_pred)


def log_cosh(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.log_cosh, y_true, y_pred)


def kl_divergence(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.kl_divergence, y_true, y_pred)


def poisson(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.poisson, y_true, y_pred)


def hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.hinge, y_true, y_pred)


def squared_hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.squared_hinge, y_true, y_pred)


def categorical_hinge(y_true: Any, y_pred: Any) -> np.ndarray:
    return run_eager(ir_losses.categorical_hinge, y_true, y_pred)


def cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> np.ndarray:
    """-cosine similarity per sample (Keras's loss function of this name)."""
    return CosineSimilarity(axis, reduction="none")(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kl_divergence
bce = BCE = binary_crossentropy

_CLASSES: dict[str, type[Loss]] = {
    "mean_squared_error": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "huber": Huber,
    "log_cosh": LogCosh,
    "kl_divergence": KLDivergence,
    "poisson": Poisson,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "cosine_similarity": CosineSimilarity,
}
# Keras 3's short names (either case), then the class names.
_SHORT = ir_losses.ALIASES
_ALIASES = {**_SHORT, **{k.upper(): v for k, v in _SHORT.items()},
            **{cls.__name__: name for name, cls in _CLASSES.items()}}
_FUNCTIONS = {fn: fn.__name__ for fn in (
    mean_squared_error, mean_absolute_error, binary_crossentropy, categorical_crossentropy,
    sparse_categorical_crossentropy, mean_absolute_percentage_error,
    mean_squared_logarithmic_error, huber, log_cosh, kl_divergence, poisson, hinge,
    squared_hinge, categorical_hinge, cosine_similarity)}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def get(identifier: Any, argument: str = "loss") -> Loss | None:
    """A loss from a name ("mse", "binary_crossentropy", ...), a kiln.losses function, a
    class or an instance. `argument` names the argument in errors."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier, identifier)
        if name not in _CLASSES:
            raise KilnValueError(f"Could not interpret loss identifier: {identifier!r}. Expected "
                                 f"one of {sorted({*_CLASSES, *_SHORT})} (or a class name). "
                                 f"Received: {argument}={identifier!r}")
        loss = _CLASSES[name]()
        # A function's name (or short name) names the loss as given; a class name gives the
        # class's default name, as in Keras.
        if identifier in _CLASSES or identifier.lower() in _SHORT:
            loss.name = identifier
        return loss
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in _FUNCTIONS:
        loss = _CLASSES[_FUNCTIONS[identifier]]()
        loss.name = identifier.__name__
        return loss
    raise KilnTypeError(f"Could not interpret loss identifier: expected a loss name, a "
                        f"kiln.losses function, or a kiln.losses.Loss (subclass it and define "
                        f"`ir(b, y_true, y_pred)` for a custom loss). "
                        f"Received: {argument}={identifier!r}")


__all__ = [
    "BCE", "KLD", "MAE", "MAPE", "MSE", "MSLE", "BinaryCrossentropy", "CategoricalCrossentropy",
    "CategoricalHinge", "CosineSimilarity", "Hinge", "Huber", "KLDivergence", "LogCosh", "Loss",
    "LossFunctionWrapper", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredError",
    "MeanSquaredLogarithmicError", "Poisson", "SparseCategoricalCrossentropy", "SquaredHinge",
    "bce", "binary_crossentropy", "categorical_crossentropy", "categorical_hinge",
    "cosine_similarity", "get", "hinge", "huber", "kl_divergence", "kld", "log_cosh", "mae",
    "mape", "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_error",
    "mean_squared_logarithmic_error", "mse", "msle", "poisson", "sparse_categorical_crossentropy",
    "squared_hinge",
]
