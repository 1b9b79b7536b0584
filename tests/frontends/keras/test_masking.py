"""Keras masks: made by Embedding(mask_zero=True) and Masking, passed on by the layers that
support masking, taken by the recurrent, pooling, normalization and attention layers and by
the losses and metrics; checked against NumPy and against the same layers run on the
unpadded sequences. (tests/oracle/test_keras3_masks.py checks them against Keras itself.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from kiln.ir.types import numpy_dtype
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(7)
STEPS, FEATURES = 5, 3
LENGTHS = np.array([5, 3, 1, 4])  # the steps that count in each row


def padded(lengths: np.ndarray = LENGTHS, left: bool = False) -> np.ndarray:
    """Random sequences whose steps past each row's length (before it, with `left`) are 0."""
    x = RNG.standard_normal((len(lengths), STEPS, FEATURES)).astype(np.float32)
    for row, n in zip(x, lengths):
        if left:
            row[:STEPS - n] = 0.0
        else:
            row[n:] = 0.0
    return x


def masks_of(model: models.Model, x: object) -> dict[str, np.ndarray]:
    """Each masked output's mask, run on the reference runtime."""
    forward = model.forward_graph(training=False, masks=True)
    arrays = x if isinstance(x, list) else [x]
    feed = {v.name: np.asarray(a, numpy_dtype(v.type.dtype))
            for v, a in zip(forward.graph.inputs, arrays)}
    values = {name: v.numpy() for name, v in forward.variables.items()}
    outs, _ = run_graph(forward.graph, feed, values)
    return {name: outs[mask] for name, mask in forward.masks.items()}


# -- making masks ---------------------------------------------------------------------------
def test_embedding_and_masking_make_masks() -> None:
    ids = layers.Input((4,), dtype="int32")
    e = layers.Embedding(6, 2, mask_zero=True, name="embedding")(ids)
    assert e._keras_mask is not None and e._keras_mask.shape == (None, 4)
    assert e._keras_mask.dtype == "bool"
    assert layers.Embedding(6, 2)(ids)._keras_mask is None
    x = np.array([[1, 0, 2, 0], [0, 0, 0, 5]])
    np.testing.assert_array_equal(masks_of(models.Model(ids, e), x)["embedding"], x != 0)

    seq = layers.Input((4, 2))
    out = layers.Masking(mask_value=-1.0)(seq)
    model = models.Model(seq, out)
    v = RNG.standard_normal((2, 4, 2)).astype(np.float32)
    v[0, 1] = -1.0
    v[1, 2, 0] = -1.0  # one feature alone does not mask the step
    np.testing.assert_array_equal(masks_of(model, v)[model.output_names[0]],
                                  [[True, False, True, True], [True] * 4])
    want = v.copy()
    want[0, 1] = 0.0
    model.compile(loss="mse", backend="reference")
    np.testing.assert_array_equal(model.predict(v, verbose=0), want)
    assert layers.Masking(2).get_config()["mask_value"] == 2.0


def test_masks_pass_through_and_stop() -> None:
    ids = layers.Input((4,), dtype="int32")
    e = layers.Embedding(6, 2, mask_zero=True)(ids)
    for passing in (layers.Dense(3), layers.Activation("relu"), layers.Dropout(0.2),
                    layers.LayerNormalization(), layers.BatchNormalization(),
                    layers.GaussianNoise(0.1), layers.ReLU(),
                    layers.LSTM(2, return_sequences=True)):
        assert passing(e)._keras_mask is not None, type(passing).__name__
    for ending in (layers.LSTM(2), layers.GlobalAveragePooling1D(),
                   layers.Bidirectional(layers.GRU(2))):
        assert ending(e)._keras_mask is None, type(ending).__name__
    with pytest.warns(UserWarning, match="'flat'.*does not support masking"):
        assert layers.Flatten(name="flat")(e)._keras_mask is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unmasked input gets no warning
        layers.Flatten()(layers.Input((4, 2)))
    out, h, c = layers.LSTM(2, return_sequences=True, return_state=True)(e)
    assert out._keras_mask is not None and h._keras_mask is None and c._keras_mask is None


def test_merged_masks() -> None:
    a_ids, b_ids = layers.Input((4,), dtype="int32"), layers.Input((4,), dtype="int32")
    a = layers.Embedding(6, 2, mask_zero=True)(a_ids)
    b = layers.Embedding(6, 2, mask_zero=True)(b_ids)
    plain = layers.Dense(2)(layers.Input((4, 2)))
    x = [np.array([[1, 0, 2, 0]]), np.array([[0, 0, 3, 3]])]
    model = models.Model([a_ids, b_ids], {
        "add": layers.Add()([a, b]), "time": layers.Concatenate(axis=1)([a, b]),
        "features": layers.Concatenate()([a, b])})
    got = masks_of(model, x)
    np.testing.assert_array_equal(got["add"], [[True, False, True, True]])
    np.testing.assert_array_equal(got["time"], [[1, 0, 1, 0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(got["features"], [[True, False, True, True]])
    assert layers.Add()([a, plain])._keras_mask is None  # Keras: one input unmasked
    # An unmasked input counts everywhere it joins.
    assert layers.Concatenate()([a, plain])._keras_mask is not None
    assert layers.Dot(axes=2)([a, b])._keras_mask is None


# -- taking masks ---------------------------------------------------------------------------
def _shared(rnn: layers.Layer) -> tuple[models.Model, models.Model]:
    """The same recurrent layer on unpadded sequences of any length, and after Masking."""
    free, fixed = layers.Input((None, FEATURES)), layers.Input((STEPS, FEATURES))
    plain, masked = models.Model(free, rnn(free)), models.Model(fixed, rnn(layers.Masking()(
        fixed)))
    for m in (plain, masked):
        m.compile(loss="mse", backend="reference")
    return plain, masked


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_recurrent_layers_skip_the_padding(cls: type, go_backwards: bool) -> None:
    """The last output equals the layer's on the unpadded row, padded on either side."""
    plain, masked = _shared(cls(4, go_backwards=go_backwards))
    for left in (False, True):
        x = padded(left=left)
        got = masked.predict(x, verbose=0)
        for i, n in enumerate(LENGTHS):
            row = x[i:i + 1, STEPS - n:] if left else x[i:i + 1, :n]
            np.testing.assert_allclose(got[i], plain.predict(row, verbose=0)[0], rtol=1e-5,
                                       atol=1e-6, err_msg=f"row {i} left={left}")


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero", [False, True])
def test_masked_sequences_repeat_or_zero_the_masked_steps(go_backwards: bool,
                                                          zero: bool) -> None:
    plain, masked = _shared(layers.GRU(4, return_sequences=True, go_backwards=go_backwards,
                                       zero_output_for_mask=zero))
    x = padded()
    got = masked.predict(x, verbose=0)
    for i, n in enumerate(LENGTHS):
        want = plain.predict(x[i:i + 1, :n], verbose=0)[0]
        # Outputs in the order processed: backwards, the padding comes first.
        valid = slice(STEPS - n, STEPS) if go_backwards else slice(0, n)
        rest = slice(0, STEPS - n) if go_backwards else slice(n, STEPS)
        np.testing.assert_allclose(got[i, valid], want, rtol=1e-5, atol=1e-6)
        repeated = np.zeros(4) if zero or go_backwards else want[-1]
        np.testing.assert_allclose(got[i, rest], np.broadcast_to(repeated, got[i, rest].shape),
                                   rtol=1e-5, atol=1e-6)


def test_zero_output_for_mask_on_the_last_output() -> None:
    """With zero_output_for_mask the last output is 0 where the last step processed is
    masked (so a right-padded row gives 0 going forwards, its output going backwards)."""
    for go_backwards in (False, True):
        plain, masked = _shared(layers.SimpleRNN(3, go_backwards=go_backwards,
                                                 zero_output_for_mask=True))
        x = padded()
        got = masked.predict(x, verbose=0)
        for i, n in enumerate(LENGTHS):
            if n < STEPS and not go_backwards:
                np.testing.assert_array_equal(got[i], 0.0)
            else:
                np.testing.assert_allclose(got[i], plain.predict(x[i:i + 1, :n], verbose=0)[0],
                                           rtol=1e-5, atol=1e-6)


def test_masked_bidirectional_runs_each_way_over_the_unpadded_rows() -> None:
    forward, backward = layers.LSTM(3), layers.LSTM(3, go_backwards=True)
    plain_f, _ = _shared(forward)
    plain_b, _ = _shared(backward)
    bidi = layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3,
                                                                          go_backwards=True))
    fixed = layers.Input((STEPS, FEATURES))
    masked = models.Model(fixed, bidi(layers.Masking()(fixed)))
    masked.compile(loss="mse", backend="reference")
    forward.set_weights(bidi.forward_layer.get_weights())
    backward.set_weights(bidi.backward_layer.get_weights())
    x = padded()
    got = masked.predict(x, verbose=0)
    for i, n in enumerate(LENGTHS):
        row = x[i:i + 1, :n]
        want = np.concatenate([plain_f.predict(row, verbose=0)[0],
                               plain_b.predict(row, verbose=0)[0]])
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
    sequences = layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode=None)
    outs = sequences(layers.Masking()(fixed))
    assert all(o._keras_mask is not None for o in outs)
    assert sequences.forward_layer.zero_output_for_mask  # as Keras forces it


def test_initial_state_turns_the_mask_off_but_passes_it_on() -> None:
    """As in Keras 3: a recurrent call given initial states gets no mask."""
    fixed, h = layers.Input((STEPS, FEATURES)), layers.Input((4,))
    rnn = layers.SimpleRNN(4, return_sequences=True)
    out = rnn(layers.Masking()(fixed), initial_state=[h])
    assert out._keras_mask is not None
    model = models.Model([fixed, h], out)
    unmasked = models.Model([fixed, h], rnn(fixed, initial_state=[h]))
    for m in (model, unmasked):
        m.compile(loss="mse", backend="reference")
    x, h0 = padded(), RNG.standard_normal((4, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict([x, h0], verbose=0),
                                  unmasked.predict([x, h0], verbose=0))


def test_masked_global_average_pooling() -> None:
    x = padded()
    for keepdims in (False, True):
        fixed = layers.Input((STEPS, FEATURES))
        pooled = layers.GlobalAveragePooling1D(keepdims=keepdims)(layers.Masking()(fixed))
        model = models.Model(fixed, pooled)
        model.compile(loss="mse", backend="reference")
        want = np.stack([row[:n].mean(axis=0, keepdims=keepdims)
                         for row, n in zip(x, LENGTHS)])
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6)


def test_masked_global_average_pooling_channels_first() -> None:
    """channels_first pools axis 2, the mask (batch, steps) spread over the channels. A
    Masking on (batch, 4, 4) gives a mask of 4 positions, which this layer reads as steps."""
    square = layers.Input((4, 4))
    masked = layers.Masking()(square)
    model = models.Model(square, layers.GlobalAveragePooling1D(data_format="channels_first")(
        masked))
    model.compile(loss="mse", backend="reference")
    x = RNG.standard_normal((3, 4, 4)).astype(np.float32)
    x[0, 1] = x[1, 3] = x[2, 0] = 0.0
    keep = np.abs(x).sum(axis=-1) > 0  # (batch, 4): the mask Masking gives
    want = (x * keep[:, None, :]).sum(axis=2) / keep.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5)


def test_masked_batch_normalization_takes_the_counted_steps() -> None:
    fixed = layers.Input((STEPS, FEATURES))
    norm = layers.BatchNormalization(momentum=0.0)
    model = models.Model(fixed, norm(layers.Masking()(fixed)))
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
    x = padded()
    model.train_on_batch(x, np.zeros_like(x))
    counted = np.concatenate([row[:n] for row, n in zip(x, LENGTHS)])
    np.testing.assert_allclose(norm.moving_mean.numpy(), counted.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), counted.var(axis=0), rtol=1e-4)


def test_attention_layers_take_the_masks_as_explicit_ones() -> None:
    """Keras masks on query and value give what the same masks given by hand give."""
    ids = layers.Input((STEPS,), dtype="int32")
    e = layers.Embedding(7, 4, mask_zero=True)(ids)
    mha, attention = layers.MultiHeadAttention(2, 3), layers.Attention(use_scale=True)
    auto = models.Model(ids, [mha(e, e), attention([e, e])])
    raw = layers.Embedding(7, 4)
    plain_e = raw(ids)
    allowed, counted = layers.Input((STEPS, STEPS)), layers.Input((STEPS,))
    explicit = models.Model([ids, allowed, counted], [
        mha(plain_e, plain_e, attention_mask=allowed),
        attention([plain_e, plain_e], mask=[counted, counted])])
    raw.set_weights(auto.get_layer(index=1).get_weights())
    for m in (auto, explicit):
        m.compile(loss="mse", backend="reference")
    x = np.array([[1, 2, 3, 0, 0], [0, 4, 0, 5, 6], [1, 1, 1, 1, 1], [2, 0, 0, 0, 0]])
    keep = x != 0
    got = auto.predict(x, verbose=0)
    want = explicit.predict([x, (keep[:, :, None] & keep[:, None, :]).astype(np.float32),
                             keep.astype(np.float32)], verbose=0)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert auto.outputs[0]._keras_mask is not None and auto.outputs[1]._keras_mask is not None


def test_fully_masked_queries_follow_keras_paths() -> None:
    """Keras's fused attention (no dropout, no scores) gives a query that may attend nowhere
    the mean of the values; its softmax path gives zero probabilities."""
    q, m = layers.Input((3, 2)), layers.Input((3, 3))
    mha = layers.MultiHeadAttention(1, 2, use_bias=False)
    fused = models.Model([q, m], mha(q, q, attention_mask=m))
    scored = models.Model([q, m], mha(q, q, attention_mask=m, return_attention_scores=True))
    for model in (fused, scored):
        model.compile(loss="mse", backend="reference")
    x = RNG.standard_normal((1, 3, 2)).astype(np.float32)
    nowhere = np.ones((1, 3, 3), np.float32)
    nowhere[0, 1] = 0
    out, probs = scored.predict([x, nowhere], verbose=0)
    np.testing.assert_array_equal(probs[0, 0, 1], 0.0)
    weights = mha.get_weights()
    value = x[0] @ weights[2][:, 0, :]
    uniform = value.mean(axis=0) @ weights[3][0]
    np.testing.assert_allclose(fused.predict([x, nowhere], verbose=0)[0, 1], uniform,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], 0.0, atol=1e-7)


def test_softmax_takes_a_broadcastable_mask_only() -> None:
    """Keras's Softmax takes its input's mask where it broadcasts against the input (aligned
    from the last axis), as ids of a fixed batch of 5 by 5 steps embedded in 5 features."""
    ids = layers.Input(batch_shape=(STEPS, STEPS), dtype="int32")
    e = layers.Embedding(7, STEPS, mask_zero=True)(ids)  # (5, 5, 5); its mask (5, 5)
    model = models.Model(ids, layers.Softmax()(e))
    model.compile(loss="mse", backend="reference")
    x = RNG.integers(0, 7, (STEPS, STEPS))
    x[0, 0] = 0
    table = model.get_layer(index=1).get_weights()[0][x]
    want = np.where(x != 0, np.exp(table), 0.0)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               want / want.sum(axis=-1, keepdims=True), rtol=1e-5)
    free = layers.Input((STEPS,), dtype="int32")
    with pytest.raises(KilnValueError, match="'soft'.*mask must be broadcastable"):
        layers.Softmax(name="soft")(layers.Embedding(7, STEPS, mask_zero=True)(free))


# -- losses and metrics ---------------------------------------------------------------------
def _tagger() -> models.Model:
    ids = layers.Input((STEPS,), dtype="int32")
    e = layers.Embedding(7, 3, mask_zero=True)(ids)
    return models.Model(ids, layers.Dense(2)(layers.SimpleRNN(3, return_sequences=True)(e)))


def test_losses_and_metrics_count_only_the_masked_steps() -> None:
    model = _tagger()
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", metrics=["mae"],
                  backend="reference")
    x = np.array([[1, 2, 0, 0, 0], [3, 3, 3, 3, 0], [0, 0, 0, 0, 0], [4, 5, 6, 1, 2]])
    y = RNG.standard_normal((4, STEPS, 2)).astype(np.float32)
    keep = x != 0
    err = model.predict(x, verbose=0) - y
    mse, mae = (err ** 2).mean(axis=-1), np.abs(err).mean(axis=-1)
    loss, metric = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(mse[keep].mean(), rel=1e-5)
    assert metric == pytest.approx(mae[keep].mean(), rel=1e-5)
    # Batches of 2 and 2: the loss averages the batches' masked means, the metric counts
    # every step that counts once (Keras's Mean of mask-weighted values).
    loss, metric = model.evaluate(x, y, batch_size=2, verbose=0)
    halves = [mse[:2][keep[:2]].mean(), mse[2:][keep[2:]].mean()]
    assert loss == pytest.approx(np.mean(halves), rel=1e-5)
    assert metric == pytest.approx(mae[keep].mean(), rel=1e-5)
    weights = np.array([1.0, 2.0, 1.0, 0.5], np.float32)
    weighted = model.evaluate(x, y, sample_weight=weights, verbose=0)[0]
    assert weighted == pytest.approx((mse * keep * weights[:, None]).sum() / keep.sum(),
                                     rel=1e-5)
    assert model.evaluate(x[2:3], y[2:3], verbose=0)[0] == 0.0  # nothing counts


def test_masked_loss_gradient_matches_finite_differences() -> None:
    from tests.frontends.keras.steps import assert_gradient_matches_finite_differences

    def build() -> models.Model:
        model = _tagger()
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    x = np.array([[1, 2, 0, 0, 0], [0, 3, 3, 3, 0]])
    y = RNG.standard_normal((2, STEPS, 2)).astype(np.float32)
    weights = build().get_weights()
    for index in (1, 2):  # the recurrent layer's kernel and recurrent kernel
        assert_gradient_matches_finite_differences(build, weights, x, y, index=index)


# -- backends and saving --------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_masked_models_train_on_every_backend(backend: str) -> None:
    from tests.frontends.keras.steps import assert_trains_like_the_reference

    def build(name: str) -> models.Model:
        ids = layers.Input((STEPS,), dtype="int32")
        e = layers.Embedding(7, 3, mask_zero=True)(ids)
        y = layers.Bidirectional(layers.LSTM(2, return_sequences=True))(e)
        y = layers.MultiHeadAttention(1, 2)(y, y)
        model = models.Model(ids, layers.GlobalAveragePooling1D()(
            layers.BatchNormalization()(y)))
        # SGD: the key bias has no gradient but rounding, which Adam would blow up.
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=name)
        return model

    x = np.array([[1, 2, 0, 0, 0], [0, 3, 3, 3, 0], [4, 5, 6, 1, 2]])
    y = RNG.standard_normal((3, 4)).astype(np.float32)
    assert_trains_like_the_reference(build, backend, x, y)


def test_saved_masked_model_loads_with_its_masks(tmp_path: object) -> None:
    model = _tagger()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], backend="reference")
    x = np.array([[1, 2, 0, 0, 0], [3, 3, 3, 3, 0]])
    y = RNG.standard_normal((2, STEPS, 2)).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    path = f"{tmp_path}/tagger.kiln"
    model.save(path)
    loaded = models.load_model(path)
    assert loaded.outputs[0]._keras_mask is not None
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y,
                                                                                  verbose=0),
                               rtol=1e-6)
