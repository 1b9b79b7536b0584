"""Keras masks against real Keras 3 (optional, as test_keras3.py): models whose inputs
carry a mask (Embedding(mask_zero=True), Masking) predict, train and report metrics as
Keras's do with the same weights."""

from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import layers, models, optimizers  # noqa: E402
from tests.oracle.agree import assert_predicts_and_trains_alike  # noqa: E402

rng = np.random.default_rng(3)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VOCAB, STEPS = 9, 6


def _ids(n: int) -> np.ndarray:
    """Token ids with 0 as padding: right-padded, left-padded and with holes."""
    ids = rng.integers(1, VOCAB, (n, STEPS))
    for i, row in enumerate(ids):
        kind, cut = i % 3, int(rng.integers(1, STEPS))
        if kind == 0:
            row[cut:] = 0
        elif kind == 1:
            row[:cut] = 0
        else:
            row[rng.random(STEPS) < 0.3] = 0
            row[int(rng.integers(0, STEPS))] = int(rng.integers(1, VOCAB))
    return ids


def _embedded(L, name="embedding"):  # noqa: ANN001, ANN202, N803
    ids = L.Input(shape=(STEPS,), dtype="int32")
    return ids, L.Embedding(VOCAB, 4, mask_zero=True, name=name)(ids)


def _lstm_sequences(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    return ids, L.Dense(2)(L.LSTM(3, return_sequences=True)(e))


def _gru_backwards_pooled(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    y = L.GRU(3, return_sequences=True, go_backwards=True)(e)
    return ids, L.Dense(2)(L.GlobalAveragePooling1D()(y))


def _bidirectional(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    y = L.Bidirectional(L.LSTM(3, return_sequences=True))(e)
    return ids, L.Bidirectional(L.SimpleRNN(2), merge_mode="sum")(y)


def _zero_output(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    return ids, L.Concatenate()([
        L.SimpleRNN(3, zero_output_for_mask=True)(e),
        L.GRU(2, go_backwards=True, zero_output_for_mask=True)(e),
        L.Flatten()(L.SimpleRNN(2, return_sequences=True, zero_output_for_mask=True)(e))])


def _merged_and_normalized(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    other = L.Embedding(VOCAB, 4, mask_zero=True, name="other")(ids)
    y = L.Add()([L.Dense(4, activation="relu")(e), other])
    y = L.BatchNormalization()(L.LayerNormalization()(L.Dropout(0.0)(y)))
    return ids, L.LSTM(3)(y)


def _joined_in_time(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    summary = L.Reshape((1, 4))(L.Dense(4)(L.Flatten()(e)))  # unmasked: counts everywhere
    return ids, L.SimpleRNN(3)(L.Concatenate(axis=1)([summary, e]))


def _masking(L):  # noqa: ANN001, ANN202, N803
    x = L.Input(shape=(STEPS, 3))
    return x, L.Dense(1)(L.LSTM(3, return_sequences=True)(L.Masking(mask_value=0.0)(x)))


def _self_attention(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    y = L.LayerNormalization()(L.Add()([e, L.MultiHeadAttention(2, 3)(e, e)]))
    return ids, L.GlobalAveragePooling1D()(y)


def _cross_attention(L):  # noqa: ANN001, ANN202, N803
    ids, e = _embedded(L)
    other = L.Embedding(VOCAB, 4, mask_zero=True, name="other")(ids)
    return ids, L.Concatenate()([
        L.GlobalAveragePooling1D()(L.Attention()([e, other])),
        L.GlobalAveragePooling1D()(L.AdditiveAttention()([other, e]))])


def _cross_multi_head(L):  # noqa: ANN001, ANN202, N803
    """Apart from the other attention layers: Keras's MultiHeadAttention takes the masks
    off its input tensors when it runs, so in Keras a layer that runs after it on the same
    tensors loses them (kiln's masks stay)."""
    ids, e = _embedded(L)
    other = L.Embedding(VOCAB, 4, mask_zero=True, name="other")(ids)
    return ids, L.GlobalAveragePooling1D()(L.MultiHeadAttention(1, 2)(e, other))


CASES = {
    "lstm_sequences": _lstm_sequences,
    "gru_backwards_pooled": _gru_backwards_pooled,
    "bidirectional": _bidirectional,
    "zero_output": _zero_output,
    "merged_and_normalized": _merged_and_normalized,
    "joined_in_time": _joined_in_time,
    "masking": _masking,
    "self_attention": _self_attention,
    "cross_attention": _cross_attention,
    "cross_multi_head": _cross_multi_head,
}


def _inputs(name: str, n: int) -> np.ndarray:
    if name != "masking":
        return _ids(n)
    x = rng.standard_normal((n, STEPS, 3)).astype("float32")
    x[_ids(n) == 0] = 0.0
    return x


def _pair(name: str):  # noqa: ANN202
    keras.utils.set_random_seed(0)
    theirs = keras.Model(*CASES[name](keras.layers))
    # Flatten drops the mask before the join, with Keras's warning.
    with pytest.warns(UserWarning) if name == "joined_in_time" else nullcontext():
        ours = models.Model(*CASES[name](layers))
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.mark.parametrize("name", CASES)
def test_masked_models_predict_and_train_like_keras(name: str) -> None:
    theirs, ours = _pair(name)
    assert_predicts_and_trains_alike(theirs, ours, _inputs(name, 6), rng, keras, optimizers)


def test_masked_sequence_losses_and_metrics_fit_like_keras() -> None:
    """A tagger: a loss and metrics on a masked (batch, steps, classes) output count only
    the steps that count, batch after batch, as Keras's do."""
    def build(L):  # noqa: ANN001, ANN202, N803
        ids, e = _embedded(L)
        return ids, L.Dense(3, activation="softmax")(L.GRU(4, return_sequences=True)(e))

    keras.utils.set_random_seed(0)
    theirs, ours = keras.Model(*build(keras.layers)), models.Model(*build(layers))
    ours.set_weights(theirs.get_weights())
    x, y = _ids(12), rng.integers(0, 3, (12, STEPS))
    for model, opt in ((theirs, keras.optimizers.Adam(0.05)), (ours, optimizers.Adam(0.05))):
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy", "sparse_categorical_crossentropy"])
    kwargs = dict(batch_size=5, epochs=2, shuffle=False, verbose=0, validation_data=(x, y))
    want, got = theirs.fit(x, y, **kwargs).history, ours.fit(x, y, **kwargs).history
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0),
                               theirs.evaluate(x, y, verbose=0), rtol=1e-4)
