"""Activation layers with arguments, as Keras 3's: ReLU, LeakyReLU, PReLU, ELU, Softmax.

Each lowers to the IR's element-wise ops (Softmax over several axes to a max, exp, sum and
divide), so every backend runs it and differentiates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras import initializers
from kiln.frontends.keras.layer import Layer, set_weight_options, weight_options_config
from kiln.ir import GraphBuilder, KilnValueError, Value

#: The score Keras's Softmax gives masked positions (before the softmax).
MASKED_SCORE = -1e9


def _number(value: Any, name: str, layer: str, allow_none: bool = False) -> float | None:
    """A real number >= 0 (or None where `allow_none`), as Keras's argument checks ask."""
    if value is None and allow_none:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer))
            or not value >= 0):
        raise KilnValueError(f"layer {layer!r}: `{name}` cannot be None or a negative value; "
                             f"expected a float >= 0. Received: {name}={value!r}")
    return float(value)


def _axes(value: Any, layer: str) -> int | tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(a, int) and not isinstance(a, bool) for a in value):
            raise KilnValueError(f"layer {layer!r}: expected axis as an int or a non-empty "
                                 f"list of ints. Received: axis={value!r}")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise KilnValueError(f"layer {layer!r}: expected axis as an int or a list of ints. "
                             f"Received: axis={value!r}")
    return value


def relu(b: Any, x: Any, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> Any:
    """Keras's relu with its options: x above `threshold` (clipped at `max_value`), below it
    negative_slope * (x - threshold)."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return b.relu(x)
    above = b.greater(x, threshold)
    positive = x if max_value is None else b.minimum(x, max_value)
    if negative_slope == 0:
        negative = 0.0
    else:
        negative = b.mul(b.sub(x, threshold), negative_slope)
    return b.where(above, positive, negative)


class ReLU(Layer):
    """max(x, 0), or with options: `max_value` caps the output, values at or below
    `threshold` become negative_slope * (x - threshold).

    Args: max_value=None (>= 0), negative_slope=0.0 (>= 0), threshold=0.0 (>= 0).
    Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_value = _number(max_value, "max_value", self.name, allow_none=True)
        self.negative_slope = _number(negative_slope, "negative_slope", self.name)
        self.threshold = _number(threshold, "threshold", self.name)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return relu(b, x, self.negative_slope, self.max_value, self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise.

    Args: negative_slope=0.3 (>= 0; Keras 2's `alpha` is accepted for it).
    Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _number(negative_slope, "negative_slope", self.name)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return relu(b, x, self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """x for x > 0, alpha * (exp(x) - 1) otherwise.

    Args: alpha=1.0. Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, alpha: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
            raise KilnValueError(f"layer {self.name!r}: expected alpha as a float. "
                                 f"Received: alpha={alpha!r}")
        self.alpha = float(alpha)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.elu(x, alpha=self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """relu(x) - alpha * relu(-x), with a learned alpha per element (shared along
    `shared_axes`).

    Args: alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
    shared_axes=None (axes, counted with the batch axis as 0, along which one alpha serves).
    Weights: alpha, of the input's shape without the batch axis, 1 along the shared axes.
    Input shape: any, every non-batch axis known. Output shape: the input's.
    """

    supports_masking = True

    def __init__(self, alpha_initializer: Any = "zeros", alpha_regularizer: Any = None,
                 alpha_constraint: Any = None, shared_axes: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        set_weight_options(self, alpha_regularizer=alpha_regularizer,
                           alpha_constraint=alpha_constraint)
        self.alpha_initializer = alpha_initializer
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1
                       for a in axes):
                raise KilnValueError(f"layer {self.name!r}: expected shared_axes as ints >= 1 "
                                     f"(axis 0 is the batch). Received: "
                                     f"shared_axes={shared_axes!r}")
            self.shared_axes = list(axes)

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        shared = set(self.shared_axes or ())
        if any(a >= len(shape) for a in shared):
            raise KilnValueError(f"layer {self.name!r}: shared_axes {self.shared_axes} out of "
                                 f"range for an input of rank {len(shape)}")
        unknown = [i for i, d in enumerate(shape) if i > 0 and d is None and i not in shared]
        if unknown:
            raise KilnValueError(f"layer {self.name!r}: alpha needs the size of axis "
                                 f"{unknown[0]}; give it a known size or list it in "
                                 f"shared_axes. Received input shape {shape}")
        if self.built:
            want = self._alpha_shape(shape)
            if tuple(want) != tuple(self.alpha.shape):
                raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with "
                                     f"the layer: its alpha has shape {self.alpha.shape}, "
                                     f"which does not fit input shape {shape}")

    def _alpha_shape(self, shape: Sequence[int | None]) -> tuple[int, ...]:
        shared = set(self.shared_axes or ())
        return tuple(1 if i in shared else d for i, d in enumerate(shape) if i > 0)

    def build(self, input_shape: tuple) -> None:
        self.alpha = self.add_weight("alpha", self._alpha_shape(input_shape),
                                     self.alpha_initializer,
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        negative = b.mul(ctx.value(self.alpha), b.relu(b.neg(x)))
        return b.sub(b.relu(x), negative)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                **weight_options_config(self, "alpha_regularizer", "alpha_constraint"),
                "shared_axes": self.shared_axes}


def softmax_over(b: Any, x: Any, axes: tuple[int, ...]) -> Any:
    """Softmax over `axes` jointly: the IR's softmax for one axis, else exp(x - max) over
    its sum."""
    if len(axes) == 1:
        return b.softmax(x, axis=axes[0])
    axes = tuple(sorted({a % x.type.rank for a in axes}))
    e = b.exp(b.sub(x, b.max(x, axes=axes, keepdims=True)))
    return b.div(e, b.sum(e, axes=axes, keepdims=True))


def masked_softmax(b: GraphBuilder, x: Value, allowed: Value | None,
                   axes: tuple[int, ...], zero_masked: bool = True) -> Value:
    """Keras's softmax with a mask: scores MASKED_SCORE where not `allowed` (bool,
    broadcasting against x), and with `zero_masked` probability 0 there after (so a fully
    masked row is 0; without, it is uniform)."""
    if allowed is None:
        return softmax_over(b, x, axes)
    probs = softmax_over(b, b.where(allowed, x, MASKED_SCORE), axes)
    return b.where(allowed, probs, 0.0) if zero_masked else probs


class Softmax(Layer):
    """exp(x) / sum(exp(x)) along `axis`; over several axes jointly when `axis` is a list.

    Args: axis=-1, an int or a list of ints. Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    takes_mask = True

    def __init__(self, axis: Any = -1, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = _axes(axis, self.name)

    def check_input_shapes(self, shapes: list) -> None:
        rank = len(shapes[0])
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if not all(-rank <= a < rank for a in axes):
            raise KilnValueError(f"layer {self.name!r}: axis {self.axis} out of range for an "
                                 f"input of rank {rank}")

    def lower(self, b, x, ctx, keras_mask=None, **kwargs):  # noqa: ANN001, ANN201
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        mask = None if keras_mask is None else keras_mask[0]
        if mask is None:
            return softmax_over(b, x, axes)
        shape, dims = x.type.shape, mask.type.shape
        if len(dims) > len(shape) or any(m not in (1, i)
                                         for m, i in zip(dims[::-1], shape[::-1])):
            raise KilnValueError(f"layer {self.name!r}: the mask must be broadcastable to the "
                                 f"inputs, each mask dimension 1 or the input's (aligned from "
                                 f"the last). Received: inputs.shape={shape}, "
                                 f"mask.shape={dims}")
        allowed = mask if mask.type.dtype == "bool" else b.greater(mask, 0.5)
        return masked_softmax(b, x, allowed, axes)

    def get_config(self) -> dict[str, Any]:
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return {**super().get_config(), "axis": axis}
