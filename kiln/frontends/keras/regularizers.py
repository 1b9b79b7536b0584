"""Keras 3's regularizers: penalties on a weight or a layer's output, added to the loss.

A regularizer here is called on the IR value it penalizes, `regularizer(b, x)`, and returns
a scalar of x's dtype; a custom one is any callable f(builder, value) -> scalar value, as an
activation is. What fit does with them (as Keras 3): the loss a training or test step
reports and differentiates is the compiled loss plus every penalty of the model's
trainable weights (kernel_regularizer, bias_regularizer, ... of each layer) plus each
activity penalty of a layer's outputs (activity_regularizer), the latter divided by the
output's batch size. Prediction computes none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kiln.frontends.keras import objects
from kiln.ir import KilnValueError, Value

Penalty = Callable[[Any, Value], Value]


def _factor(value: Any, name: str) -> float:
    """Keras's validate_float_arg: a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value) \
            or math.isnan(value) or value < 0:
        raise KilnValueError(f"Invalid value for argument {name}: expected a non-negative "
                             f"float. Received: {name}={value!r}")
    return float(value)


class Regularizer(objects.Configurable):
    """Base class: subclasses define `__call__(b, x)` (a scalar penalty of the value x) and
    `get_config()` (their constructor's arguments)."""

    def __call__(self, b: Any, x: Value) -> Value:
        return b.constant(0.0, x.type.dtype)



class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x**2); both factors default to 0, as in Keras."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, b: Any, x: Value) -> Value:
        penalty = b.constant(0.0, x.type.dtype)
        if self.l1 != 0.0:
            penalty = b.add(penalty, b.mul(b.sum(b.abs(x)), self.l1))
        if self.l2 != 0.0:
            penalty = b.add(penalty, b.mul(b.sum(b.square(x)), self.l2))
        return penalty

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum(|x|)."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def __call__(self, b: Any, x: Value) -> Value:
        return b.mul(b.sum(b.abs(x)), self.l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(x**2)."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, b: Any, x: Value) -> Value:
        return b.mul(b.sum(b.square(x)), self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean |<u_i, u_j>| over pairs i < j of the L2-normalized rows (mode="rows")
    or columns (mode="columns") of a rank-2 weight; Keras's normalization, x * min(1 /
    ||x||, 1e7)."""

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        self.factor = _factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise KilnValueError(f"Invalid value for argument `mode`. Expected one of "
                                 f"{{'rows', 'columns'}}. Received: mode={mode!r}")
        self.mode = mode

    def __call__(self, b: Any, x: Value) -> Value:
        if x.type.rank != 2 or not all(isinstance(d, int) for d in x.type.shape):
            raise KilnValueError(f"Inputs to OrthogonalRegularizer must have rank 2 and a "
                                 f"known shape. Received: inputs.shape={x.type.shape}")
        axis = 1 if self.mode == "rows" else 0
        size = x.type.shape[1 - axis]
        inverse = b.minimum(b.rsqrt(b.sum(b.square(x), axes=[axis], keepdims=True)), 1e7)
        unit = b.mul(x, inverse)
        vectors = unit if axis == 1 else b.transpose(unit, perm=[1, 0])
        product = b.matmul(vectors, b.transpose(vectors, perm=[1, 0]))
        off_diagonal = b.mul(product, b.constant(1.0 - np.eye(size), x.type.dtype))
        # Keras divides by the pair count even when it is 0 (one vector): NaN there too.
        pairs = size * (size - 1.0) / 2.0
        return b.div(b.mul(b.sum(b.abs(off_diagonal)), self.factor * 0.5),
                     pairs if pairs else float("nan"))

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}


# Keras's lower-case aliases are the classes themselves.
l1, l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, OrthogonalRegularizer

_CLASSES: dict[str, type[Regularizer]] = {
    c.__name__: c for c in (Regularizer, L1, L2, L1L2, OrthogonalRegularizer)}
_NAMES = {**_CLASSES, "regularizer": Regularizer, "l1": L1, "l2": L2, "l1_l2": L1L2,
          "orthogonal_regularizer": OrthogonalRegularizer}


def serialize(regularizer: Any) -> Any:
    """None, {"class_name": ..., "config": ...}, or a plain callable as it is."""
    return objects.serialize(regularizer, Regularizer)


def get(identifier: Any, what: str = "regularizer") -> Penalty | None:
    """A regularizer from None, a name ("l2", "L1L2"), a class, an instance, a serialized
    {"class_name": ..., "config": ...}, or a callable f(builder, value) -> scalar value."""
    return objects.get(identifier, Regularizer, _CLASSES, _NAMES, "regularizer", what)


deserialize = get

__all__ = ["L1", "L1L2", "L2", "OrthogonalRegularizer", "Regularizer", "deserialize", "get",
           "l1", "l1_l2", "l2", "orthogonal_regularizer", "serialize"]
