"""Conv1D and the 1-D pooling layers against naive NumPy loops written from Keras's
definitions ('same' padding as TensorFlow's, 'causal' as left zero padding of
(size - 1) * dilation), run on the reference runtime; their gradients on every backend; the
errors and configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import layers, models, optimizers
from kiln.ir import KilnTypeError, KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_steps_agree,
)

RNG = np.random.default_rng(4)


def _pads(steps: int, span: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(output steps, zeros before, zeros after)."""
    if padding == "valid":
        return (steps - span) // stride + 1, 0, 0
    if padding == "causal":
        return (steps + span - 1 - span) // stride + 1, span - 1, 0
    out = math.ceil(steps / stride)
    total = max((out - 1) * stride + span - steps, 0)
    return out, total // 2, total - total // 2


def conv1d_reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray, stride: int,
                     padding: str, dilation: int) -> np.ndarray:
    n, steps, _ = x.shape
    size, _, filters = w.shape
    span = (size - 1) * dilation + 1
    out, before, after = _pads(steps, span, stride, padding)
    padded = np.pad(x.astype(np.float64), ((0, 0), (before, after), (0, 0)))
    y = np.zeros((n, out, filters))
    for t in range(out):
        for k in range(size):
            y[:, t] += padded[:, t * stride + k * dilation] @ w[k]
    return y + bias


def pool1d_reference(x: np.ndarray, size: int, stride: int, padding: str,
                     kind: str) -> np.ndarray:
    n, steps, c = x.shape
    out, before, _ = _pads(steps, size, stride, padding)
    y = np.zeros((n, out, c))
    for t in range(out):
        lo = t * stride - before
        window = x[:, max(lo, 0):min(lo + size, steps)].astype(np.float64)
        y[:, t] = window.max(axis=1) if kind == "max" else window.mean(axis=1)
    return y


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(4, 12), channels=st.integers(1, 3), filters=st.integers(1, 4),
       size=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same", "causal"]), seed=st.integers(0, 2**16))
def test_conv1d_matches_naive_loop(steps: int, channels: int, filters: int, size: int,
                                   stride: int, dilation: int, padding: str,
                                   seed: int) -> None:
    if stride > 1 and dilation > 1 or padding == "valid" and (size - 1) * dilation >= steps:
        return
    rs = np.random.default_rng(seed)
    layer = layers.Conv1D(filters, size, strides=stride, padding=padding,
                          dilation_rate=dilation, use_bias=True)
    model = models.Sequential([layers.Input((steps, channels)), layer])
    w = rs.standard_normal((size, channels, filters)).astype(np.float32)
    bias = rs.standard_normal(filters).astype(np.float32)
    model.set_weights([w, bias])
    model.compile(loss="mse", backend="reference")
    x = rs.standard_normal((3, steps, channels)).astype(np.float32)
    got = model.predict(x, verbose=0)
    want = conv1d_reference(x, w, bias, stride, padding, dilation)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, cls", [("max", layers.MaxPooling1D),
                                       ("mean", layers.AveragePooling1D)])
@pytest.mark.parametrize("size, stride, padding", [(2, None, "valid"), (3, 1, "valid"),
                                                   (3, 2, "same"), (2, 3, "same"),
                                                   (4, 2, "valid")])
def test_pooling1d_matches_naive_loop(kind: str, cls: type, size: int, stride: int | None,
                                      padding: str) -> None:
    x = RNG.standard_normal((2, 9, 3)).astype(np.float32)
    model = models.Sequential([layers.Input((9, 3)), cls(size, strides=stride,
                                                         padding=padding)])
    model.compile(loss="mse", backend="reference")
    want = pool1d_reference(x, size, stride or size, padding, kind)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls, reduce", [(layers.GlobalAveragePooling1D, np.mean),
                                         (layers.GlobalMaxPooling1D, np.max)])
@pytest.mark.parametrize("data_format, axis", [("channels_last", 1), ("channels_first", 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling1d(cls: type, reduce, data_format: str, axis: int,  # noqa: ANN001
                          keepdims: bool) -> None:
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    model = models.Sequential([layers.Input((5, 3)),
                               cls(data_format=data_format, keepdims=keepdims)])
    model.compile(loss="mse", backend="reference")
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               reduce(x, axis=axis, keepdims=keepdims), rtol=1e-6)


def _text_model(backend: str) -> models.Model:
    """The book's 1-D convnet shape: Embedding, Conv1D, MaxPooling1D, Conv1D (causal,
    dilated), GlobalMaxPooling1D, Dense."""
    model = models.Sequential([
        layers.Input((12,), dtype="int32"), layers.Embedding(30, 4),
        layers.Conv1D(5, 3, activation="relu", padding="same"), layers.MaxPooling1D(2),
        layers.Conv1D(4, 2, padding="causal", dilation_rate=2, activation="tanh"),
        layers.AveragePooling1D(2, strides=1), layers.GlobalMaxPooling1D(),
        layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.random.default_rng(7).standard_normal(w.shape).astype(np.float32)
                       * 0.4 for w in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(0.01), loss="binary_crossentropy",
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_text_convnet_trains_like_the_reference(backend: str) -> None:
    rs = np.random.default_rng(0)
    x = rs.integers(0, 30, (16, 12)).astype(np.int32)
    y = rs.integers(0, 2, (16, 1)).astype(np.float32)
    assert_steps_agree(_text_model(backend), _text_model("reference"), x, y)


def test_conv1d_gradient_matches_finite_differences() -> None:
    """One SGD(1) step's kernel change equals central differences of the loss."""
    rs = np.random.default_rng(1)
    x = rs.standard_normal((4, 7, 2)).astype(np.float32)
    y = rs.standard_normal((4, 4, 2)).astype(np.float32)

    def build() -> models.Model:
        model = models.Sequential([layers.Input((7, 2)),
                                   layers.Conv1D(2, 3, strides=2, padding="same")])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [rs.standard_normal(w.shape).astype(np.float32)
               for w in build().get_weights()]
    assert_gradient_matches_finite_differences(build, weights, x, y, tolerance=1e-3)


def test_configs_weights_and_summary_shapes() -> None:
    conv = layers.Conv1D(6, 5, strides=2, padding="causal", dilation_rate=1, name="c")
    model = models.Sequential([layers.Input((20, 3)), conv, layers.MaxPooling1D(3),
                               layers.GlobalAveragePooling1D(keepdims=True)])
    assert conv.kernel.shape == (5, 3, 6) and conv.bias.shape == (6,)
    assert model.outputs[0].shape == (None, 1, 6)
    assert conv._calls[0].outputs[0].shape == (None, 10, 6)
    config = conv.get_config()
    assert config["kernel_size"] == (5,) and config["strides"] == (2,)
    assert config["padding"] == "causal" and config["dilation_rate"] == (1,)
    assert layers.Conv1D(**config).get_config() == config
    pool = layers.MaxPooling1D(3).get_config()
    assert pool["pool_size"] == (3,) and pool["strides"] == (3,)
    assert layers.MaxPooling1D(pool_size=(3,), strides=1).strides == (1,)


def test_save_and_load(tmp_path) -> None:  # noqa: ANN001
    model = _text_model("reference")
    x = np.random.default_rng(2).integers(0, 30, (5, 12)).astype(np.int32)
    model.save(tmp_path / "text.kiln")
    loaded = models.load_model(tmp_path / "text.kiln", backend="reference")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.Conv1D(0, 3), KilnValueError, "filters"),
    (lambda: layers.Conv1D(2, (3, 3)), KilnValueError, "kernel_size.*tuple of 1"),
    (lambda: layers.Conv1D(2, 3.0), KilnTypeError, "kernel_size"),
    (lambda: layers.Conv1D(2, 3, strides=0), KilnValueError, "strides.*value > 0"),
    (lambda: layers.Conv1D(2, 3, padding="full"), KilnValueError, "'causal'"),
    (lambda: layers.Conv1D(2, 3, strides=2, dilation_rate=2), KilnValueError,
     "dilation_rate > 1"),
    (lambda: layers.Conv1D(2, 3, data_format="channels_first"), KilnValueError,
     r"\(batch, steps, channels\)"),
    (lambda: layers.Conv1D(2, 3, groups=2), KilnValueError, "groups=1"),
    (lambda: layers.MaxPooling1D(2, padding="causal"), KilnValueError, "'valid', 'same'"),
    (lambda: layers.AveragePooling1D(-1), KilnValueError, "pool_size"),
])
def test_constructor_errors(make, error, match) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (lambda: layers.Conv1D(2, 3, name="c1"), (5, 5, 2), "'c1'.*expected ndim=3, found ndim=4"),
    (lambda: layers.Conv1D(2, 3, name="c2"), (5, None), "'c2'.*channel dimension"),
    (lambda: layers.Conv1D(2, 6, name="c3"), (5, 2), "'c3'.*<= 0 due to downsampling"),
    (lambda: layers.Conv1D(2, 2, padding="causal", name="c4"), (None, 2),
     "'c4'.*kiln's Conv1D needs a known number of steps"),
    (lambda: layers.MaxPooling1D(2, name="p0"), (None, 2),
     "'p0'.*kiln's MaxPooling1D needs a known number of steps"),
    (lambda: layers.Conv2D(2, 2, name="c5"), (None, 4, 2),
     "'c5'.*kiln's Conv2D needs known rows and cols"),
    (lambda: layers.MaxPooling1D(4, name="p1"), (3, 2), "'p1'.*<= 0 due to downsampling"),
    (lambda: layers.GlobalMaxPooling1D(name="g1"), (3,), "'g1'.*expected ndim=3"),
])
def test_shape_errors_name_the_layer(layer, shape, match) -> None:  # noqa: ANN001
    with pytest.raises(KilnValueError, match=match):
        models.Sequential([layers.Input(shape), layer()])


def test_global_pooling_of_variable_steps_and_the_mask_refusal() -> None:
    model = models.Sequential([layers.Input((None, 2)), layers.Dense(3),
                               layers.GlobalAveragePooling1D()])
    model.compile(loss="mse", backend="reference")
    for steps in (4, 9):
        assert model.predict(np.ones((2, steps, 2), np.float32), verbose=0).shape == (2, 3)
    with pytest.raises(KilnValueError, match="not as mask="):
        layers.GlobalAveragePooling1D()(layers.Input((4, 2)), mask=layers.Input((4,)))
