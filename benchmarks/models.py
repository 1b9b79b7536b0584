"""The benchmark models (MLP, convnet, LSTM, the book's chapter-7 depthwise-separable
convnet, its chapter-11 transformer encoder and its chapter-8 convnet with data augmentation):
their shapes, initial weights and data, in Keras's layout.

Weights are drawn once from a seed (Glorot-uniform kernels, small random biases so that a
wrong bias mapping shows in the correctness check) and every framework gets a copy,
converted to its own layout by its module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("mlp", "convnet", "lstm", "separable", "transformer", "augmented")


@dataclass(frozen=True)
class Spec:
    name: str
    batch: int  # the training batch size
    x_shape: tuple[int, ...]  # one sample
    x_dtype: str
    outputs: int  # classes (softmax) or 1 (sigmoid)
    loss: str  # the Keras loss name


SPECS = {
    "mlp": Spec("mlp", 128, (784,), "float32", 10, "categorical_crossentropy"),
    "convnet": Spec("convnet", 64, (28, 28, 1), "float32", 10, "categorical_crossentropy"),
    "lstm": Spec("lstm", 128, (100,), "int32", 1, "binary_crossentropy"),
    "separable": Spec("separable", 32, (64, 64, 3), "float32", 10, "categorical_crossentropy"),
    "transformer": Spec("transformer", 32, (128,), "int32", 1, "binary_crossentropy"),
    "augmented": Spec("augmented", 32, (64, 64, 3), "float32", 1, "binary_crossentropy"),
}
VOCAB, EMBED, UNITS = 10000, 32, 32  # the LSTM's embedding and cell sizes
LEARNING_RATE, RHO, EPSILON = 0.001, 0.9, 1e-7  # Keras's RMSprop defaults


def _glorot(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
            fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


# The book's chapter-7 model (Deep Learning with Python, 7.3.2): SeparableConv2D 3x3 relu
# layers of these (in, out) channels on 64x64x3 images, max pooling 2 after the 2nd and 4th,
# then global average pooling, Dense 32 relu, Dense 10 softmax.
SEPARABLE = ((3, 32), (32, 64), (64, 64), (64, 128), (128, 64), (64, 128))
SEPARABLE_POOLS = (1, 3)  # the layers a 2x2 max pooling follows


# The book's chapter-11 text classifier (Deep Learning with Python, 11.4.3) in small: token
# embeddings, one TransformerEncoder (MultiHeadAttention with key_dim = the embedding size,
# add and LayerNormalization, a relu Dense then a Dense back, add and LayerNormalization),
# GlobalMaxPooling1D and a sigmoid Dense; sequences of 128 tokens (the book's 600 would
# make a step of minutes on two cores), no dropout (so every framework's loss agrees).
T_VOCAB, T_EMBED, T_HEADS, T_DENSE = 10000, 64, 2, 32


# The book's chapter-8 convnet with data augmentation (Deep Learning with Python, 8.2.5) in
# small, on 64x64x3 pixels in [0, 255): RandomRotation, RandomZoom (fill "reflect", bilinear),
# Rescaling(1/255), Conv2D 16 and 32 (3x3 relu) each followed by a 2x2 max pooling, Flatten,
# Dense 1 sigmoid. The factors are fixed ranges, (f, f), so every framework resamples by the
# same transform (a drawn one would cost the same): always 18 degrees, always zoom 1.2 (out).
A_ROTATION, A_ZOOM, A_CONVS = 0.05, 0.2, (16, 32)
A_FLAT = 14 * 14 * A_CONVS[-1]  # 64 -> conv 62 -> pool 31 -> conv 29 -> pool 14


def augment_rows(h: int, w: int) -> list[tuple[float, ...]]:
    """The augmented model's two resamplings, in order (the rotation, then the zoom), as Keras's
    affine rows (a0, a1, a2, b0, b1, b2): the output pixel (row y, col x) reads the input at
    x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2 (pixel indices from pixel 0's centre)."""
    theta = A_ROTATION * 360.0 * np.pi / 180.0
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    z = 1.0 + A_ZOOM
    return [(cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos),
            (z, 0.0, (w - 1) / 2.0 * (1 - z), 0.0, z, (h - 1) / 2.0 * (1 - z))]


def augment_coordinates(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per resampling of augment_rows, the input coordinates (x_in, y_in) that each output
    pixel reads, two (h, w) float64 arrays; bilinear between floor and floor + 1, a neighbour
    outside the image mapped back by "reflect" (half-sample symmetric: d c b a | a b c d)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return [(a0 * x + a1 * y + a2, b0 * x + b1 * y + b2)
            for a0, a1, a2, b0, b1, b2 in augment_rows(h, w)]


def augment_numpy(images: np.ndarray) -> np.ndarray:
    """The two resamplings on NHWC images in NumPy (float64), as Keras's "reflect" and
    bilinear define them: the yardstick of the peers' resampling in the tests."""
    n, h, w, c = images.shape
    out = np.asarray(images, np.float64)
    for xs, ys in augment_coordinates(h, w):
        x0, y0 = np.floor(xs), np.floor(ys)
        fx, fy = xs - x0, ys - y0

        def reflect(i: np.ndarray, size: int) -> np.ndarray:
            i = np.mod(i.astype(np.int64), 2 * size)
            return np.where(i < size, i, 2 * size - 1 - i)

        xi = [reflect(x0, w), reflect(x0 + 1, w)]
        yi = [reflect(y0, h), reflect(y0 + 1, h)]
        wx, wy = [1 - fx, fx], [1 - fy, fy]
        out = sum(out[:, yi[r], xi[s]] * (wy[r] * wx[s])[None, :, :, None]
                  for r in range(2) for s in range(2))
    return out


def binary(name: str) -> bool:
    """Whether the model ends in one sigmoid unit (binary crossentropy)."""
    return SPECS[name].loss == "binary_crossentropy"


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-0.05, 0.05, n).astype(np.float32)


def weights(name: str, seed: int = 0) -> list[np.ndarray]:
    """The model's weights in Keras 3's get_weights() order and layout."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        return [_glorot(rng, (784, 512), 784, 512), _bias(rng, 512),
                _glorot(rng, (512, 10), 512, 10), _bias(rng, 10)]
    if name == "convnet":  # kernels HWIO, the dense kernel over the NHWC flatten (5*5*64)
        return [_glorot(rng, (3, 3, 1, 32), 9, 9 * 32), _bias(rng, 32),
                _glorot(rng, (3, 3, 32, 64), 9 * 32, 9 * 64), _bias(rng, 64),
                _glorot(rng, (1600, 10), 1600, 10), _bias(rng, 10)]
    if name == "lstm":  # gates in Keras's order i, f, c, o
        # Embeddings drawn wider than Keras's +-0.05 so that the LSTM's output moves with
        # its weights and the correctness check can see a wrong gate or bias mapping.
        return [rng.uniform(-1.0, 1.0, (VOCAB, EMBED)).astype(np.float32),
                _glorot(rng, (EMBED, 4 * UNITS), EMBED, 4 * UNITS),
                _glorot(rng, (UNITS, 4 * UNITS), UNITS, 4 * UNITS), _bias(rng, 4 * UNITS),
                _glorot(rng, (UNITS, 1), UNITS, 1), _bias(rng, 1)]
    if name == "separable":  # per SeparableConv2D: depthwise (3,3,C,1), pointwise (1,1,C,F), bias
        out = []
        for cin, cout in SEPARABLE:
            out += [_glorot(rng, (3, 3, cin, 1), 9, 9), _glorot(rng, (1, 1, cin, cout), cin, cout),
                    _bias(rng, cout)]
        return out + [_glorot(rng, (128, 32), 128, 32), _bias(rng, 32),
                      _glorot(rng, (32, 10), 32, 10), _bias(rng, 10)]
    if name == "transformer":  # Keras 3's get_weights() order of the encoder's layers
        e, h, d = T_EMBED, T_HEADS, T_DENSE
        heads = []
        for _ in range(3):  # query, key, value: kernel (E, heads, E), bias (heads, E)
            heads += [_glorot(rng, (e, h, e), e, h * e), _bias(rng, h * e).reshape(h, e)]
        return [rng.uniform(-0.5, 0.5, (T_VOCAB, e)).astype(np.float32), *heads,
                _glorot(rng, (h, e, e), h * e, e), _bias(rng, e),
                1 + _bias(rng, e), _bias(rng, e),  # LayerNormalization gamma, beta
                _glorot(rng, (e, d), e, d), _bias(rng, d), _glorot(rng, (d, e), d, e),
                _bias(rng, e), 1 + _bias(rng, e), _bias(rng, e),
                _glorot(rng, (e, 1), e, 1), _bias(rng, 1)]
    if name == "augmented":  # kernels HWIO, the dense kernel over the NHWC flatten (14*14*32)
        c1, c2 = A_CONVS
        return [_glorot(rng, (3, 3, 3, c1), 9 * 3, 9 * c1), _bias(rng, c1),
                _glorot(rng, (3, 3, c1, c2), 9 * c1, 9 * c2), _bias(rng, c2),
                _glorot(rng, (A_FLAT, 1), A_FLAT, 1), _bias(rng, 1)]
    raise ValueError(f"expected a model name in {MODELS}. Received: name={name!r}")


def data(name: str, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n samples shaped like the model's data (MNIST-like pixels in [0, 1), one-hot labels;
    word indices below 10,000 and 0/1 labels for the LSTM and the transformer; pixels in
    [0, 255) and 0/1 labels for the augmented convnet, which rescales them itself)."""
    spec = SPECS[name]
    rng = np.random.default_rng(seed)
    if name in ("lstm", "transformer"):
        x = rng.integers(0, VOCAB if name == "lstm" else T_VOCAB,
                         (n, *spec.x_shape)).astype(np.int32)
        y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        return x, y
    x = rng.random((n, *spec.x_shape), dtype=np.float32)
    if name == "augmented":
        return x * np.float32(255), rng.integers(0, 2, (n, 1)).astype(np.float32)
    y = np.eye(spec.outputs, dtype=np.float32)[rng.integers(0, spec.outputs, n)]
    return x, y


def blas_floor(name: str, batch: int, repeats: int = 50) -> dict[str, float] | None:
    """Speed of light of the MLP step: its five matrix products alone (forward 2, backward 3;
    the input's gradient is not needed) with numpy's BLAS into preallocated outputs."""
    if name != "mlp":
        return None
    import time

    rng = np.random.default_rng(2)
    x = rng.random((batch, 784), dtype=np.float32)
    w1, w2 = weights("mlp")[0], weights("mlp")[2]
    h, logits = np.empty((batch, 512), np.float32), np.empty((batch, 10), np.float32)
    dw2, dh, dw1 = (np.empty((512, 10), np.float32), np.empty((batch, 512), np.float32),
                    np.empty((784, 512), np.float32))

    def products() -> None:
        np.dot(x, w1, out=h)
        np.dot(h, w2, out=logits)
        np.dot(h.T, logits, out=dw2)
        np.dot(logits, w2.T, out=dh)
        np.dot(x.T, dh, out=dw1)

    for _ in range(5):
        products()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        products()
        times.append(time.perf_counter() - start)
    flops = 2 * batch * (2 * 784 * 512 + 3 * 512 * 10)
    return {"median": float(np.median(times)), "min": float(np.min(times)),
            "gflops_at_min": flops / float(np.min(times)) / 1e9}
