"""Merge layers, which take a list of tensors: Concatenate, Add, Subtract, Multiply, Average,
Maximum, Minimum, Dot, and their functional shortcuts (`layers.concatenate([a, b], axis=-1)`,
`layers.add`, ...)."""

from __future__ import annotations

from typing import Any

from kiln.frontends.keras.layer import KerasTensor, Layer, any_true, spread_mask
from kiln.ir import KilnTypeError, KilnValueError


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
    supports_masking = True
    op = ""
    #: How many inputs the layer takes: at least this many ...
    min_inputs = 1
    #: ... and at most this many (None: any number).
    max_inputs: int | None = None

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes) < self.min_inputs or (self.max_inputs is not None
                                             and len(shapes) > self.max_inputs):
            count = (f"exactly {self.min_inputs}" if self.min_inputs == self.max_inputs
                     else f"at least {self.min_inputs}")
            raise KilnValueError(f"layer {self.name!r}: a `{type(self).__name__}` layer should "
                                 f"be called on a list of {count} input(s). "
                                 f"Got {len(shapes)} inputs")
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

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        """Keras's: where every input has a mask, a step counts where any input's does."""
        if any(m is None for m in masks):
            return []
        out = masks[0]
        for m in masks[1:]:
            out = b.logical_or(out, m)
        return [out]


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


class Subtract(_Merge):
    """inputs[0] - inputs[1], of two inputs (of one shape, or broadcastable).

    Input shape: a list of two (batch, ...) shapes. Output shape: their common shape.
    """

    op = "sub"
    min_inputs = max_inputs = 2


class Maximum(_Merge):
    """The element-wise maximum of a list of inputs (of one shape, or broadcastable).

    Input shape: a list of (batch, ...) shapes. Output shape: their common shape.
    """

    op = "maximum"


class Minimum(_Merge):
    """The element-wise minimum of a list of inputs (of one shape, or broadcastable).

    Input shape: a list of (batch, ...) shapes. Output shape: their common shape.
    """

    op = "minimum"


class Average(_Merge):
    """The element-wise mean of a list of inputs (of one shape, or broadcastable): their sum,
    then divided by their number, as Keras computes it.

    Input shape: a list of (batch, ...) shapes. Output shape: their common shape.
    """

    op = "add"

    def lower(self, b, xs, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.div(super().lower(b, xs, ctx, **kwargs), float(len(xs)))


def _dot_axes(axes: Any, rank1: int, rank2: int) -> tuple[int, int]:
    """Keras's Dot axes: an int for both inputs or one per input, negatives from the end."""
    pair = (axes, axes) if isinstance(axes, int) else axes
    return pair[0] % rank1, pair[1] % rank2


class Dot(Layer):
    """The dot product of two batches of tensors along one axis of each, sample by sample
    (Keras's batch_dot): for x (batch, m, k) and y (batch, k, n) with axes=(2, 1), x @ y.

    Args: axes, an int (the same axis of both) or a pair (one per input), never the batch
    axis 0; normalize=False (True: L2-normalize each input along its axis first, which makes
    the product the cosine similarity).
    Input shape: a list of two shapes of rank >= 2, equal along the batch and the axes.
    Output shape: the first's without its axis, then the second's without its batch and axis;
    (batch,) becomes (batch, 1).
    """

    multi_input = True
    supports_masking = True  # its output has no mask

    def __init__(self, axes: Any, normalize: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, int) and not isinstance(a, bool)
                                         for a in axes):
                raise KilnValueError(f"layer {self.name!r}: invalid format for argument `axes`: "
                                     f"it should contain two integers. Received: axes={axes!r}")
            axes = list(axes)
        elif isinstance(axes, bool) or not isinstance(axes, int):
            raise KilnTypeError(f"layer {self.name!r}: invalid type for argument `axes`: it "
                                f"should be a list or an int. Received: axes={axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def check_input_shapes(self, shapes: list) -> None:
        if len(shapes) != 2:
            raise KilnValueError(f"layer {self.name!r}: a `Dot` layer should be called on a "
                                 f"list of 2 inputs. Received: {len(shapes)} inputs")
        s1, s2 = shapes
        if len(s1) < 2 or len(s2) < 2:
            raise KilnValueError(f"layer {self.name!r}: cannot do batch_dot on inputs with "
                                 f"rank < 2. Received inputs with shapes {s1} and {s2}")
        a1, a2 = _dot_axes(self.axes, len(s1), len(s2))
        if a1 == 0 or a2 == 0:
            raise KilnValueError(f"layer {self.name!r}: cannot perform batch_dot over axis 0 "
                                 f"(the batch). Received: axes={self.axes}")
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise KilnValueError(f"layer {self.name!r}: incompatible input shapes: axis values "
                                 f"{s1[a1]} (at axis {a1}) != {s2[a2]} (at axis {a2}). "
                                 f"Full input shapes: {s1}, {s2}")
        if s1[0] is not None and s2[0] is not None and s1[0] != s2[0]:
            raise KilnValueError(f"layer {self.name!r}: cannot do batch_dot on inputs with "
                                 f"different batch sizes. Received inputs with shapes {s1} "
                                 f"and {s2}")

    def lower(self, b, xs, ctx, **kwargs):  # noqa: ANN001, ANN201
        x, y = xs
        a1, a2 = _dot_axes(self.axes, x.type.rank, y.type.rank)
        if self.normalize:
            x, y = _l2_normalize(b, x, a1), _l2_normalize(b, y, a2)
        # x as (batch, rest..., k), y as (batch, k, rest...), then one batched matmul of
        # (batch, m, k) @ (batch, k, n) and the rest axes back.
        x = b.transpose(x, perm=(*[i for i in range(x.type.rank) if i != a1], a1))
        y = b.transpose(y, perm=(0, a2, *[i for i in range(1, y.type.rank) if i != a2]))
        batch, x_rest, y_rest = x.type.shape[0], x.type.shape[1:-1], y.type.shape[2:]
        k = x.type.shape[-1]
        out = b.matmul(b.reshape(x, shape=(batch, -1, k)), b.reshape(y, shape=(batch, k, -1)))
        shape = (batch, *x_rest, *y_rest)
        return b.reshape(out, shape=shape if len(shape) > 1 else (batch, 1))

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        return []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(b: Any, x: Any, axis: int) -> Any:
    """x * min(1 / sqrt(sum(x^2)), 1e7) along `axis`, as Keras's ops.normalize."""
    inverse = b.rsqrt(b.sum(b.square(x), axes=(axis,), keepdims=True))
    return b.mul(x, b.minimum(inverse, 1e7))


class Concatenate(Layer):
    """Joins a list of inputs along `axis` (default -1, the last).

    Input shape: a list of shapes equal except along `axis`. Output shape: the same, with the
    sizes along `axis` summed.
    """

    multi_input = True
    supports_masking = True

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

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        """Keras's: each input's mask spread over its elements (all True for an input
        without one), joined along the axis, then any over the last axis."""
        if all(m is None for m in masks):
            return []
        spread = []
        for x, m in zip(inputs, masks):
            if m is None:
                m = b.constant(True, "bool", shape=x.type.shape)
            elif m.type.rank < x.type.rank:
                m = spread_mask(b, m, x)
            spread.append(m)
        joined = b.concat(*spread, axis=self.axis)
        return [any_true(b, joined, -1)]

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


def subtract(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Subtract(**kwargs)(inputs)`."""
    return Subtract(**kwargs)(inputs)


def average(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Average(**kwargs)(inputs)`."""
    return Average(**kwargs)(inputs)


def maximum(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Maximum(**kwargs)(inputs)`."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    """`Minimum(**kwargs)(inputs)`."""
    return Minimum(**kwargs)(inputs)


def dot(inputs: list[KerasTensor], axes: Any = -1, **kwargs: Any) -> KerasTensor:
    """`Dot(axes=axes, **kwargs)(inputs)`."""
    return Dot(axes=axes, **kwargs)(inputs)
