"""Conv2D and the pooling layers against naive NumPy loops written from Keras's definitions
(TensorFlow's 'same' padding: output = ceil(input / stride), the smaller half of the padding
before), run on the reference runtime."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.ir import KilnError, KilnValueError
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(1)


def predict(model: Model, x: np.ndarray, training: bool = False) -> np.ndarray:
    fg = model.forward_graph(training=training)
    state = {name: var.value for name, var in fg.variables.items()}
    outputs, _ = run_graph(fg.graph, {model.input_names[0]: x}, state)
    return outputs[model.output_names[0]]


def same_padding(size: int, window: int, stride: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of TensorFlow's 'same'."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def windows(x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], padding: str,
            dilation: tuple[int, int] = (1, 1), fill: float = 0.0):
    """Yield (row, col, patch, real) per output position: the dilated window's elements of the
    padded image (batch, kh, kw, channels) and which of them are real (not padding)."""
    n, h, w, c = x.shape
    span = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    if padding == "valid":
        out = [(h - span[0]) // strides[0] + 1, (w - span[1]) // strides[1] + 1]
        before = [0, 0]
    else:
        (oh, top, _), (ow, left, _) = (same_padding(s, k, st)
                                       for s, k, st in zip((h, w), span, strides))
        out, before = [oh, ow], [top, left]
    for r in range(out[0]):
        for q in range(out[1]):
            patch = np.full((n, *window, c), fill, x.dtype)
            real = np.zeros(window, bool)
            for i in range(window[0]):
                for j in range(window[1]):
                    row = r * strides[0] + i * dilation[0] - before[0]
                    col = q * strides[1] + j * dilation[1] - before[1]
                    if 0 <= row < h and 0 <= col < w:
                        patch[:, i, j] = x[:, row, col]
                        real[i, j] = True
            yield r, q, patch, real, out


def conv2d_numpy(x, kernel, bias, strides, padding, dilation):  # noqa: ANN001, ANN201
    result = None
    for r, q, patch, _, out in windows(x, kernel.shape[:2], strides, padding, dilation):
        if result is None:
            result = np.zeros((x.shape[0], *out, kernel.shape[3]), np.float64)
        result[:, r, q] = np.einsum("nijc,ijcf->nf", patch, kernel)
    return result + (0 if bias is None else bias)


def pool_numpy(x, pool, strides, padding, kind):  # noqa: ANN001, ANN201
    result = None
    fill = -np.inf if kind == "max" else 0.0
    for r, q, patch, real, out in windows(x, pool, strides, padding, fill=fill):
        if result is None:
            result = np.zeros((x.shape[0], *out, x.shape[3]), np.float64)
        if kind == "max":
            result[:, r, q] = patch.max(axis=(1, 2))
        else:  # padding does not count in the average (TensorFlow's avg_pool)
            result[:, r, q] = patch.sum(axis=(1, 2)) / real.sum()
    return result


# -- Conv2D ---------------------------------------------------------------------------------
CONV_CASES = [
    dict(kernel_size=3, strides=1, padding="valid", dilation_rate=1),
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=1),
    dict(kernel_size=(2, 3), strides=(2, 1), padding="same", dilation_rate=1),
    dict(kernel_size=3, strides=2, padding="valid", dilation_rate=1),
    dict(kernel_size=(3, 2), strides=(2, 2), padding="same", dilation_rate=1),
    dict(kernel_size=2, strides=1, padding="same", dilation_rate=2),
    dict(kernel_size=(2, 3), strides=1, padding="valid", dilation_rate=(2, 1)),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv2d_matches_naive_loop(case: dict, use_bias: bool) -> None:
    x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
    model = Sequential([layers.Input(shape=(7, 6, 3)),
                        layers.Conv2D(4, use_bias=use_bias, **case)])
    conv = model.layers[0]
    kh, kw = conv.kernel_size
    weights = [RNG.normal(size=(kh, kw, 3, 4)).astype(np.float32)]
    if use_bias:
        weights.append(RNG.normal(size=(4,)).astype(np.float32))
    model.set_weights(weights)
    expected = conv2d_numpy(x, weights[0], weights[1] if use_bias else None, conv.strides,
                            case["padding"], conv.dilation_rate)
    y = predict(model, x)
    assert model.outputs[0].shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conv2d_same_padding_puts_the_extra_row_after() -> None:
    """A 2x2 kernel with 'same' pads one row/col, after the image: output[-1, -1] sees only
    the last pixel."""
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    model = Sequential([layers.Input(shape=(3, 3, 1)),
                        layers.Conv2D(1, 2, padding="same", use_bias=False)])
    model.set_weights([np.ones((2, 2, 1, 1), np.float32)])
    y = predict(model, x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[8, 12, 7], [20, 24, 13], [13, 15, 8]])


def test_conv2d_activation_and_weights() -> None:
    model = Sequential([layers.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3, activation="relu")])
    conv = model.layers[0]
    assert [w.path for w in model.weights] == [f"{conv.name}/kernel", f"{conv.name}/bias"]
    assert [w.shape for w in model.weights] == [(3, 3, 1, 32), (32,)]
    assert model.count_params() == 320
    assert model.outputs[0].shape == (None, 26, 26, 32)
    x = RNG.normal(size=(1, 28, 28, 1)).astype(np.float32)
    kernel, bias = model.get_weights()
    np.testing.assert_array_equal(bias, 0)
    expected = np.maximum(conv2d_numpy(x, kernel, bias, (1, 1), "valid", (1, 1)), 0)
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-5)


def test_conv2d_glorot_uniform_limits() -> None:
    conv = Sequential([layers.Input(shape=(8, 8, 3)), layers.Conv2D(16, 3)]).layers[0]
    kernel = conv.kernel.numpy()
    limit = np.sqrt(6 / (3 * 9 + 16 * 9))  # fans count the receptive field, as Keras does
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.8 * limit


def test_book_convnet_param_counts() -> None:
    """Deep Learning with Python, chapter 8's MNIST convnet: 104,202 parameters."""
    inputs = layers.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = Model(inputs=inputs, outputs=outputs)
    counts = [layer.count_params() for layer in model.layers]
    assert counts == [0, 320, 0, 18496, 0, 73856, 0, 11530]
    assert model.count_params() == 104202
    assert [t.shape for t in (x, outputs)] == [(None, 1152), (None, 10)]


def test_conv2d_config() -> None:
    config = layers.Conv2D(8, 3, strides=2, padding="SAME", name="c").get_config()
    assert config["kernel_size"] == (3, 3)
    assert config["strides"] == (2, 2)
    assert config["padding"] == "same"
    assert config["dilation_rate"] == (1, 1)
    assert config["data_format"] == "channels_last"
    assert config["activation"] == "linear"
    assert config["kernel_initializer"] == "glorot_uniform"
    assert config["filters"] == 8 and config["name"] == "c"


def test_conv2d_on_rank_3_input_names_layer_and_ndim() -> None:
    with pytest.raises(KilnValueError, match=r"layer 'my_conv'.*expected ndim=4, found ndim=3"):
        layers.Conv2D(4, 3, name="my_conv")(layers.Input(shape=(28, 28)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0, kernel_size=3), "filters=0"),
    (dict(filters=4, kernel_size=(0, 3)), "kernel_size"),
    (dict(filters=4, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(filters=4, kernel_size=3, padding="full"), "padding='full'"),
    (dict(filters=4, kernel_size=3, data_format="channels_first"), "channels_last"),
    (dict(filters=4, kernel_size=3, data_format="nhwc"), "data_format='nhwc'"),
    (dict(filters=4, kernel_size=3, strides=2, dilation_rate=2), "dilation_rate"),
    (dict(filters=4, kernel_size=3, groups=2), "groups=2"),
])
def test_conv2d_arguments_checked_in_constructor(kwargs: dict, message: str) -> None:
    with pytest.raises(KilnError, match=message):
        layers.Conv2D(**kwargs)


def test_conv2d_shape_errors() -> None:
    conv = layers.Conv2D(4, 3, name="shared")
    conv(layers.Input(shape=(8, 8, 1)))
    with pytest.raises(KilnValueError, match="expected axis -1 of input shape to have value 1"):
        conv(layers.Input(shape=(8, 8, 2)))
    with pytest.raises(KilnValueError, match="<= 0"):
        layers.Conv2D(4, 5)(layers.Input(shape=(3, 8, 1)))
    with pytest.raises(KilnValueError, match="channel dimension"):
        layers.Conv2D(4, 3)(layers.Input(shape=(8, 8, None)))


# -- pooling --------------------------------------------------------------------------------
POOL_CASES = [
    dict(pool_size=2, strides=None, padding="valid"),
    dict(pool_size=(2, 3), strides=None, padding="same"),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=3, strides=(1, 2), padding="valid"),
    dict(pool_size=2, strides=1, padding="same"),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("layer, kind", [(layers.MaxPooling2D, "max"),
                                         (layers.AveragePooling2D, "avg")])
def test_pooling_matches_naive_loop(case: dict, layer: type, kind: str) -> None:
    x = RNG.normal(size=(2, 7, 5, 3)).astype(np.float32)
    model = Sequential([layers.Input(shape=(7, 5, 3)), layer(**case)])
    pool = model.layers[0]
    expected = pool_numpy(x, pool.pool_size, pool.strides, case["padding"], kind)
    assert model.outputs[0].shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-6)
    assert model.count_params() == 0


def test_pooling_defaults_and_config() -> None:
    pool = layers.MaxPooling2D()
    assert (pool.pool_size, pool.strides, pool.padding) == ((2, 2), (2, 2), "valid")
    config = layers.AveragePooling2D(3, strides=1, padding="same").get_config()
    assert config["pool_size"] == (3, 3) and config["strides"] == (1, 1)
    assert config["padding"] == "same" and config["data_format"] == "channels_last"


def test_pooling_errors() -> None:
    with pytest.raises(KilnValueError, match=r"layer 'pool'.*expected ndim=4, found ndim=2"):
        layers.MaxPooling2D(name="pool")(layers.Input(shape=(8,)))
    with pytest.raises(KilnValueError, match="channels_last"):
        layers.MaxPooling2D(data_format="channels_first")
    with pytest.raises(KilnValueError, match="pool_size"):
        layers.AveragePooling2D(pool_size=-1)
    with pytest.raises(KilnValueError, match="<= 0"):
        layers.MaxPooling2D(3)(layers.Input(shape=(2, 8, 1)))


# -- global pooling -------------------------------------------------------------------------
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("layer, reduce", [(layers.GlobalAveragePooling2D, np.mean),
                                           (layers.GlobalMaxPooling2D, np.max)])
def test_global_pooling(keepdims: bool, layer: type, reduce: object) -> None:
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    model = Sequential([layers.Input(shape=(4, 5, 3)), layer(keepdims=keepdims)])
    expected = reduce(x, axis=(1, 2), keepdims=keepdims)
    assert model.outputs[0].shape == (None, *expected.shape[1:])
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-6, atol=1e-6)
    assert model.layers[0].get_config()["keepdims"] is keepdims


def test_global_pooling_channels_first_and_rank_check() -> None:
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 4, 5)),
                        layers.GlobalAveragePooling2D(data_format="channels_first")])
    np.testing.assert_allclose(predict(model, x), x.mean(axis=(2, 3)), rtol=1e-6)
    with pytest.raises(KilnValueError, match="expected ndim=4, found ndim=3"):
        layers.GlobalMaxPooling2D()(layers.Input(shape=(4, 5)))
