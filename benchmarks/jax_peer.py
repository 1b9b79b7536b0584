"""JAX's side: the same models as pure functions over kiln's weights (Keras layout:
NHWC convolutions, HWIO kernels, gates i, f, c, o), the training step and predict under
jax.jit, RMSprop written out as Keras 3 defines it (epsilon inside the root).

The step donates the parameters and the optimizer state so XLA may update them in place,
as kiln does; the LSTM runs its 100 steps with lax.scan. The augmented convnet resamples in
the training step only, by jax.scipy.ndimage.map_coordinates (order 1, "reflect": half-sample
symmetric, as Keras's) per image and channel under vmap, on coordinates computed once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.ndimage import map_coordinates

from benchmarks.models import (
    A_CONVS,
    EPSILON,
    LEARNING_RATE,
    RHO,
    SEPARABLE,
    SEPARABLE_POOLS,
    T_EMBED,
    augment_coordinates,
    binary,
)

Params = list  # the weights in Keras's get_weights() order


def _pool(x: jax.Array) -> jax.Array:
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _conv(x: jax.Array, k: jax.Array, b: jax.Array) -> jax.Array:
    y = lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(y + b)


def _separable(x: jax.Array, depthwise: jax.Array, pointwise: jax.Array,
               b: jax.Array) -> jax.Array:
    """SeparableConv2D 3x3 relu: a grouped convolution (one group per channel; the (3, 3,
    C, 1) kernel as (3, 3, 1, C)), then the 1x1 pointwise kernel as a matmul."""
    channels = x.shape[-1]
    y = lax.conv_general_dilated(x, depthwise.reshape(3, 3, 1, channels), (1, 1), "VALID",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 feature_group_count=channels)
    return jax.nn.relu(y @ pointwise[0, 0] + b)


def _layer_norm(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
    mean = x.mean(axis=-1, keepdims=True)
    variance = jnp.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(variance + 1e-3) * gamma + beta


def _encoder(p: Params, tokens: jax.Array) -> jax.Array:
    """The transformer classifier: attention as einsums over (batch, position, head, dim)."""
    emb, qk, qb, kk, kb, vk, vb, ok, ob, g1, b1, k1, c1, k2, c2, g2, b2, w, b = p
    x = emb[tokens]
    q = (jnp.einsum("btc,chd->bthd", x, qk) + qb) / np.sqrt(T_EMBED)
    k = jnp.einsum("btc,chd->bthd", x, kk) + kb
    v = jnp.einsum("btc,chd->bthd", x, vk) + vb
    probs = jax.nn.softmax(jnp.einsum("bshd,bthd->bhts", k, q), axis=-1)
    a = jnp.einsum("bhts,bshd->bthd", probs, v)
    x = _layer_norm(x + jnp.einsum("bthd,hde->bte", a, ok) + ob, g1, b1)
    x = _layer_norm(x + jax.nn.relu(x @ k1 + c1) @ k2 + c2, g2, b2)
    return x.max(axis=1) @ w + b


def _augment(x: jax.Array) -> jax.Array:
    """The fixed rotation then zoom of NHWC images: map_coordinates on one (H, W) plane,
    vmapped over the channels and the batch; the coordinates are constants of the trace."""
    for xs, ys in augment_coordinates(x.shape[1], x.shape[2]):
        coords = [jnp.asarray(ys, jnp.float32), jnp.asarray(xs, jnp.float32)]

        def plane(image: jax.Array, coords: list = coords) -> jax.Array:
            return map_coordinates(image, coords, order=1, mode="reflect")

        x = jax.vmap(jax.vmap(plane, in_axes=2, out_axes=2))(x)
    return x


def logits(name: str, p: Params, x: jax.Array, training: bool = False) -> jax.Array:
    if name == "mlp":
        return jax.nn.relu(x @ p[0] + p[1]) @ p[2] + p[3]
    if name == "convnet":
        h = _pool(_conv(x, p[0], p[1]))
        h = _pool(_conv(h, p[2], p[3]))
        return h.reshape(h.shape[0], -1) @ p[4] + p[5]
    if name == "transformer":
        return _encoder(p, x)
    if name == "augmented":  # the convnet above after augmenting (in training) and rescaling
        h = (_augment(x) if training else x) * (1.0 / 255)
        for k in range(len(A_CONVS)):
            h = _pool(_conv(h, p[2 * k], p[2 * k + 1]))
        return h.reshape(h.shape[0], -1) @ p[-2] + p[-1]
    if name == "separable":
        h = x
        for k in range(len(SEPARABLE)):
            h = _separable(h, *p[3 * k:3 * k + 3])
            if k in SEPARABLE_POOLS:
                h = _pool(h)
        w1, b1, w2, b2 = p[-4:]
        return jax.nn.relu(h.mean(axis=(1, 2)) @ w1 + b1) @ w2 + b2
    emb, kernel, recurrent, bias, w, b = p
    xs = jnp.swapaxes(emb[x] @ kernel + bias, 0, 1)  # time-major input projections

    def cell(carry: tuple[jax.Array, jax.Array], xw: jax.Array):  # noqa: ANN202
        h, c = carry
        i, f, g, o = jnp.split(xw + h @ recurrent, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

    zeros = jnp.zeros((x.shape[0], recurrent.shape[0]), jnp.float32)
    (h, _), _ = lax.scan(cell, (zeros, zeros), xs)
    return h @ w + b


def loss(name: str, p: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    z = logits(name, p, x, training=True)
    if binary(name):
        return -jnp.mean(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=-1))


def probabilities(name: str, p: Params, x: jax.Array) -> jax.Array:
    z = logits(name, p, x)
    return jax.nn.sigmoid(z) if binary(name) else jax.nn.softmax(z, axis=-1)


class JaxPeer:
    """One model's jitted train step and predict; params and RMSprop state kept here."""

    def __init__(self, name: str, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray):
        self.name = name
        self.params = [jnp.asarray(w) for w in weights]
        self.velocity = [jnp.zeros_like(w) for w in self.params]
        self.x, self.y = jax.device_put(x), jax.device_put(y)

        def step(params: Params, velocity: Params, x: jax.Array, y: jax.Array):  # noqa: ANN202
            value, grads = jax.value_and_grad(lambda q: loss(name, q, x, y))(params)
            velocity = [RHO * v + (1 - RHO) * g * g for v, g in zip(velocity, grads)]
            params = [w - LEARNING_RATE * g / jnp.sqrt(v + EPSILON)
                      for w, g, v in zip(params, grads, velocity)]
            return params, velocity, value

        self._step = jax.jit(step, donate_argnums=(0, 1))
        self._predict = jax.jit(lambda p, x: probabilities(name, p, x))

    def step(self) -> jax.Array:
        self.params, self.velocity, value = self._step(self.params, self.velocity, self.x,
                                                       self.y)
        return value.block_until_ready()

    def train(self) -> Callable[[], object]:
        return self.step

    def loss(self) -> float:
        return float(self.step())

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.params, x))

    def predict_jit(self, x: np.ndarray) -> Callable[[], object]:
        fn = self._predict

        def call() -> jax.Array:  # reads self.params each call: they move after a step
            return fn(self.params, x).block_until_ready()

        return call
