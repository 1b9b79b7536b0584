"""Conv2DTranspose and Conv1DTranspose against Keras 3's definition computed directly in
NumPy (the input dilated by the strides, padded as Keras's JAX backend pads it, correlated
with the flipped kernel), with hypothesis over sizes, kernels, strides, dilations, paddings
and output paddings; the adjoint identity with Conv2D; training on numba and onnxruntime
like the reference; gradients against finite differences; configs and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(13)


def keras_pads(kernel: int, stride: int, dilation: int, padding: str,
               output_padding: int | None) -> tuple[int, int]:
    """Keras 3's padding of the stride-dilated input (backend_utils, the JAX form)."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return span - 1, span - 1 + extra
    if output_padding is None:
        total = stride + span - 2
    else:
        total = span + span % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, span - 1)
    return left, total - left


def keras_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str,
                      output_padding: int | None) -> int:
    """Keras 3's _get_output_shape_given_tf_padding."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return (size - 1) * stride + span + extra
    if output_padding is None:
        return size * stride
    return (size - 1) * stride + span % 2 + output_padding


def conv_transpose(x: np.ndarray, kernel: np.ndarray, strides: tuple, dilation: tuple,
                   padding: str, output_padding: tuple | None) -> np.ndarray:
    """x (N, H, W, Cin), kernel (kh, kw, Cout, Cin) -> (N, H', W', Cout)."""
    n, h, w, _ = x.shape
    kh, kw, cout, _ = kernel.shape
    ops = output_padding or (None, None)
    pads = [keras_pads(k, s, d, padding, op)
            for k, s, d, op in zip((kh, kw), strides, dilation, ops)]
    dilated = np.zeros((n, (h - 1) * strides[0] + 1, (w - 1) * strides[1] + 1, x.shape[3]))
    dilated[:, ::strides[0], ::strides[1]] = x
    padded = np.pad(dilated, ((0, 0), *pads, (0, 0)))
    flipped = kernel[::-1, ::-1]
    span = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilation)]
    out_h, out_w = padded.shape[1] - span[0] + 1, padded.shape[2] - span[1] + 1
    out = np.zeros((n, out_h, out_w, cout))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dilation[0]:i * dilation[0] + out_h,
                            j * dilation[1]:j * dilation[1] + out_w]
            out += window @ flipped[i, j].T
    return out


def _predict(layer: layers.Layer, x: np.ndarray) -> np.ndarray:
    model = models.Sequential([layers.Input(x.shape[1:]), layer])
    model.set_weights([RNG.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.compile(loss="mse", backend="reference")
    out = model.predict(x, verbose=0)
    assert model.outputs[0].shape == (None, *out.shape[1:])
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_conv2d_transpose_matches_keras_definition(data: st.DataObject) -> None:
    size = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    kernel = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    strides = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    output_padding = data.draw(st.one_of(st.none(), st.tuples(
        st.integers(0, strides[0] - 1), st.integers(0, strides[1] - 1))))
    if padding == "same" and output_padding is not None:
        # Keras's own size formula needs a positive output here.
        spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        if any(span % 2 + op < 1 for span, op in zip(spans, output_padding)):
            output_padding = None
    layer = layers.Conv2DTranspose(2, kernel, strides=strides, padding=padding,
                                   output_padding=output_padding, dilation_rate=dilation)
    x = RNG.standard_normal((2, *size, 3)).astype(np.float32)
    out = _predict(layer, x)
    want = conv_transpose(x, layer.kernel.numpy(), strides, dilation, padding, output_padding)
    want += layer.bias.numpy()
    ops = output_padding or (None, None)
    assert out.shape[1:3] == tuple(keras_output_size(n, k, s, d, padding, op) for n, k, s, d, op
                                   in zip(size, kernel, strides, dilation, ops))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(1, 3), st.sampled_from(["valid", "same"]))
def test_conv1d_transpose_is_the_2d_one_on_a_row(steps: int, kernel: int, stride: int,
                                                 padding: str) -> None:
    layer = layers.Conv1DTranspose(2, kernel, strides=stride, padding=padding)
    x = RNG.standard_normal((2, steps, 3)).astype(np.float32)
    out = _predict(layer, x)
    want = conv_transpose(x[:, None], layer.kernel.numpy()[None], (1, stride), (1, 1),
                          padding, None)[:, 0] + layer.bias.numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding, size, output_padding", [("valid", (7, 6), None),
                                                         ("same", (7, 5), (0, 1)),
                                                         ("same", (8, 6), None)])
def test_is_the_adjoint_of_conv2d(padding: str, size: tuple, output_padding: tuple) -> None:
    """<conv2d_transpose(y, W), z> == <y, conv2d(z, W)>: the gradient of Conv2D."""
    kernel = RNG.standard_normal((3, 2, 4, 5)).astype(np.float32)  # (kh, kw, in, out)
    conv = models.Sequential([layers.Input((*size, 4)),
                              layers.Conv2D(5, (3, 2), strides=2, padding=padding,
                                            use_bias=False)])
    conv.set_weights([kernel])
    conv.compile(loss="mse", backend="reference")
    z = RNG.standard_normal((2, *size, 4)).astype(np.float32)
    forward = conv.predict(z, verbose=0)
    transpose = models.Sequential([layers.Input(forward.shape[1:]), layers.Conv2DTranspose(
        4, (3, 2), strides=2, padding=padding, use_bias=False,
        output_padding=output_padding)])
    transpose.set_weights([kernel])
    transpose.compile(loss="mse", backend="reference")
    y = RNG.standard_normal(forward.shape).astype(np.float32)
    back = transpose.predict(y, verbose=0)
    assert back.shape == z.shape
    assert float((back * z).sum()) == pytest.approx(float((y * forward).sum()), rel=1e-4)


def _generator(backend: str) -> models.Model:
    """A small DCGAN-style decoder: Dense -> Reshape -> two Conv2DTranspose, one with
    "same" geometry, one "valid" with output_padding."""
    model = models.Sequential([
        layers.Input((3,)), layers.Dense(2 * 2 * 4), layers.LeakyReLU(0.2),
        layers.Reshape((2, 2, 4)),
        layers.Conv2DTranspose(3, 3, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(1, 2, strides=3, output_padding=1, activation="tanh")])
    model.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * 0.4
                       for w in model.get_weights()])
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse", backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_trains_like_the_reference(backend: str) -> None:
    assert _generator("reference").outputs[0].shape == (None, 12, 12, 1)
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    y = RNG.uniform(-1, 1, (4, 12, 12, 1)).astype(np.float32)
    assert_trains_like_the_reference(_generator, backend, x, y)


def test_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        model = models.Sequential([layers.Input((2, 2, 1)), layers.Conv2DTranspose(
            1, 3, strides=2, padding="same", output_padding=1), layers.Flatten(),
            layers.Dense(1)])
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    # Its own generator: drawn after the hypothesis tests above, the module's would depend
    # on how many examples they ran.
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in build().get_weights()]
    x = rng.standard_normal((2, 2, 2, 1)).astype(np.float32)
    y = rng.standard_normal((2, 1)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, weights, x, y, index=0)


def test_config_weights_and_errors() -> None:
    layer = layers.Conv2DTranspose(3, (2, 3), strides=2, padding="same", output_padding=1,
                                   activation="relu", kernel_regularizer="l2")
    models.Sequential([layers.Input((4, 4, 5)), layer])
    assert layer.kernel.shape == (2, 3, 3, 5) and layer.bias.shape == (3,)
    config = layer.get_config()
    assert config["output_padding"] == (1, 1) and "groups" not in config
    assert layers.Conv2DTranspose(**config).get_config() == config
    with pytest.raises(KilnValueError, match="'up'.*output_padding.*smaller than its stride"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=2, name="up")
    with pytest.raises(KilnValueError, match="'up1'.*needs known rows and cols"):
        models.Sequential([layers.Input((None, 4, 2)), layers.Conv2DTranspose(2, 3, name="up1")])
    with pytest.raises(KilnValueError, match="expected ndim=3, found ndim=4"):
        models.Sequential([layers.Input((3, 4, 2)), layers.Conv1DTranspose(2, 3)])
