"""Noise and structured-dropout layers, as Keras 3's: GaussianNoise, GaussianDropout,
AlphaDropout, SpatialDropout1D, SpatialDropout2D.

Each is the identity at inference and draws its noise in training from the model's one seed
state, on a stream of its own (as Dropout does), so `kiln.utils.set_random_seed` makes a run
reproducible. The draws are kiln's, not Keras's: the same seed gives other numbers, of the
same distribution.
"""

from __future__ import annotations

import math
from typing import Any

from kiln.frontends.keras.layer import Layer, fraction_arg
from kiln.frontends.keras.layers.core import Dropout, _data_format
from kiln.ir import KilnValueError


def _training(ctx: Any, training: Any) -> bool:
    return ctx.training if training is None else bool(training)


class GaussianNoise(Layer):
    """In training, adds zero-centred Gaussian noise of standard deviation `stddev`.

    Args: stddev in [0, 1]; seed (accepted: kiln draws from the model's seed state).
    Call argument: training=None or a bool. Input shape: any. Output shape: the input's.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.stddev = fraction_arg(stddev, "stddev", self.name, below_one=False)
        self.seed = seed

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        if not _training(ctx, training) or self.stddev == 0:
            return x
        key, stream = ctx.random_stream(self)
        noise = b.normal(key, shape=x.type.shape, mean=0.0, stddev=self.stddev,
                         dtype=x.type.dtype, stream=stream, name="noise")
        return b.add(x, noise)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """In training, multiplies by Gaussian noise of mean 1 and standard deviation
    sqrt(rate / (1 - rate)).

    Args: rate in [0, 1); seed (accepted). Call argument: training=None or a bool.
    """

    supports_masking = True
    position_wise = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = fraction_arg(rate, "rate", self.name)
        self.seed = seed

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        if not _training(ctx, training) or self.rate == 0:
            return x
        key, stream = ctx.random_stream(self)
        noise = b.normal(key, shape=x.type.shape, mean=1.0,
                         stddev=math.sqrt(self.rate / (1.0 - self.rate)),
                         dtype=x.type.dtype, stream=stream, name="noise")
        return b.mul(x, noise)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# SELU's constants: AlphaDropout sets dropped units to its negative saturation value.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class AlphaDropout(Dropout):
    """Dropout for self-normalizing (SELU) networks: in training, a dropped unit becomes
    SELU's negative saturation value -alpha * scale, then an affine map a * x + b keeps the
    mean and variance of the input.

    Args: rate in [0, 1); noise_shape=None (as Dropout's); seed (accepted).
    """

    def lower(self, b, x, ctx, training=None, **kwargs):  # noqa: ANN001, ANN201
        if not _training(ctx, training) or self.rate == 0:
            return x
        rate, saturation = self.rate, -_SELU_ALPHA * _SELU_SCALE
        key, stream = ctx.random_stream(self)
        kept = b.bernoulli(key, shape=self._mask_shape(x), p=1.0 - rate, stream=stream,
                           name="mask")
        a = ((1 - rate) * (1 + rate * saturation ** 2)) ** -0.5
        shifted = -a * saturation * rate
        return b.add(b.mul(b.where(kept, x, saturation), a), shifted)


class SpatialDropout1D(Dropout):
    """Dropout of whole feature maps of a sequence: one draw per (sample, channel), shared by
    every step.

    Args: rate in [0, 1); seed (accepted). Input shape: (batch, steps, channels).
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        super().__init__(rate, noise_shape=(None, 1, None), seed=seed, **kwargs)

    def check_input_shapes(self, shapes: list) -> None:
        _expect_ndim(self, shapes[0], 3)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["noise_shape"]
        return config


class SpatialDropout2D(Dropout):
    """Dropout of whole feature maps of an image: one draw per (sample, channel), shared by
    every row and column.

    Args: rate in [0, 1); data_format=None (channels_last); seed (accepted).
    Input shape: (batch, rows, cols, channels), or (batch, channels, rows, cols).
    """

    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None,
                 **kwargs: Any):
        fmt = _data_format(data_format, kwargs.get("name") or "spatial_dropout2d")
        shape = (None, None, 1, 1) if fmt == "channels_first" else (None, 1, 1, None)
        super().__init__(rate, noise_shape=shape, seed=seed, **kwargs)
        self.data_format = fmt

    def check_input_shapes(self, shapes: list) -> None:
        _expect_ndim(self, shapes[0], 4)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["noise_shape"]
        return {**config, "data_format": self.data_format}


def _expect_ndim(layer: Layer, shape: tuple, ndim: int) -> None:
    if len(shape) != ndim:
        raise KilnValueError(f"Input 0 of layer {layer.name!r} is incompatible with the layer: "
                             f"expected ndim={ndim}, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")
