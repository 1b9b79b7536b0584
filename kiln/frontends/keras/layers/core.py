"""Core layers: Input, Dense, Activation, Dropout, Flatten, Reshape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kiln.frontends.keras import activations
from kiln.frontends.keras.layer import KerasTensor, Layer, _shape_arg
from kiln.ir import KilnValueError
from kiln.ir.types import canonical_dtype


class InputLayer(Layer):
    """The layer behind `Input`: it holds the batch input shape and emits nothing."""

    def __init__(self, shape: Sequence[int | None] | None = None, batch_size: int | None = None,
                 dtype: str | None = None, name: str | None = None,
                 batch_shape: Sequence[int | None] | None = None, **kwargs: Any):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise KilnValueError("Input: expected shape= (without the batch dimension). "
                                     "Received: shape=None")
            batch_shape = (batch_size, *_shape_arg(shape, "shape", self.name))
        self._batch_input_shape = tuple(batch_shape)
        self.built = True
        self.output = KerasTensor(self._batch_input_shape, self.dtype, self.name, (self, 0, 0))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "batch_shape": list(self._batch_input_shape)}


def Input(shape: Sequence[int | None] | None = None, batch_size: int | None = None,  # noqa: N802
          dtype: str | None = None, name: str | None = None,
          batch_shape: Sequence[int | None] | None = None) -> KerasTensor:
    """A symbolic input of `shape` (without the batch dimension), as keras.Input."""
    return InputLayer(shape, batch_size, canonical_dtype(dtype or "float32"), name,
                      batch_shape).output


class Dense(Layer):
    """output = activation(dot(input, kernel) + bias), on the last axis of any rank >= 2.

    Args: units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
    bias_initializer="zeros". Input shape: (batch, ..., input_dim). Output: (batch, ..., units).
    """

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise KilnValueError(f"Received an invalid value for `units`, expected a positive "
                                 f"integer. Received: units={units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if len(shape) < 2:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected min_ndim=2, found ndim={len(shape)}. "
                                 f"Full shape received: {shape}")
        if shape[-1] is None:
            raise KilnValueError(f"layer {self.name!r}: the last dimension of the input must be "
                                 f"known. Received: shape={shape}")
        if self.built and shape[-1] != self.kernel.shape[0]:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                                 f"expected axis -1 of input shape to have value "
                                 f"{self.kernel.shape[0]}, but received input with shape {shape}")

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                      self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        y = b.matmul(x, ctx.value(self.kernel))
        if self.use_bias:
            y = b.add(y, ctx.value(self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias}
