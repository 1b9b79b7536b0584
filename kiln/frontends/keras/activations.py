"""Activations by name (as Keras spells them) or as callables on IR values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln.ir import KilnValueError, Value

Activation = Callable[[Any, Value], Value]


def _op(name: str, keras_name: str | None = None, **attrs: Any) -> Activation:
    def apply(b: Any, x: Value) -> Value:
        return b.op(name, x, **attrs)

    apply.__name__ = keras_name or name
    return apply


def linear(b: Any, x: Value) -> Value:
    return x


def leaky_relu(b: Any, x: Value, negative_slope: float = 0.2) -> Value:
    return b.where(b.greater(x, 0.0), x, b.mul(x, negative_slope))


def gelu(b: Any, x: Value) -> Value:
    """Keras's default gelu (approximate=False): x * (1 + erf(x / sqrt 2)) / 2, here through
    the tanh form, which is within 1e-3 of it."""
    inner = b.mul(b.add(x, b.mul(b.mul(b.square(x), x), 0.044715)), 0.7978845608028654)
    return b.mul(b.mul(x, 0.5), b.add(b.tanh(inner), 1.0))


def swish(b: Any, x: Value) -> Value:
    return b.mul(x, b.sigmoid(x))


def hard_sigmoid(b: Any, x: Value) -> Value:
    return b.clip(b.add(b.div(x, 6.0), 0.5), min=0.0, max=1.0)


def softsign(b: Any, x: Value) -> Value:
    return b.div(x, b.add(b.abs(x), 1.0))


ACTIVATIONS: dict[str, Activation] = {
    "linear": linear, "relu": _op("relu"), "sigmoid": _op("sigmoid"), "tanh": _op("tanh"),
    "softmax": _op("softmax", axis=-1), "log_softmax": _op("log_softmax", axis=-1),
    "elu": _op("elu"), "selu": _op("selu"), "softplus": _op("softplus"),
    "exponential": _op("exp", "exponential"),
    "leaky_relu": leaky_relu, "gelu": gelu, "swish": swish, "silu": swish,
    "hard_sigmoid": hard_sigmoid, "softsign": softsign,
}


def get(identifier: Any) -> Activation:
    """An activation from None (linear), a name, or a callable f(builder, value) -> value."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in ACTIVATIONS:
            raise KilnValueError(f"Unknown activation {identifier!r}; expected one of "
                                 f"{sorted(ACTIVATIONS)}. Received: activation={identifier!r}")
        return ACTIVATIONS[identifier]
    if callable(identifier):
        return identifier
    raise KilnValueError(f"Expected an activation name or callable. "
                         f"Received: activation={identifier!r}")


def name_of(activation: Activation) -> str:
    return getattr(activation, "__name__", repr(activation))
