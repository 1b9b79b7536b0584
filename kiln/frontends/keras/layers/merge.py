"""Merge layers, which take a list of tensors: Concatenate, Add, Multiply, and the functional
shortcuts concatenate, add, multiply (`layers.concatenate([a, b], axis=-1)`)."""

from __future__ import annotations

from typing import Any

from kiln.frontends.keras.layer import KerasTensor, Layer
from kiln.ir import KilnValueError


def _broadcast_shape(layer: str, shape1: tuple, shape2: tuple) -> tuple:
    """Keras's element-wise output shape: trailing axes aligned, 1 broadcasts, None unknown."""
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    if not shape2:
        return shape1
    out = list(shape1[:len(shape1) - len(shape2)])
    for i, j in zip(shape1[len(shape1) - len(shape2):], shape2):
        if i is None or j is None:
            out.append(None)
        elif i == 1 or j == 1:
            out.append(j if i == 1 else i)
        elif i != j:
            raise KilnValueError(f"layer {layer!r}: inputs have incompatible shapes. "
                                 f"Received shapes {shape1} and {shape2}")
        else:
            out.append(i)
    return tuple(out)


class _Merge(Layer):
    """Folds the inputs with one element-wise op; inputs of lower rank get axes of size 1
    inserted after the batch axis first, as Keras does."""

    multi_input = True
    op = ""

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes) < 1:
            raise KilnValueError(f"layer {self.name!r}: a merge layer should be called on a "
                                 f"list of at least 1 input. Got 0 inputs")
        batch_sizes = {s[0] for s in shapes if s} - {None}
        if len(batch_sizes) > 1:
            raise KilnValueError(f"layer {self.name!r}: cannot merge tensors with different "
                                 f"batch sizes. Got tensors with shapes {shapes}")
        out = tuple(shapes[0][1:])
        for shape in shapes[1:]:
            out = _broadcast_shape(self.name, out, tuple(shape[1:]))

    def lower(self, b, xs, ctx, **kwargs):  # noqa: ANN001, ANN201
        rank = max(x.type.rank for x in xs)
        out = None
        for x in xs:
            if x.type.rank < rank:
                x = b.expand_dims(x, axes=tuple(range(1, 1 + rank - x.type.rank)))
            out = x if out is None else b.op(self.op, out, x)
        return out


class Add(_Merge):
    """The element-wise sum of a list of inputs (of one shape, or broadcastable).

    Input shape: a list of (batch, ...) shapes. Output shape: their common shape.
    """

    op = "add"


class Multiply(_Merge):
    """The element-wise product of a list of inputs (of one shape, or broadcastable).

    Input shape: a list of (batch, ...) shapes. Output shape: their common shape.
    """

    op = "mul"


class Concatenate(Layer):
    """Joins a list of inputs along `axis` (default -1, the last).

    Input shape: a list of shapes equal except along `axis`. Output shape: the same, with the
    sizes along `axis` summed.
    """

    multi_input = True

    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise KilnValueError(f"layer {self.name!r}: expected axis as an int. "
                                 f"Received: axis={axis!r}")
        self.axis = axis

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes) < 1:
            raise KilnValueError(f"layer {self.name!r}: a `Concatenate` layer should be called "
                                 f"on a list of at least 1 input. Received: input_shape=[]")
        mismatch = KilnValueError(f"layer {self.name!r}: a `Concatenate` layer requires inputs "
                                  f"with matching shapes except for the concatenation axis. "
                                  f"Received: input_shape={[tuple(s) for s in shapes]}")
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise mismatch
        if not -rank <= self.axis < rank:
            raise KilnValueError(f"layer {self.name!r}: expected axis in [{-rank}, {rank}) for "
                                 f"inputs of rank {rank}. Received: axis={self.axis}")
        axis = self.axis % rank
        for i in range(rank):
            known = {s[i] for s in shapes if s[i] is not None}
            if i != axis and len(known) > 1:
                raise mismatch

    def lower(self, b, xs, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.concat(*xs, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


def concatenate(inputs: list[KerasTensor], axis: int = -1, **kwargs: Any) -> KerasTensor:
    """`Concatenate(axis=axis, **kwargs)(inputs)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Add(**kwargs)(inputs)`."""
    return Add(**kwargs)(inputs)


def multiply(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Multiply(**kwargs)(inputs)`."""
    return Multiply(**kwargs)(inputs)
