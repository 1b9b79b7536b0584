"""EinsumDense, MultiHeadAttention, Attention and AdditiveAttention against Keras 3's
definitions written in NumPy: hypothesis over equations, sizes, heads, masks (given, causal,
sliding window), gates, attention axes and score modes; dropout's expectation; gradients
against finite differences; a small transformer encoder training on numba and onnxruntime
like the reference; saved models; configs and errors that name the layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import initializers, layers, models, optimizers
from kiln.frontends.keras.layers.einsum_dense import analyze
from kiln.ir import KilnTypeError, KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(23)


def _randomize(model: models.Model, scale: float = 0.5,
               rng: np.random.Generator = RNG) -> list[np.ndarray]:
    weights = [rng.standard_normal(w.shape).astype(np.float32) * scale
               for w in model.get_weights()]
    model.set_weights(weights)
    return weights


# -- EinsumDense -------------------------------------------------------------------------------
@pytest.mark.parametrize("equation, output_shape, bias_axes, input_shape, kernel, bias", [
    ("ab,bc->ac", 64, "c", (None, 32), (32, 64), (64,)),
    ("abc,cd->abd", (None, 64), "d", (None, 32, 128), (128, 64), (64,)),
    ("abc,cd->abd", (None, 64), "b", (None, 32, 128), (128, 64), (32, 1)),
    ("abc,cde->abde", (None, 4, 8), "de", (None, 5, 16), (16, 4, 8), (4, 8)),
    ("...b,bc->...c", 64, "c", (None, 7, 32), (32, 64), (64,)),
    ("ab...,bc->ac...", (64,), "c", (None, 32, 7), (32, 64), (64, 1)),
])
def test_einsum_dense_weight_shapes_are_keras(equation: str, output_shape: object,
                                              bias_axes: str, input_shape: tuple,
                                              kernel: tuple, bias: tuple) -> None:
    """The shapes of Keras's documented examples (and its bias placement rules)."""
    full = (output_shape,) if isinstance(output_shape, int) else output_shape
    shapes = analyze(equation, bias_axes, input_shape, full, "here")
    assert (shapes.kernel, shapes.bias) == (kernel, bias)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([
    ("ab,bc->ac", "c", lambda s: (s[1],)),
    ("abc,cd->abd", "d", lambda s: (None, 5)),
    ("abc,cde->abde", "de", lambda s: (None, 2, 3)),
    ("abcd,cde->abe", "e", lambda s: (None, 4)),
    ("abc,bd->acd", "cd", lambda s: (s[2], 3)),
    ("...b,bc->...c", "c", lambda s: (4,)),
    ("ab...,bc->ac...", "c", lambda s: (3,)),
    ("abc,cd->abd", None, lambda s: (None, 2)),
]), st.lists(st.integers(1, 4), min_size=3, max_size=3), st.booleans())
def test_einsum_dense_matches_numpy(case: tuple, sizes: list, relu: bool) -> None:
    equation, bias_axes, out_shape = case
    rank = len(equation.split(",")[0].replace("...", "")) + ("..." in equation)
    shape = tuple(sizes[:rank - 1]) if "..." not in equation else tuple(sizes[:2])
    if equation.startswith("abcd"):
        shape = (*sizes[:2], 2)
    x = RNG.standard_normal((2, *shape)).astype(np.float32)
    layer = layers.EinsumDense(equation, out_shape(x.shape), bias_axes=bias_axes,
                               activation="relu" if relu else None)
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    _randomize(model)
    model.compile(loss="mse", backend="reference")
    want = np.einsum(equation, x.astype(np.float64), layer.kernel.numpy())
    if layer.bias is not None:
        want = want + layer.bias.numpy()
    if relu:
        want = np.maximum(want, 0)
    got = model.predict(x, verbose=0)
    assert model.outputs[0].shape == (None, *want.shape[1:])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_einsum_dense_fans_count_the_equation_axes() -> None:
    """A variance-scaling kernel initializer counts the kernel's contracted axes as its
    fan-in and its output axes as its fan-out (Keras's EinsumDense), not the rank rule."""
    layer = layers.EinsumDense("abc,cde->abde", (None, 40, 50),
                               kernel_initializer=initializers.VarianceScaling(
                                   1.0, "fan_out", "untruncated_normal"))
    models.Sequential([layers.Input((3, 60)), layer])
    # fan_out = 40 * 50 (the rank rule would say 50 * 60)
    assert layer.kernel.numpy().std() == pytest.approx((1 / 2000) ** 0.5, rel=0.05)
    assert "input_axes" not in layer.get_config()["kernel_initializer"]["config"]


def test_einsum_dense_errors_name_the_layer() -> None:
    with pytest.raises(KilnValueError, match="'ed'.*invalid einsum equation 'ab,bc'"):
        models.Sequential([layers.Input((3,)), layers.EinsumDense("ab,bc", 4, name="ed")])
    with pytest.raises(KilnValueError, match="'ed'.*weight dimension 'z'"):
        models.Sequential([layers.Input((3,)), layers.EinsumDense("ab,bcz->ac", 4, name="ed")])
    with pytest.raises(KilnValueError, match="'ed'.*bias dimension 'q'"):
        models.Sequential([layers.Input((3,)),
                           layers.EinsumDense("ab,bc->ac", 4, bias_axes="q", name="ed")])
    with pytest.raises(KilnValueError, match="'ed'.*do not match at shared dimension 'b'"):
        models.Sequential([layers.Input((3, 5)),
                           layers.EinsumDense("abc,cd->abd", (4, 2), name="ed")])
    with pytest.raises(KilnValueError, match="'ed'.*LoRA"):
        layers.EinsumDense("ab,bc->ac", 4, lora_rank=2, name="ed")


# -- MultiHeadAttention, in NumPy --------------------------------------------------------------
def _softmax(z: np.ndarray, axes: tuple) -> np.ndarray:
    e = np.exp(z - z.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def mha_numpy(layer: layers.MultiHeadAttention, q: np.ndarray, v: np.ndarray,
              k: np.ndarray | None = None, mask: np.ndarray | None = None,
              causal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Keras 3's MultiHeadAttention for inputs (B, T..., E) and (B, S..., E'), attention
    over all the positions' axes jointly: project, scale, score, mask, softmax, combine."""
    k = v if k is None else k
    w = {p.split("/", 1)[1]: var.numpy().astype(np.float64)
         for p, var in ((var.path, var) for var in layer.weights)}

    def proj(x: np.ndarray, name: str) -> np.ndarray:
        y = np.tensordot(x.astype(np.float64), w[f"{name}/kernel"], axes=([-1], [0]))
        return y + w[f"{name}/bias"] if f"{name}/bias" in w else y

    qp = proj(q, "query") / np.sqrt(layer.key_dim)
    kp, vp = proj(k, "key"), proj(v, "value")
    b, heads = q.shape[0], layer.num_heads
    t, s = q.shape[1:-1], k.shape[1:-1]
    # (B, N, T, H) and (B, N, S, H) with the positions flattened.
    qf = qp.reshape(b, -1, heads, layer.key_dim).transpose(0, 2, 1, 3)
    kf = kp.reshape(b, -1, heads, layer.key_dim).transpose(0, 2, 1, 3)
    vf = vp.reshape(b, -1, heads, layer.value_dim).transpose(0, 2, 1, 3)
    scores = qf @ kf.transpose(0, 1, 3, 2)
    allowed = np.ones(scores.shape, dtype=bool)
    if mask is not None:
        allowed &= (np.broadcast_to(mask, (b, *t, *s)).reshape(b, 1, scores.shape[2], -1) != 0)
    if causal or layer.sliding_window:
        rows, cols = np.arange(scores.shape[2])[:, None], np.arange(scores.shape[3])[None]
        if causal:
            allowed &= rows >= cols
        if layer.sliding_window:
            allowed &= np.abs(rows - cols) < layer.sliding_window
    probs = np.where(allowed, _softmax(np.where(allowed, scores, -1e9), (3,)), 0.0)
    heads_out = (probs @ vf).transpose(0, 2, 1, 3).reshape(b, *t, heads, layer.value_dim)
    if layer.use_gate:
        heads_out = heads_out / (1 + np.exp(-proj(q, "gate")))
    out = np.tensordot(heads_out, w["attention_output/kernel"], axes=([-2, -1], [0, 1]))
    if "attention_output/bias" in w:
        out = out + w["attention_output/bias"]
    return out, probs.reshape(b, heads, *t, *s)


attention_case = st.fixed_dictionaries({
    "t": st.integers(1, 5), "s": st.integers(1, 5), "e": st.integers(1, 4),
    "heads": st.integers(1, 3), "key_dim": st.integers(1, 3),
    "value_dim": st.one_of(st.none(), st.integers(1, 3)),
    "output_shape": st.one_of(st.none(), st.integers(1, 3)), "use_bias": st.booleans(),
    "key": st.booleans(), "mask": st.sampled_from([None, "full", "rows"]),
    "causal": st.booleans(), "window": st.one_of(st.none(), st.integers(1, 3)),
    "gate": st.booleans()})


@settings(max_examples=40, deadline=None)
@given(attention_case)
def test_multi_head_attention_matches_numpy(c: dict) -> None:
    t, s = c["t"], c["s"]
    if c["causal"] or c["window"]:
        s = t  # a causal or banded self-attention
    query, value = layers.Input((t, c["e"])), layers.Input((s, c["e"] + 1))
    key = layers.Input((s, 2)) if c["key"] else None
    inputs = [query, value, *([key] if key is not None else [])]
    mask = None
    if c["mask"] is not None:
        mask = layers.Input((t, s) if c["mask"] == "full" else (1, s))
        inputs.append(mask)
    layer = layers.MultiHeadAttention(c["heads"], c["key_dim"], value_dim=c["value_dim"],
                                      output_shape=c["output_shape"], use_bias=c["use_bias"],
                                      sliding_window=c["window"], use_gate=c["gate"])
    out, scores = layer(query, value, key=key, attention_mask=mask,
                        return_attention_scores=True, use_causal_mask=c["causal"])
    model = models.Model(inputs, [out, scores])
    _randomize(model)
    model.compile(loss="mse", backend="reference")
    arrays = [RNG.standard_normal((3, *x.shape[1:])).astype(np.float32) for x in inputs]
    if mask is not None:  # zeros and ones, some query rows attending nowhere
        arrays[-1] = (RNG.random(arrays[-1].shape) < 0.6).astype(np.float32)
        arrays[-1][0] = 0
    got_out, got_scores = model.predict(arrays, verbose=0)
    want_out, want_scores = mha_numpy(layer, arrays[0], arrays[1],
                                      arrays[2] if key is not None else None,
                                      arrays[-1] if mask is not None else None, c["causal"])
    assert model.outputs[0].shape == (None, *want_out.shape[1:])
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "numba", "onnxruntime"])
def test_attention_over_two_axes_and_a_boolean_mask(backend: str) -> None:
    """Images (B, H, W, C) attending over H and W jointly, with a bool mask of the
    positions (B, H, W, H', W'): rank-6 scores, on every backend."""
    x = layers.Input((2, 3, 4))
    m = layers.Input((2, 3, 2, 3), dtype="bool")
    layer = layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    out, scores = layer(x, x, attention_mask=m, return_attention_scores=True)
    model = models.Model([x, m], [out, scores])
    _randomize(model, rng=np.random.default_rng(9))
    model.compile(loss="mse", backend=backend)
    xs = RNG.standard_normal((2, 2, 3, 4)).astype(np.float32)
    ms = RNG.random((2, 2, 3, 2, 3)) < 0.7
    got_out, got_scores = model.predict([xs, ms], verbose=0)
    want_out, want_scores = mha_numpy(layer, xs, xs, mask=ms)
    assert got_scores.shape == (2, 2, 2, 3, 2, 3)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-4, atol=1e-5)


def test_unknown_sequence_lengths() -> None:
    """Input(shape=(None, E)), as the book's text models have: one model serves lengths."""
    x = layers.Input((None, 4))
    layer = layers.MultiHeadAttention(2, 3)
    model = models.Model(x, layer(x, x))
    _randomize(model)
    model.compile(loss="mse", backend="reference")
    for length in (1, 5):
        xs = RNG.standard_normal((2, length, 4)).astype(np.float32)
        np.testing.assert_allclose(model.predict(xs, verbose=0), mha_numpy(layer, xs, xs)[0],
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(KilnValueError, match="'causal'.*known sequence lengths"):
        layers.MultiHeadAttention(2, 3, name="causal")(x, x, use_causal_mask=True)


def test_dropout_keeps_the_expected_output() -> None:
    """In training, dropped probabilities are zero and the kept ones scaled by 1 / keep, so
    the output's mean over many draws is the output without dropout."""
    x = layers.Input((3, 2))
    layer = layers.MultiHeadAttention(1, 2, dropout=0.5, use_bias=False)
    train = models.Model(x, layer(x, x, training=True))
    infer = models.Model(x, layer(x, x))
    rng = np.random.default_rng(4)
    _randomize(train, rng=rng)
    for m in (train, infer):
        m.compile(loss="mse", backend="reference")
    n = 4000
    xs = np.repeat(rng.standard_normal((1, 3, 2)).astype(np.float32), n, axis=0)
    noisy, clean = train.predict(xs, verbose=0), infer.predict(xs[:1], verbose=0)
    assert not np.allclose(noisy[0], noisy[1])
    # within 5 standard errors of the mean, element by element
    error = np.abs(noisy.mean(axis=0) - clean[0])
    assert (error <= 5 * noisy.std(axis=0) / np.sqrt(n) + 1e-6).all(), error


def test_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        q, m = layers.Input((3, 2)), layers.Input((3, 3))
        out = layers.MultiHeadAttention(2, 2, use_gate=True)(q, q, attention_mask=m)
        model = models.Model([q, m], layers.Dense(1)(layers.Flatten()(out)))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in build().get_weights()]
    x = [RNG.standard_normal((2, 3, 2)).astype(np.float32),
         np.tril(np.ones((2, 3, 3), np.float32))]
    y = RNG.standard_normal((2, 1)).astype(np.float32)
    for index in (0, 2, 4, 6, 8):  # the query, key, gate, value and output kernels
        assert_gradient_matches_finite_differences(build, weights, x, y, index=index)


def _encoder(backend: str) -> models.Model:
    """A transformer encoder block in small (the book's text classifier): token embeddings,
    self-attention with a padding mask, add and norm, a feed-forward block, pooling."""
    tokens, pad = layers.Input((6,), dtype="int32"), layers.Input((6, 6))
    x = layers.Embedding(10, 8)(tokens)
    a = layers.MultiHeadAttention(2, 4, dropout=0.0)(x, x, attention_mask=pad)
    x = layers.LayerNormalization()(layers.add([x, a]))
    x = layers.add([x, layers.EinsumDense("abc,cd->abd", (None, 8), bias_axes="d")(x)])
    out = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(x))
    model = models.Model([tokens, pad], out)
    _randomize(model, 0.3, np.random.default_rng(7))  # the same weights in every run
    model.compile(optimizer=optimizers.SGD(0.1), loss="binary_crossentropy", backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_encoder_trains_like_the_reference(backend: str) -> None:
    rng = np.random.default_rng(8)
    tokens = rng.integers(0, 10, (4, 6)).astype(np.int32)
    lengths = np.array([6, 4, 2, 5])
    keep = (np.arange(6)[None] < lengths[:, None]).astype(np.float32)
    pad = keep[:, None, :] * keep[:, :, None]
    y = rng.integers(0, 2, (4, 1)).astype(np.float32)
    assert_trains_like_the_reference(_encoder, backend, [tokens, pad], y)


def test_saved_model_calls_again_with_its_key_mask_and_scores(tmp_path) -> None:  # noqa: ANN001
    q, v, k, m = (layers.Input((4, 3)), layers.Input((5, 2)), layers.Input((5, 3)),
                  layers.Input((4, 5)))
    out, scores = layers.MultiHeadAttention(2, 2, dropout=0.2, name="mha")(
        q, v, key=k, attention_mask=m, return_attention_scores=True)
    model = models.Model([q, v, k, m], [out, scores])
    _randomize(model)
    model.save(tmp_path / "m.kiln", backend="reference")
    loaded = models.load_model(tmp_path / "m.kiln")
    assert loaded.get_config() == model.get_config()
    xs = [RNG.standard_normal((2, *t.shape[1:])).astype(np.float32) for t in (q, v, k)]
    xs.append((RNG.random((2, 4, 5)) < 0.5).astype(np.float32))
    for a, b in zip(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weights_configs_and_errors() -> None:
    q, v = layers.Input((4, 6)), layers.Input((5, 3))
    layer = layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=7, name="mha",
                                      kernel_regularizer="l2", bias_constraint="non_neg")
    out = layer(q, v)
    assert out.shape == (None, 4, 7)
    assert [(w.path, w.shape) for w in layer.weights] == [
        ("mha/query/kernel", (6, 2, 3)), ("mha/query/bias", (2, 3)),
        ("mha/key/kernel", (3, 2, 3)), ("mha/key/bias", (2, 3)),
        ("mha/value/kernel", (3, 2, 4)), ("mha/value/bias", (2, 4)),
        ("mha/attention_output/kernel", (2, 4, 7)), ("mha/attention_output/bias", (7,))]
    config = layer.get_config()
    assert type(layer)(**config).get_config() == config
    with pytest.raises(KilnValueError, match="`num_heads`.*positive integer"):
        layers.MultiHeadAttention(0, 2)
    with pytest.raises(KilnValueError, match="'m'.*`dropout`.*between 0 and 1"):
        layers.MultiHeadAttention(2, 2, dropout=1.0, name="m")
    with pytest.raises(KilnValueError, match="'m'.*query and value"):
        layers.MultiHeadAttention(2, 2, name="m")(q)
    with pytest.raises(KilnValueError, match="'m'.*except the last one, must be equal"):
        layers.MultiHeadAttention(2, 2, name="m")(q, v, key=layers.Input((4, 3)))
    with pytest.raises(KilnValueError, match=r"'m'.*attention_mask of shape \(None, 4, 5\)"):
        layers.MultiHeadAttention(2, 2, name="m")(q, v, attention_mask=layers.Input((4, 4)))
    with pytest.raises(KilnValueError, match="'mha'.*built for a query of 6 features"):
        layer(layers.Input((4, 5)), v)
    with pytest.raises(KilnValueError, match="'m'.*rank >= 3"):
        layers.MultiHeadAttention(2, 2, name="m")(layers.Input((4,)), layers.Input((4,)))
    with pytest.raises(KilnValueError, match="'m'.*takes query_mask from the tensor's Keras mask"):
        layers.MultiHeadAttention(2, 2, name="m")(q, v, query_mask=q)
    with pytest.raises(KilnTypeError, match="'m'.*unrecognized call argument 'scale'"):
        layers.MultiHeadAttention(2, 2, name="m")(q, v, scale=2)
    with pytest.raises(KilnValueError, match="'m'.*attention_axes"):
        layers.MultiHeadAttention(2, 2, attention_axes=(2,), name="m")(q, v)


# -- Attention and AdditiveAttention -----------------------------------------------------------
def attention_numpy(layer: layers.Attention, q: np.ndarray, v: np.ndarray, k: np.ndarray,
                    q_mask: np.ndarray | None, v_mask: np.ndarray | None,
                    causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Keras 3's Attention / AdditiveAttention: scores, disallowed ones lowered by 1e9, a
    softmax over the key positions, @ value, zero at masked query positions."""
    w = {var.name: var.numpy().astype(np.float64) for var in layer.weights}
    q, v, k = (a.astype(np.float64) for a in (q, v, k))
    pairs = q[:, :, None, :] + k[:, None, :, :]
    if isinstance(layer, layers.AdditiveAttention):
        scores = (np.tanh(pairs) * w.get("scale", 1.0)).sum(-1)
    elif layer.score_mode == "concat":
        scores = w["concat_score_weight"] * np.tanh(pairs * w.get("scale", 1.0)).sum(-1)
    else:
        scores = q @ k.transpose(0, 2, 1) * w.get("scale", 1.0)
    allowed = np.ones(scores.shape, dtype=bool)
    if v_mask is not None:
        allowed &= (v_mask != 0)[:, None, :]
    if causal:
        allowed &= np.tril(np.ones(scores.shape[1:], dtype=bool))
    # The shift in float32, as the layer computes it: a row with no allowed position then
    # scores -1e9 everywhere (1e9's float32 spacing is 64) and gets uniform weights.
    shifted = (scores.astype(np.float32) - np.float32(1e9)).astype(np.float64)
    weights = _softmax(np.where(allowed, scores, shifted), (2,))
    out = weights @ v
    if q_mask is not None:
        out = np.where((q_mask != 0)[:, :, None], out, 0.0)
    return out, weights


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({
    "kind": st.sampled_from(["dot", "concat", "additive"]), "use_scale": st.booleans(),
    "tq": st.integers(1, 4), "tv": st.integers(1, 4), "dim": st.integers(1, 3),
    "key": st.booleans(), "q_mask": st.booleans(), "v_mask": st.booleans(),
    "causal": st.booleans()}))
def test_attention_layers_match_numpy(c: dict) -> None:
    tq, tv = c["tq"], (c["tq"] if c["causal"] else c["tv"])
    q, v = layers.Input((tq, c["dim"])), layers.Input((tv, 2 if c["key"] else c["dim"]))
    k = layers.Input((tv, c["dim"])) if c["key"] else None
    qm = layers.Input((tq,)) if c["q_mask"] else None
    vm = layers.Input((tv,)) if c["v_mask"] else None
    if c["kind"] == "additive":
        layer = layers.AdditiveAttention(use_scale=c["use_scale"])
    else:
        layer = layers.Attention(use_scale=c["use_scale"], score_mode=c["kind"])
    inputs = [q, v, *([k] if k is not None else [])]
    mask = None if qm is None and vm is None else [qm, vm]
    out, scores = layer(inputs, mask=mask, return_attention_scores=True,
                        use_causal_mask=c["causal"])
    model = models.Model([*inputs, *(m for m in (qm, vm) if m is not None)], [out, scores])
    _randomize(model, 1.0)
    model.compile(loss="mse", backend="reference")
    arrays = [RNG.standard_normal((3, *t.shape[1:])).astype(np.float32) for t in inputs]
    masks = [(RNG.random((3, t.shape[1])) < 0.7).astype(np.float32) if t is not None else None
             for t in (qm, vm)]
    got = model.predict([*arrays, *(m for m in masks if m is not None)], verbose=0)
    want = attention_numpy(layer, arrays[0], arrays[1], arrays[-1] if k is not None
                           else arrays[1], *masks, c["causal"])
    assert model.outputs[0].shape == (None, tq, v.shape[-1])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_attention_layers_train_save_and_check() -> None:
    def build() -> models.Model:
        q, v = layers.Input((3, 2)), layers.Input((4, 2))
        x = layers.concatenate([layers.Attention(use_scale=True, score_mode="concat")([q, v]),
                                layers.AdditiveAttention()([q, v, v])])
        model = models.Model([q, v], layers.Dense(1)(layers.Flatten()(x)))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in build().get_weights()]
    assert [w.shape for w in weights][:3] == [(), (), (2,)]
    x = [RNG.standard_normal((2, 3, 2)).astype(np.float32),
         RNG.standard_normal((2, 4, 2)).astype(np.float32)]
    y = RNG.standard_normal((2, 1)).astype(np.float32)
    for index in (0, 1, 2):  # Attention's scale and concat weight, AdditiveAttention's scale
        assert_gradient_matches_finite_differences(build, weights, x, y, index=index)


def test_attention_saved_with_its_masks(tmp_path) -> None:  # noqa: ANN001
    q, v, qm, vm = (layers.Input((3, 2)), layers.Input((4, 2)), layers.Input((3,)),
                    layers.Input((4,)))
    out, scores = layers.Attention(dropout=0.3)([q, v], mask=[qm, vm],
                                                return_attention_scores=True)
    model = models.Model([q, v, qm, vm], [out, scores])
    model.save(tmp_path / "m.kiln", backend="reference")
    loaded = models.load_model(tmp_path / "m.kiln")
    assert loaded.get_config() == model.get_config()
    xs = [RNG.standard_normal((2, 3, 2)).astype(np.float32),
          RNG.standard_normal((2, 4, 2)).astype(np.float32),
          np.array([[1, 0, 1], [1, 1, 0]], np.float32), np.array([[1, 1, 0, 1]] * 2, np.float32)]
    for a, b in zip(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert (loaded.predict(xs, verbose=0)[0][0, 1] == 0).all()  # the masked query position


def test_attention_errors_name_the_layer() -> None:
    q, v = layers.Input((3, 2)), layers.Input((4, 2))
    with pytest.raises(KilnValueError, match="'at'.*score_mode"):
        layers.Attention(score_mode="dotty", name="at")
    with pytest.raises(KilnValueError, match="'at'.*list of inputs"):
        layers.Attention(name="at")(q)
    with pytest.raises(KilnValueError, match="'at'.*mask must be a list"):
        layers.Attention(name="at")([q, v], mask=[v])
    with pytest.raises(KilnValueError, match=r"'at'.*value_mask of shape \(batch, 4\)"):
        layers.Attention(name="at")([q, v], mask=[None, layers.Input((3,))])
    with pytest.raises(KilnValueError, match="'at'.*same known feature size"):
        layers.Attention(name="at")([q, layers.Input((4, 3))])
    with pytest.raises(KilnValueError, match="'at'.*known sequence lengths"):
        layers.Attention(name="at")([layers.Input((None, 2)), v], use_causal_mask=True)
    additive = layers.AdditiveAttention(name="add")
    additive([q, v])
    with pytest.raises(KilnValueError, match="'add'.*built for a query of 2 features"):
        additive([layers.Input((3, 5)), layers.Input((4, 5))])
    config = additive.get_config()
    assert "score_mode" not in config and type(additive)(**config).get_config() == config
