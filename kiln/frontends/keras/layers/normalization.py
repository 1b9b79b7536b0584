"""BatchNormalization and LayerNormalization. BatchNormalization, with Keras 3's arithmetic:
in training, the batch's mean and biased
variance normalize the input (gradients flow through both) and the moving statistics move
toward them; at inference, and for a layer whose `trainable` is False, the moving statistics
normalize the input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kiln.frontends.keras import initializers
from kiln.frontends.keras.layer import Layer, set_weight_options, spread_mask, weight_options_config
from kiln.ir import KilnTypeError, KilnValueError


def _scale_and_center(layer: Layer, shape: tuple, scale: bool, center: bool) -> None:
    """The trainable gamma (with `scale`) and beta (with `center`) of a normalization, in
    Keras's order, from the layer's initializer, regularizer and constraint arguments."""
    if scale:
        layer.gamma = layer.add_weight("gamma", shape, layer.gamma_initializer,
                                       regularizer=layer.gamma_regularizer,
                                       constraint=layer.gamma_constraint)
    if center:
        layer.beta = layer.add_weight("beta", shape, layer.beta_initializer,
                                      regularizer=layer.beta_regularizer,
                                      constraint=layer.beta_constraint)


class BatchNormalization(Layer):
    """output = (input - mean) / sqrt(variance + epsilon) * gamma + beta, per `axis` feature.

    Computed as Keras's backends do: inv = gamma / sqrt(variance + epsilon), then
    input * inv + (beta - mean * inv).

    Args: axis=-1 (the features axis), momentum=0.99, epsilon=1e-3, center=True (use beta),
    scale=True (use gamma), beta_initializer="zeros", gamma_initializer="ones",
    moving_mean_initializer="zeros", moving_variance_initializer="ones",
    beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
    gamma_constraint=None, synchronized=False (accepted; kiln trains on one device).
    Weights, in Keras's order: gamma, beta (trainable; each only when scale / center), then
    moving_mean, moving_variance (non-trainable), each of shape (features,).
    In training mode each call updates moving = moving * momentum + batch_stat * (1 - momentum).
    Call argument: training=None (the graph's mode) or a bool that forces the mode. With a
    Keras mask on the input (one axis less), training takes the batch statistics over the
    positions that count (Keras's masked moments); the output keeps the mask.
    Input shape: any rank. Output shape: the input's.
    """

    supports_masking = True
    takes_mask = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, synchronized: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        set_weight_options(self, beta_regularizer=beta_regularizer,
                           gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                           gamma_constraint=gamma_constraint)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise KilnTypeError(f"layer {self.name!r}: expected axis as an int. "
                                f"Received: axis={axis!r}")
        for name, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise KilnTypeError(f"layer {self.name!r}: expected {name} as a float. "
                                    f"Received: {name}={value!r}")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.synchronized = synchronized
        self._ndim: int | None = None

    def check_input_shapes(self, shapes: list) -> None:
        shape = shapes[0]
        if not -len(shape) <= self.axis < len(shape):
            raise KilnValueError(f"layer {self.name!r}: axis {self.axis} is out of bounds for "
                                 f"input shape {shape}. Received: axis={self.axis}")
        if shape[self.axis] is None:
            raise KilnValueError(f"layer {self.name!r}: axis {self.axis} of input tensor should "
                                 f"have a defined dimension but the layer received an input "
                                 f"with shape {shape}")
        if not self.built:
            return
        if len(shape) != self._ndim:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected ndim={self._ndim}, found ndim={len(shape)}. "
                                 f"Full shape received: {shape}")
        if shape[self.axis] != self.moving_mean.shape[0]:
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected axis {self.axis} of input shape to have "
                                 f"value {self.moving_mean.shape[0]}, but received input with "
                                 f"shape {shape}")

    def build(self, input_shape: tuple) -> None:
        self._ndim = len(input_shape)
        features = (input_shape[self.axis],)
        _scale_and_center(self, features, self.scale, self.center)
        self.moving_mean = self.add_weight("moving_mean", features, self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", features,
                                               self.moving_variance_initializer, trainable=False)

    def lower(self, b, x, ctx, training=None, keras_mask=None,  # noqa: ANN001, ANN201
              **kwargs):
        training = ctx.training if training is None else bool(training)
        mask = None if keras_mask is None else keras_mask[0]
        rank = x.type.rank
        axis = self.axis % rank
        reduce = tuple(i for i in range(rank) if i != axis)
        features = x.type.shape[axis]

        def per_feature(v):  # noqa: ANN001, ANN202
            # (features,) broadcasts against the input only when the features axis is last.
            if axis == rank - 1:
                return v
            return b.reshape(v, shape=tuple(features if i == axis else 1 for i in range(rank)))

        if training and self.trainable:
            if mask is None:
                mean = b.mean(x, axes=reduce, name="mean")
                variance = b.mean(b.square(b.sub(x, per_feature(mean))), axes=reduce,
                                  name="variance")
            else:
                mean, variance = self._masked_moments(b, x, mask, reduce, per_feature)
            for moving, batch_stat in ((self.moving_mean, mean),
                                       (self.moving_variance, variance)):
                old = ctx.value(moving)
                ctx.update(moving, b.add(b.mul(old, self.momentum),
                                         b.mul(batch_stat, 1.0 - self.momentum),
                                         name=f"{moving.name}.new"))
        else:
            mean, variance = ctx.value(self.moving_mean), ctx.value(self.moving_variance)
        inv = b.rsqrt(b.add(variance, self.epsilon))
        if self.scale:
            inv = b.mul(inv, ctx.value(self.gamma))
        shift = b.neg(b.mul(mean, inv))
        if self.center:
            shift = b.add(shift, ctx.value(self.beta))
        return b.add(b.mul(x, per_feature(inv)), per_feature(shift))

    def _masked_moments(self, b, x, mask, reduce, per_feature):  # noqa: ANN001, ANN202
        """Keras's: the mean and variance over the positions the mask keeps (the mask spread
        over the last axis), each sum over the count plus 1e-7."""
        if mask.type.rank != x.type.rank - 1:
            raise KilnValueError(f"layer {self.name!r}: the mask provided should be one "
                                 f"dimension less than the inputs. Received: mask.shape="
                                 f"{mask.type.shape}, inputs.shape={x.type.shape}")
        kept = spread_mask(b, mask, x)
        count = b.add(b.sum(b.cast(kept, dtype=x.type.dtype), axes=reduce), 1e-7)
        mean = b.div(b.sum(b.where(kept, x, 0.0), axes=reduce), count, name="mean")
        spread = b.where(kept, b.sub(x, per_feature(mean)), 0.0)
        variance = b.div(b.sum(b.square(spread), axes=reduce), count, name="variance")
        return mean, variance

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(
                    self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(
                    self.moving_variance_initializer),
                "synchronized": self.synchronized,
                **weight_options_config(self, "beta_regularizer", "gamma_regularizer",
                                        "beta_constraint", "gamma_constraint")}


class LayerNormalization(Layer):
    """output = (input - mean) / sqrt(variance + epsilon) * gamma + beta, the statistics of
    each sample over `axis` (as Keras 3 computes it: inv = gamma / sqrt(variance + epsilon),
    then input * inv + (beta - mean * inv)).

    Args: axis=-1 (an int or a list of ints: the axes normalized over, which gamma and beta
    span), epsilon=1e-3, center=True (use beta), scale=True (use gamma),
    beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
    gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, rms_scaling=False
    (Keras's deprecated mode: input / sqrt(variance + epsilon) * gamma, no beta).
    Weights: gamma, beta (each only when scale / center), of the normalized axes' shape.
    Input shape: any rank, the normalized axes known. Output shape: the input's.
    """

    supports_masking = True

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, rms_scaling: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in axis) or \
                    not axis:
                raise KilnTypeError(f"layer {self.name!r}: expected an int or a list/tuple of "
                                    f"ints for the argument 'axis'. Received: axis={axis!r}")
            self.axis: int | list[int] = list(axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = axis
        else:
            raise KilnTypeError(f"layer {self.name!r}: expected an int or a list/tuple of "
                                f"ints for the argument 'axis'. Received: axis={axis!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise KilnTypeError(f"layer {self.name!r}: expected epsilon as a float. "
                                f"Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        set_weight_options(self, beta_regularizer=beta_regularizer,
                           gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                           gamma_constraint=gamma_constraint)
        self._axes: tuple[int, ...] = ()
        self._ndim: int | None = None

    def _normalized_axes(self, shape: tuple) -> tuple[int, ...]:
        rank = len(shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        for a in axes:
            if not -rank <= a < rank:
                raise KilnValueError(f"layer {self.name!r}: axis {a} is out of bounds for "
                                     f"input shape {shape}. Received: axis={self.axis}")
        normalized = tuple(sorted({a % rank for a in axes}))
        if 0 in normalized and rank > 1:
            raise KilnValueError(f"layer {self.name!r}: kiln normalizes within each sample; "
                                 f"expected axes other than the batch axis 0. "
                                 f"Received: axis={self.axis}")
        for a in normalized:
            if shape[a] is None:
                raise KilnValueError(f"layer {self.name!r}: axis {a} of the input should have "
                                     f"a defined dimension. Received input shape {shape}")
        return normalized

    def check_input_shapes(self, shapes: list) -> None:
        axes = self._normalized_axes(shapes[0])
        if self.built and (len(shapes[0]) != self._ndim or axes != self._axes or any(
                shapes[0][a] != d for a, d in zip(axes, self._feature_shape))):
            raise KilnValueError(f"Input 0 of layer {self.name!r} is incompatible with the "
                                 f"layer: expected axes {list(self._axes)} of shape "
                                 f"{self._feature_shape} in an input of rank {self._ndim}. "
                                 f"Received input shape {shapes[0]}")

    def build(self, input_shape: tuple) -> None:
        self._ndim = len(input_shape)
        self._axes = self._normalized_axes(input_shape)
        self._feature_shape = tuple(input_shape[a] for a in self._axes)
        _scale_and_center(self, self._feature_shape, self.scale or self.rms_scaling,
                          self.center and not self.rms_scaling)

    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        rank, axes = x.type.rank, self._axes
        broadcast = tuple(x.type.shape[i] if i in axes else 1 for i in range(rank))

        def per_feature(v):  # noqa: ANN001, ANN202
            # The weights broadcast as they are when they span the trailing axes.
            if axes == tuple(range(rank - len(axes), rank)):
                return v
            return b.reshape(v, shape=broadcast)

        mean = b.mean(x, axes=axes, keepdims=True, name="mean")
        variance = b.mean(b.square(b.sub(x, mean)), axes=axes, keepdims=True,
                          name="variance")
        inv = b.rsqrt(b.add(variance, self.epsilon))
        if self.rms_scaling:
            return b.mul(b.mul(x, inv), per_feature(ctx.value(self.gamma)))
        if self.scale:
            inv = b.mul(inv, per_feature(ctx.value(self.gamma)))
        shift = b.neg(b.mul(mean, inv))
        if self.center:
            shift = b.add(shift, per_feature(ctx.value(self.beta)))
        return b.add(b.mul(x, inv), shift)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "rms_scaling": self.rms_scaling,
                **weight_options_config(self, "beta_regularizer", "gamma_regularizer",
                                        "beta_constraint", "gamma_constraint")}
