"""Sequential: a plain stack of layers, each with one input and one output.

The model is built (its functional graph made) as soon as the input shape is known: from a
leading `layers.Input`, an `input_shape=` on the first layer, `build(input_shape)`, or the
first batch of data given to fit/predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kiln.frontends.keras.layer import KerasTensor, Layer
from kiln.frontends.keras.layers.core import InputLayer
from kiln.frontends.keras.model import Model
from kiln.ir import KilnTypeError, KilnValueError


class Sequential(Model):
    def __init__(self, layers: Sequence[Any] | None = None, name: str | None = None,
                 **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self._stack: list[Layer] = []
        self._input_layer: InputLayer | None = None
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build()

    def add(self, layer: Any, rebuild: bool = True) -> None:
        if isinstance(layer, KerasTensor) and layer.history is not None:
            layer = layer.history[0]
        if isinstance(layer, InputLayer):
            if self._stack or self._input_layer is not None:
                raise KilnValueError("Sequential: an Input can only be the first layer")
            self._input_layer = layer
        elif isinstance(layer, Layer):
            self._stack.append(layer)
        else:
            raise KilnTypeError(f"Sequential.add expected a layer. Received: {layer!r} "
                                f"of type {type(layer).__name__}")
        if rebuild:
            self._maybe_build()

    def pop(self) -> Layer:
        if not self._stack:
            raise KilnValueError("Sequential.pop: there are no layers to remove")
        layer = self._stack.pop()
        self.built = False
        self._inputs, self._outputs, self._records = [], [], []
        self._maybe_build()
        return layer

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def _input_shape(self) -> tuple | None:
        if self._input_layer is not None:
            return self._input_layer._batch_input_shape
        if self._stack and self._stack[0]._batch_input_shape is not None:
            return self._stack[0]._batch_input_shape
        return None

    def _maybe_build(self) -> None:
        shape = self._input_shape()
        if shape is not None and self._stack:
            self.build(shape)

    def build(self, input_shape: Any = None, dtype: str | None = None) -> None:
        """Make the functional graph for inputs of `input_shape` (batch dimension included)."""
        if input_shape is None:
            input_shape = self._input_shape()
        if input_shape is None:
            raise KilnValueError(f"Sequential {self.name!r}: expected an input shape to build. "
                                 "Received: input_shape=None")
        if self._input_layer is None or self._input_layer._batch_input_shape != tuple(input_shape):
            first = self._stack[0] if self._stack else None
            dtype = dtype or (first.dtype if first is not None else "float32")
            self._input_layer = InputLayer(batch_shape=tuple(input_shape), dtype=dtype,
                                           name=self._input_layer.name if self._input_layer
                                           else None)
        x = self._input_layer.output
        for layer in self._stack:
            x = layer(x)
            if isinstance(x, list):
                raise KilnValueError(f"Sequential: layer {layer.name!r} returns several tensors; "
                                     "use the functional API for it")
        self._set_graph(self._input_layer.output, x)

    def get_config(self) -> dict[str, Any]:
        from kiln.frontends.keras.saving import sequential_config

        return sequential_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None,
                    ) -> Sequential:
        from kiln.frontends.keras.saving import sequential_from_config

        return sequential_from_config(config, custom_objects, cls)
