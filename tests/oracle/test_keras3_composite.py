"""Custom layers made of layers against real Keras 3 (optional, as test_keras3.py): the same
class source, written once against a layers, an ops and a models module, runs as Keras and
as kiln. The weights line up in Keras's order (shapes checked, then Keras's copied over), and
both predict, train and end with the same weights."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, ops, optimizers  # noqa: E402
from tests.book_models import customer_ticket_model, text_classifier_layers  # noqa: E402
from tests.oracle.agree import assert_predicts_and_trains_alike  # noqa: E402

rng = np.random.default_rng(21)
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*does not support masking")]


def _classes(L: Any, O: Any, M: Any) -> dict[str, type]:  # noqa: N803
    TransformerEncoder, PositionalEmbedding = text_classifier_layers(L, O, M)

    class Stack(L.Layer):  # a list, a dict, an own weight, statistics, a forced mode
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.blocks = [L.Dense(4, activation="tanh"), L.Dense(3)]
            self.parts = {"norm": L.BatchNormalization(), "drop": L.Dropout(0.4)}

        def build(self, input_shape: tuple) -> None:
            self.gain = self.add_weight(shape=(3,), initializer="ones", name="gain")

        def call(self, inputs: Any) -> Any:
            h = inputs
            for block in self.blocks:
                h = block(h)
            return self.parts["drop"](self.parts["norm"](h), training=False) * self.gain

    class Encode(L.Layer):  # returns its LSTM's output, which carries the mask on
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.rnn = L.LSTM(3, return_sequences=True)

        def call(self, inputs: Any) -> Any:
            return self.rnn(inputs)

    return {"TransformerEncoder": TransformerEncoder,
            "PositionalEmbedding": PositionalEmbedding, "Stack": Stack, "Encode": Encode}


def _transformer(L: Any, O: Any, M: Any, steps: int | None = 7) -> tuple:  # noqa: N803
    c = _classes(L, O, M)
    ids = L.Input(shape=(steps,), dtype="int32")
    x = c["TransformerEncoder"](6, 8, 2)(c["PositionalEmbedding"](7, 15, 6)(ids))
    return ids, L.Dense(1)(L.GlobalMaxPooling1D()(x))


def _stack(L: Any, O: Any, M: Any) -> tuple:  # noqa: N803
    x = L.Input(shape=(5,))
    return x, L.Dense(2)(_classes(L, O, M)["Stack"]()(x))


def _encode(L: Any, O: Any, M: Any) -> tuple:  # noqa: N803
    x = L.Input(shape=(6, 2))
    h = _classes(L, O, M)["Encode"]()(L.Masking(0.0)(x))
    return x, L.Dense(1)(L.GlobalAveragePooling1D()(h))


def _pair(build: Any) -> tuple[Any, Any]:
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.Model(*build(keras.layers, keras.ops, keras))
        ours = models.Model(*build(layers, ops, models))
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape)
                                                    for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def _ids(n: int, padded: bool) -> np.ndarray:
    x = rng.integers(1, 15, (n, 7))
    if padded:
        x[: n // 2, 4:] = 0
    return x


def test_the_books_transformer_predicts_like_keras_with_padding() -> None:
    theirs, ours = _pair(_transformer)
    x = _ids(6, padded=True)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_the_books_transformer_of_any_length_predicts_and_trains_like_keras() -> None:
    theirs, ours = _pair(lambda L, O, M: _transformer(L, O, M, steps=None))  # noqa: N803
    for steps in (7, 4):
        x = _ids(6, padded=False)[:, :steps]
        np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                                   rtol=1e-4, atol=1e-5)
    assert_predicts_and_trains_alike(theirs, ours, _ids(6, padded=False)[:, :5], rng, keras,
                                     optimizers)


def test_the_books_transformer_trains_like_keras() -> None:
    # Without padding: with a fully masked query row (a padded position) Keras 3's torch
    # gradient does not match its own forward's finite differences (kiln's does, see
    # tests/frontends/keras/test_layers_composite.py), so only unpadded rows compare here.
    theirs, ours = _pair(_transformer)
    assert_predicts_and_trains_alike(theirs, ours, _ids(6, padded=False), rng, keras,
                                     optimizers)


def test_sublayers_in_lists_and_dicts_with_statistics_train_like_keras() -> None:
    theirs, ours = _pair(_stack)
    x = rng.standard_normal((8, 5)).astype("float32")
    assert_predicts_and_trains_alike(theirs, ours, x, rng, keras, optimizers, steps=3)


def test_a_sublayers_mask_comes_out_of_the_layer_as_in_keras() -> None:
    theirs, ours = _pair(_encode)
    x = rng.standard_normal((6, 6, 2)).astype("float32")
    x[:3, 4:] = 0.0
    assert_predicts_and_trains_alike(theirs, ours, x, rng, keras, optimizers)


def _subclassed(L: Any, M: Any) -> tuple[type, type]:  # noqa: N803
    class Tower(M.Model):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = [L.Dense(6, activation="relu"), L.Dense(4)]
            self.norm = L.LayerNormalization()
            self.head = L.Dense(2)

        def call(self, inputs: Any) -> Any:
            h = inputs
            for block in self.blocks:
                h = block(h)
            return self.head(self.norm(h))

    return Tower, customer_ticket_model(L, M)


def test_a_subclassed_model_predicts_and_trains_like_keras() -> None:
    keras.utils.set_random_seed(0)
    x = rng.standard_normal((8, 5)).astype("float32")
    theirs, ours = _subclassed(keras.layers, keras)[0](), _subclassed(layers, models)[0]()
    theirs(x), ours(x)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    assert_predicts_and_trains_alike(theirs, ours, x, rng, keras, optimizers, steps=3)


def test_the_books_subclassed_model_predicts_like_keras_on_a_dict() -> None:
    keras.utils.set_random_seed(0)
    x = {"title": rng.integers(0, 2, (6, 12)), "text_body": rng.integers(0, 2, (6, 12)),
         "tags": rng.integers(0, 2, (6, 4))}
    theirs, ours = _subclassed(keras.layers, keras)[1](4), _subclassed(layers, models)[1](4)
    theirs(x), ours(x)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    for mine, reference in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)
