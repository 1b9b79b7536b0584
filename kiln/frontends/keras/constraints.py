"""Keras 3's weight constraints: a projection applied to a weight after each optimizer step.

A constraint here is called on the IR value of the updated weight, `constraint(b, w)`, and
returns the value stored instead; a custom one is any callable f(builder, value) -> value of
the same type. The training step applies each trainable weight's constraint right after the
optimizer's update, as Keras 3's optimizer does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kiln.frontends.keras import objects
from kiln.ir import KilnValueError, Value

Projection = Callable[[Any, Value], Value]
EPSILON = 1e-7  # Keras's backend.epsilon(), added to the norms


def _axes(axis: Any) -> Any:
    """An int or a list of ints, as Keras takes `axis` (tuples kept as lists for configs)."""
    if isinstance(axis, (list, tuple)):
        return [int(a) for a in axis]
    return int(axis)


def _norms(b: Any, w: Value, axis: Any) -> Value:
    axes = axis if isinstance(axis, list) else [axis]
    rank = w.type.rank
    for a in axes:
        if not -rank <= a < rank:
            raise KilnValueError(f"constraint: axis {a} is out of range for a weight of shape "
                                 f"{w.type.shape}. Received: axis={axis!r}")
    return b.sqrt(b.sum(b.square(w), axes=axes, keepdims=True))


class Constraint(objects.Configurable):
    """Base class: subclasses define `__call__(b, w)` (the projected weight) and
    `get_config()` (their constructor's arguments). The base leaves w as it is."""

    def __call__(self, b: Any, w: Value) -> Value:
        return w



class MaxNorm(Constraint):
    """Scales each slice along `axis` (a Dense kernel's columns at axis=0; a Conv2D filter at
    axis=[0, 1, 2]) so its L2 norm is at most max_value: w * clip(n, 0, max) / (eps + n)."""

    def __init__(self, max_value: float = 2, axis: int | Sequence[int] = 0):
        self.max_value = max_value
        self.axis = _axes(axis)

    def __call__(self, b: Any, w: Value) -> Value:
        norms = _norms(b, w, self.axis)
        desired = b.clip(norms, min=0.0, max=float(self.max_value))
        return b.mul(w, b.div(desired, b.add(norms, EPSILON)))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves each slice's norm n towards [min_value, max_value]: the slice is scaled to
    rate * clip(n, min, max) + (1 - rate) * n, over (eps + n)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | Sequence[int] = 0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = _axes(axis)

    def __call__(self, b: Any, w: Value) -> Value:
        norms = _norms(b, w, self.axis)
        clipped = b.clip(norms, min=float(self.min_value), max=float(self.max_value))
        desired = b.add(b.mul(clipped, float(self.rate)), b.mul(norms, 1.0 - self.rate))
        return b.mul(w, b.div(desired, b.add(norms, EPSILON)))

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class NonNeg(Constraint):
    """max(w, 0)."""

    def __call__(self, b: Any, w: Value) -> Value:
        return b.maximum(w, 0.0)


class UnitNorm(Constraint):
    """Each slice along `axis` divided by (eps + its L2 norm)."""

    def __init__(self, axis: int | Sequence[int] = 0):
        self.axis = _axes(axis)

    def __call__(self, b: Any, w: Value) -> Value:
        return b.div(w, b.add(_norms(b, w, self.axis), EPSILON))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


# Keras's lower-case aliases are the classes themselves.
max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm

_CLASSES: dict[str, type[Constraint]] = {
    c.__name__: c for c in (Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)}
_NAMES = {**_CLASSES, "constraint": Constraint, "max_norm": MaxNorm,
          "min_max_norm": MinMaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm}


def serialize(constraint: Any) -> Any:
    """None, {"class_name": ..., "config": ...}, or a plain callable as it is."""
    return objects.serialize(constraint, Constraint)


def get(identifier: Any, what: str = "constraint") -> Projection | None:
    """A constraint from None, a name ("max_norm", "NonNeg"), a class, an instance, a
    serialized {"class_name": ..., "config": ...}, or a callable f(builder, value) -> value."""
    return objects.get(identifier, Constraint, _CLASSES, _NAMES, "constraint", what)


deserialize = get

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize", "get",
           "max_norm", "min_max_norm", "non_neg", "serialize", "unit_norm"]
