"""Keras-style custom layers and Lambda layers against real Keras 3 (optional, as
test_keras3.py): the same class and function source, written once against a layers module
and an ops module, runs as keras.layers + keras.ops and as kiln.layers + kiln.ops; with
Keras's weights both predict, train and end with the same weights."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, ops, optimizers  # noqa: E402
from tests.oracle.agree import assert_predicts_and_trains_alike  # noqa: E402

rng = np.random.default_rng(9)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _custom_classes(L: Any, O: Any) -> tuple[type, type]:  # noqa: N803
    class Affine(L.Layer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: tuple) -> None:
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="random_normal", name="w")
            self.b = self.add_weight(shape=(self.units,), initializer="random_uniform",
                                     name="b")

        def call(self, inputs: Any) -> Any:
            return O.tanh(inputs @ self.w + self.b) - 0.5 * O.square(self.b)

    class MaskedMean(L.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs: Any, mask: Any = None) -> Any:
            weights = O.expand_dims(O.cast(mask, inputs.dtype), -1)
            return O.sum(inputs * weights, axis=1) / (O.sum(weights, axis=1) + 1e-3)

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return None

    return Affine, MaskedMean


def _dense_and_lambdas(L: Any, O: Any) -> tuple:  # noqa: N803
    affine, _ = _custom_classes(L, O)
    x = L.Input(shape=(5, 4))
    h = affine(3)(x)
    h = L.Lambda(lambda t: O.concatenate([t, O.square(t[:, :, :2]), O.flip(t[:, :, 1:2], 1)],
                                         axis=-1))(h)
    h = L.Lambda(lambda t: O.softmax(t, axis=1) * O.logsumexp(t, axis=-1, keepdims=True))(h)
    h = L.Lambda(lambda t: O.where(t > 0.1, O.gelu(t), O.clip(t, -0.05, 0.05)) + O.std(
        t, axis=1, keepdims=True))(h)
    return x, L.Dense(2)(L.Flatten()(h))


def _masked(L: Any, O: Any) -> tuple:  # noqa: N803
    _, masked_mean = _custom_classes(L, O)
    ids = L.Input(shape=(6,), dtype="int32")
    e = L.Embedding(8, 3, mask_zero=True)(ids)
    return ids, L.Dense(2)(masked_mean()(e))


def _einsum_and_friends(L: Any, O: Any) -> tuple:  # noqa: N803
    x = L.Input(shape=(4, 3))
    y = L.Lambda(lambda t: O.einsum("bij,bkj->bik", t, O.flip(t, axis=1)))(x)
    y = L.Lambda(lambda t: O.reshape(O.transpose(t, (0, 2, 1)), (-1, 16)))(y)
    return x, L.Dense(2, activation="tanh")(L.Lambda(
        lambda t: O.sigmoid(t) * O.log1p(O.abs(t)) - O.mean(t, axis=-1, keepdims=True))(y))


CASES = {
    "dense_and_lambdas": (_dense_and_lambdas, "float"),
    "masked": (_masked, "ids"),
    "einsum_and_friends": (_einsum_and_friends, "float"),
}


@pytest.mark.parametrize("name", CASES)
def test_custom_layers_and_lambdas_predict_and_train_like_keras(name: str) -> None:
    build, kind = CASES[name]
    keras.utils.set_random_seed(0)
    theirs = keras.Model(*build(keras.layers, keras.ops))
    ours = models.Model(*build(layers, ops))
    ours.set_weights(theirs.get_weights())
    shape = theirs.inputs[0].shape[1:]
    if kind == "ids":
        x = rng.integers(0, 8, (6, *shape))
        x[:, 0] = 1 + x[:, 0] % 7  # no row without a step
    else:
        x = rng.standard_normal((6, *shape)).astype("float32")
    assert_predicts_and_trains_alike(theirs, ours, x, rng, keras, optimizers)
