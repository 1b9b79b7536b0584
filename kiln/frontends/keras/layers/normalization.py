"""BatchNormalization, with Keras 3's arithmetic: in training, the batch's mean and biased
variance normalize the input (gradients flow through both) and the moving statistics move
toward them; at inference, and for a layer whose `trainable` is False, the moving statistics
normalize the input."""

from __future__ import annotations

from typing import Any

from kiln.frontends.keras import initializers
from kiln.frontends.keras.layer import Layer, set_weight_options, weight_options_config
from kiln.ir import KilnTypeError, KilnValueError


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
    Call argument: training=None (the graph's mode) or a bool that forces the mode.
    Input shape: any rank. Output shape: the input's.
    """

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
        if self.scale:
            self.gamma = self.add_weight("gamma", features, self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", features, self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)
        self.moving_mean = self.add_weight("moving_mean", features, self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", features,
                                               self.moving_variance_initializer, trainable=False)

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        training = ctx.training if training is None else bool(training)
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
            mean = b.mean(x, axes=reduce, name="mean")
            variance = b.mean(b.square(b.sub(x, per_feature(mean))), axes=reduce,
                              name="variance")
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
