"""Embedding: a lookup table from integer ids to dense vectors, lowered to the IR's gather
(whose gradient is a scatter_add into the table)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from kiln.frontends.keras import initializers
from kiln.frontends.keras.layer import Layer, set_weight_options, weight_options_config
from kiln.ir import KilnValueError

#: Keras's short initializer names that kiln's registry spells out.
_ALIASES = {"uniform": initializers.RandomUniform, "normal": initializers.RandomNormal}


class Embedding(Layer):
    """Maps each id in [0, input_dim) to row `id` of the (input_dim, output_dim) table
    "embeddings".

    Args: input_dim (the vocabulary size), output_dim, embeddings_initializer="uniform"
    (Keras's RandomUniform(-0.05, 0.05)), embeddings_regularizer=None,
    embeddings_constraint=None, activity_regularizer=None, mask_zero=False (give the output
    a Keras mask, True where the id is not 0, which later layers take: RNNs skip the masked
    steps, pooling and attention leave them out, losses do not count them), weights=None (an
    initial table).
    `input_length` (Keras 2) is accepted and ignored with a warning, as Keras 3 does.
    Input: integer ids of any shape (batch, ...); float ids are cast to int32 first, as Keras
    does. Output shape: (batch, ..., output_dim).
    """

    supports_masking = True

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer: Any = "uniform",
                 embeddings_regularizer: Any = None, embeddings_constraint: Any = None,
                 mask_zero: bool = False, weights: Any = None, **kwargs: Any):
        input_length = kwargs.pop("input_length", None)
        super().__init__(**kwargs)
        set_weight_options(self, embeddings_regularizer=embeddings_regularizer,
                           embeddings_constraint=embeddings_constraint)
        if input_length is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.",
                          stacklevel=2)
        for value in (input_dim, output_dim):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise KilnValueError(f"layer {self.name!r}: both `input_dim` and `output_dim` "
                                     f"should be positive integers. Received: "
                                     f"input_dim={input_dim!r}, output_dim={output_dim!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self._initial_weights = None
        if weights is not None:
            table = np.asarray(weights[0] if isinstance(weights, (list, tuple)) else weights)
            if table.shape != (self.input_dim, self.output_dim):
                raise KilnValueError(f"layer {self.name!r}: expected weights of shape "
                                     f"{(self.input_dim, self.output_dim)}. "
                                     f"Received: weights of shape {table.shape}")
            self._initial_weights = table

    def build(self, input_shape: tuple) -> None:
        init = self.embeddings_initializer
        if isinstance(init, str) and init in _ALIASES:
            init = _ALIASES[init]()
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim), init,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        if self._initial_weights is not None:
            self.embeddings.assign(self._initial_weights)

    def lower(self, b, ids, ctx, **kwargs):  # noqa: ANN001, ANN201
        if ids.type.dtype not in ("int32", "int64"):
            ids = b.cast(ids, dtype="int32")
        return b.gather(ctx.value(self.embeddings), ids, axis=0)

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        return [b.logical_not(b.equal(inputs[0], 0), name="mask")] if self.mask_zero else []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "mask_zero": self.mask_zero,
                **weight_options_config(self, "embeddings_regularizer",
                                        "embeddings_constraint")}
