"""Activations by name (as Keras spells them) or as callables on IR values."""

from __future__ import annotations

import math
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


# Abramowitz & Stegun 7.1.26: |erf(z) - approximation| < 1.5e-7 for every z.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(b: Any, z: Value) -> Value:
    """erf(z) from element-wise ops: sign(z) * (1 - poly(t) * exp(-z^2)), t = 1/(1 + p|z|)."""
    a = b.abs(z)
    t = b.reciprocal(b.add(b.mul(a, _ERF_P), 1.0))
    poly = b.mul(t, _ERF_A[-1])  # Horner: t * (a1 + t * (a2 + ... + t * a5))
    for coefficient in reversed(_ERF_A[:-1]):
        poly = b.mul(b.add(poly, coefficient), t)
    tail = b.mul(poly, b.exp(b.neg(b.square(a))))
    return b.mul(b.sign(z), b.sub(1.0, tail))


def gelu(b: Any, x: Value) -> Value:
    """Keras's default gelu (approximate=False): x * (1 + erf(x / sqrt 2)) / 2."""
    return b.mul(b.mul(x, 0.5), b.add(erf(b, b.mul(x, 0.7071067811865476)), 1.0))


def gelu_tanh(b: Any, x: Value) -> Value:
    """gelu's tanh approximation (Keras's ops.gelu default, ONNX's approximate="tanh"):
    x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2."""
    inner = b.mul(b.add(x, b.mul(b.pow(x, 3.0), 0.044715)), math.sqrt(2.0 / math.pi))
    return b.mul(b.mul(x, 0.5), b.add(b.tanh(inner), 1.0))


def swish(b: Any, x: Value) -> Value:
    return b.mul(x, b.sigmoid(x))


def hard_sigmoid(b: Any, x: Value) -> Value:
    return b.clip(b.add(b.div(x, 6.0), 0.5), min=0.0, max=1.0)


def softsign(b: Any, x: Value) -> Value:
    return b.div(x, b.add(b.abs(x), 1.0))


def relu6(b: Any, x: Value) -> Value:
    return b.clip(x, min=0.0, max=6.0)


def hard_silu(b: Any, x: Value) -> Value:
    return b.mul(x, hard_sigmoid(b, x))


def hard_tanh(b: Any, x: Value) -> Value:
    return b.clip(x, min=-1.0, max=1.0)


def log_sigmoid(b: Any, x: Value) -> Value:
    return b.neg(b.softplus(b.neg(x)))


def mish(b: Any, x: Value) -> Value:
    return b.mul(x, b.tanh(b.softplus(x)))


def celu(b: Any, x: Value) -> Value:
    """max(0, x) + alpha * min(0, exp(x / alpha) - 1), alpha = 1 (Keras's default)."""
    return b.add(b.relu(x), b.minimum(b.sub(b.exp(x), 1.0), 0.0))


def tanh_shrink(b: Any, x: Value) -> Value:
    return b.sub(x, b.tanh(x))


def squareplus(b: Any, x: Value) -> Value:
    """(x + sqrt(x^2 + 4)) / 2 (Keras's default b = 4)."""
    return b.mul(b.add(x, b.sqrt(b.add(b.square(x), 4.0))), 0.5)


def soft_shrink(b: Any, x: Value) -> Value:
    """x - 0.5 above 0.5, x + 0.5 below -0.5, 0 between (threshold 0.5)."""
    return b.where(b.greater(x, 0.5), b.sub(x, 0.5),
                   b.where(b.less(x, -0.5), b.add(x, 0.5), 0.0))


def hard_shrink(b: Any, x: Value) -> Value:
    """x where |x| > 0.5, else 0 (threshold 0.5)."""
    return b.where(b.greater(b.abs(x), 0.5), x, 0.0)


def sparse_plus(b: Any, x: Value) -> Value:
    """0 at or below -1, x at or above 1, (x + 1)^2 / 4 between."""
    middle = b.mul(b.square(b.add(x, 1.0)), 0.25)
    return b.where(b.less(x, 1.0), b.where(b.greater(x, -1.0), middle, 0.0), x)


def sparse_sigmoid(b: Any, x: Value) -> Value:
    """clip((x + 1) / 2, 0, 1)."""
    return b.clip(b.mul(b.add(x, 1.0), 0.5), min=0.0, max=1.0)


def glu(b: Any, x: Value) -> Value:
    """a * sigmoid(g), where a and g are the halves of the last axis."""
    size = x.type.shape[-1]
    if not isinstance(size, int) or size % 2:
        raise KilnValueError(f"glu: expected the last axis of even, known size. "
                             f"Received: {x.type}")
    a, g = b.split(x, axis=-1, sizes=(size // 2, size // 2))
    return b.mul(a, b.sigmoid(g))


ACTIVATIONS: dict[str, Activation] = {
    "linear": linear, "relu": _op("relu"), "sigmoid": _op("sigmoid"), "tanh": _op("tanh"),
    "softmax": _op("softmax", axis=-1), "log_softmax": _op("log_softmax", axis=-1),
    "elu": _op("elu"), "selu": _op("selu"), "softplus": _op("softplus"),
    "exponential": _op("exp", "exponential"),
    "leaky_relu": leaky_relu, "gelu": gelu, "swish": swish, "silu": swish,
    "hard_sigmoid": hard_sigmoid, "softsign": softsign, "relu6": relu6,
    "hard_silu": hard_silu, "hard_swish": hard_silu, "hard_tanh": hard_tanh,
    "log_sigmoid": log_sigmoid, "mish": mish, "celu": celu, "tanh_shrink": tanh_shrink,
    "squareplus": squareplus, "soft_shrink": soft_shrink, "hard_shrink": hard_shrink,
    "sparse_plus": sparse_plus, "sparse_sigmoid": sparse_sigmoid, "glu": glu,
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
