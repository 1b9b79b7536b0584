"""kiln.ops, Keras's ops on symbolic tensors: each op and operator against NumPy inside a
Lambda, dtype promotion, indexing; Keras-style custom layers (`call`, `add_weight` by
keyword, `mask` and `training` parameters, `compute_mask`) against NumPy, through a
finite-difference gradient and on every CPU backend; Lambda's saving rules; and the errors
(tests/oracle checks the same layer code against Keras 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models, ops, optimizers
from kiln.ir import KilnError, KilnTypeError, KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(8)
X = RNG.standard_normal((4, 3, 5)).astype(np.float32)
W = RNG.standard_normal((5, 2)).astype(np.float32)
TOL = {"rtol": 2e-5, "atol": 1e-6}


def _apply(fn: Callable, x: np.ndarray, **kwargs: object) -> np.ndarray:
    """fn as a Lambda on x's shape, predicted on the reference backend."""
    seq = layers.Input(x.shape[1:], dtype=str(x.dtype))
    model = models.Model(seq, layers.Lambda(fn, **kwargs)(seq))
    model.compile(loss="mse", backend="reference")
    return model.predict(x, verbose=0)


def _erf(v: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf)(v)


# name -> (kiln's, NumPy's), each of one float tensor
ELEMENTWISE = {
    "abs": (ops.abs, np.abs), "exp": (ops.exp, np.exp),
    "log": (lambda x: ops.log(ops.abs(x) + 1), lambda x: np.log(np.abs(x) + 1)),
    "log1p": (lambda x: ops.log1p(ops.abs(x)), lambda x: np.log1p(np.abs(x))),
    "sqrt": (lambda x: ops.sqrt(ops.abs(x)), lambda x: np.sqrt(np.abs(x))),
    "square": (ops.square, np.square), "negative": (ops.negative, np.negative),
    "sign": (ops.sign, np.sign), "tanh": (ops.tanh, np.tanh),
    "floor": (lambda x: ops.floor(x * 3), lambda x: np.floor(x * 3)),
    "ceil": (lambda x: ops.ceil(x * 3), lambda x: np.ceil(x * 3)),
    "round": (lambda x: ops.round(x * 2), lambda x: np.round(x * 2)),
    "sigmoid": (ops.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "relu": (ops.relu, lambda x: np.maximum(x, 0)),
    "softplus": (ops.softplus, lambda x: np.log1p(np.exp(x))),
    "elu": (lambda x: ops.elu(x, 0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    "leaky_relu": (ops.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x)),
    "silu": (ops.silu, lambda x: x / (1 + np.exp(-x))),
    "gelu_tanh": (ops.gelu, lambda x: 0.5 * x * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    "gelu_exact": (lambda x: ops.gelu(x, approximate=False),
                   lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "erf": (ops.erf, _erf), "expm1": (ops.expm1, np.expm1),
    "log2": (lambda x: ops.log2(ops.abs(x) + 1), lambda x: np.log2(np.abs(x) + 1)),
    "log10": (lambda x: ops.log10(ops.abs(x) + 1), lambda x: np.log10(np.abs(x) + 1)),
    "reciprocal": (lambda x: ops.reciprocal(x + 3), lambda x: 1 / (x + 3)),
    "clip": (lambda x: ops.clip(x, -0.5, 0.25), lambda x: np.clip(x, -0.5, 0.25)),
    "where": (lambda x: ops.where(x > 0, x, ops.zeros_like(x) - 1),
              lambda x: np.where(x > 0, x, -1)),
    "maximum": (lambda x: ops.maximum(x, 0.1), lambda x: np.maximum(x, 0.1)),
    "minimum": (lambda x: ops.minimum(x, x[:, :1]), lambda x: np.minimum(x, x[:, :1])),
    "power": (lambda x: ops.power(ops.abs(x), 1.5), lambda x: np.abs(x) ** 1.5),
    "divide": (lambda x: ops.divide(x, 4), lambda x: x / 4),
    "softmax": (lambda x: ops.softmax(x, axis=1),
                lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
    "log_softmax": (ops.log_softmax, lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_ops_equal_numpy(name: str) -> None:
    ours, theirs = ELEMENTWISE[name]
    np.testing.assert_allclose(_apply(ours, X), theirs(X.astype(np.float64)), **TOL)


REDUCTIONS = {  # name -> (kiln's, NumPy's)
    "sum": (lambda x: ops.sum(x, axis=1), lambda x: x.sum(axis=1)),
    "mean_keepdims": (lambda x: ops.mean(x, axis=(1, 2), keepdims=True),
                      lambda x: x.mean(axis=(1, 2), keepdims=True)),
    "max": (lambda x: ops.max(x, axis=-1), lambda x: x.max(axis=-1)),
    "min": (lambda x: ops.min(x, axis=1), lambda x: x.min(axis=1)),
    "prod": (lambda x: ops.prod(x, axis=2), lambda x: x.prod(axis=2)),
    "var": (lambda x: ops.var(x, axis=1), lambda x: x.var(axis=1)),
    "std": (lambda x: ops.std(x, axis=-1, keepdims=True),
            lambda x: x.std(axis=-1, keepdims=True)),
    "logsumexp": (lambda x: ops.logsumexp(x, axis=1),
                  lambda x: np.log(np.exp(x).sum(axis=1))),
    "argmax": (lambda x: ops.argmax(x, axis=-1), lambda x: x.argmax(axis=-1)),
    "argmin": (lambda x: ops.argmin(x, axis=1), lambda x: x.argmin(axis=1)),
    "any_all": (lambda x: ops.cast(ops.any(x > 1, axis=-1), "int32")
                + 2 * ops.cast(ops.all(x > -1, axis=-1), "int32"),
                lambda x: (x > 1).any(-1) + 2 * (x > -1).all(-1)),
}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_equal_numpy(name: str) -> None:
    ours, theirs = REDUCTIONS[name]
    np.testing.assert_allclose(_apply(ours, X), theirs(X.astype(np.float64)), **TOL)


SHAPES = {  # name -> (kiln's, NumPy's)
    "reshape": (lambda x: ops.reshape(x, (-1, 5, 3)), lambda x: x.reshape(-1, 5, 3)),
    "transpose": (lambda x: ops.transpose(x, (0, 2, 1)), lambda x: x.transpose(0, 2, 1)),
    "expand_squeeze": (lambda x: ops.squeeze(ops.expand_dims(x, -1), axis=3),
                       lambda x: x),
    "concatenate": (lambda x: ops.concatenate([x, 2 * x], axis=1),
                    lambda x: np.concatenate([x, 2 * x], axis=1)),
    "stack": (lambda x: ops.stack([x, -x], axis=1), lambda x: np.stack([x, -x], axis=1)),
    "split": (lambda x: ops.split(x, [1, 4], axis=2)[1], lambda x: x[:, :, 1:4]),
    "tile": (lambda x: ops.tile(x, (1, 2, 1)), lambda x: np.tile(x, (1, 2, 1))),
    "flip": (lambda x: ops.flip(x, axis=1), lambda x: x[:, ::-1]),
    "take": (lambda x: ops.take(x, np.array([4, 0, 4]), axis=2), lambda x: x[:, :, [4, 0, 4]]),
    "pad": (lambda x: ops.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=1.5),
            lambda x: np.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=1.5)),
    "matmul": (lambda x: ops.matmul(x, W), lambda x: x @ W),
    "einsum": (lambda x: ops.einsum("btf,fu->bu", x, W), lambda x: np.einsum("btf,fu->bu",
                                                                             x, W)),
    "one_hot": (lambda x: ops.one_hot(ops.argmax(x, axis=-1), 5),
                lambda x: np.eye(5)[x.argmax(-1)]),
    "full_like": (lambda x: ops.full_like(x, 3.0) + ops.ones_like(x), lambda x: x * 0 + 4),
    "arange": (lambda x: x * ops.arange(ops.shape(x)[-1]) + ops.arange(1.0, 0.0, -0.2),
               lambda x: x * np.arange(5) + np.arange(1.0, 0.0, -0.2)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_shape_ops_equal_numpy(name: str) -> None:
    ours, theirs = SHAPES[name]
    np.testing.assert_allclose(_apply(ours, X), theirs(X.astype(np.float64)), **TOL)


OPERATORS = {  # name -> (kiln's, NumPy's): the same expression on Tensors and arrays
    "arithmetic": lambda x: (2 - x) * x / 3 + x ** 2 - (-x),
    "matmul": lambda x: x @ W,
    "compare": lambda x: ((x > 0) & (x <= 1)) | ~(x != x[:, :1]),
    "index_basic": lambda x: x[:, 1:, ::2],
    "index_int_none": lambda x: x[:, None, -1, 1:4],
    "index_ellipsis": lambda x: x[..., 0] * x[:, 1:2, ...][..., -1],
    "reversed": lambda x: x[:, ::-1, 3:0:-2],
}


@pytest.mark.parametrize("name", OPERATORS)
def test_operators_and_indexing_equal_numpy(name: str) -> None:
    expression = OPERATORS[name]
    got = _apply(expression, X)
    want = expression(X.astype(np.float64))
    np.testing.assert_allclose(got.astype(np.float64), np.asarray(want, np.float64), **TOL)


def test_dtypes_promote_as_keras() -> None:
    ids = (RNG.integers(0, 9, (3, 4))).astype(np.int32)
    assert _apply(lambda x: x * 0.5, ids).dtype == np.float32
    assert _apply(lambda x: x / 2, ids).dtype == np.float32  # true division
    assert _apply(lambda x: x + 1, ids).dtype == np.int32
    assert _apply(lambda x: x + ops.arange(4), ids).dtype == np.int32  # Keras's int32
    assert _apply(lambda x: ops.cast(x, "float32") + ids[0], ids).dtype == np.float32
    np.testing.assert_allclose(_apply(lambda x: x * 0.5, ids), ids * 0.5)


def test_symbolic_batch_and_tensor_properties() -> None:
    seen = {}

    def probe(x: ops.Tensor) -> ops.Tensor:
        seen.update(shape=x.shape, dtype=x.dtype, ndim=x.ndim,
                    len=len(ops.transpose(x, (1, 0, 2))))
        with pytest.raises(KilnTypeError, match="len.. of a tensor needs a known leading"):
            len(x)
        return ops.reshape(x, (-1, 15))

    assert _apply(probe, X).shape == (4, 15)
    assert seen == {"shape": (None, 3, 5), "dtype": "float32", "ndim": 3, "len": 3}


def test_a_length_known_at_run_time_ranges_reshapes_and_computes() -> None:
    def positions(x: ops.Tensor) -> ops.Tensor:
        n, steps, features = ops.shape(x)
        assert (steps, features) == (3, 5) and isinstance(n, ops.Length)
        flat = ops.reshape(x, (n, steps * features))  # the batch symbol, not -1
        rows = ops.cast(ops.arange(n), "float32")  # 0, 1, ..., batch - 1
        return flat * ops.expand_dims(rows, -1) + ops.cast(n, "float32")

    for batch in (2, 5):  # one graph, any batch
        x = RNG.standard_normal((batch, 3, 5)).astype(np.float32)
        np.testing.assert_allclose(_apply(positions, x), x.reshape(batch, 15)
                                   * np.arange(batch)[:, None] + batch, **TOL)


# -- Keras-style custom layers -------------------------------------------------------------
class Affine(layers.Layer):
    """A custom layer as Keras's guide writes one."""

    def __init__(self, units: int = 3, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: tuple) -> None:
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", trainable=True, name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")
        self.count = self.add_weight(shape=(), trainable=False, dtype="int32")

    def call(self, inputs: ops.Tensor, training: bool | None = None) -> ops.Tensor:
        y = ops.tanh(inputs @ self.w + self.b)
        return y * 2.0 if training else y

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


def _affine_model(backend: str = "reference") -> models.Model:
    x = layers.Input((4,))
    model = models.Model(x, layers.Dense(1)(Affine(3, name="affine")(x)))
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
    return model


def test_a_custom_layer_computes_its_call_and_makes_keras_weights() -> None:
    model = _affine_model()
    affine = model.get_layer("affine")
    assert [(v.name, v.shape, v.dtype, v.trainable) for v in affine.variables] == [
        ("w", (4, 3), "float32", True), ("variable", (3,), "float32", True),
        ("variable_1", (), "int32", False)]
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    w, b = affine.w.numpy(), affine.b.numpy()
    kernel, bias = model.get_layer(index=2).get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.tanh(x @ w + b) @ kernel + bias, **TOL)
    # training=True doubles the layer's output: the train step's loss sees it.
    y = np.zeros((5, 1), np.float32)
    doubled = (2 * np.tanh(x @ w + b)) @ kernel + bias
    loss = model.train_on_batch(x, y)
    assert float(loss) == pytest.approx(float(np.mean(doubled ** 2)), rel=1e-5)


def test_a_custom_layers_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        x = layers.Input((4,))
        model = models.Model(x, Affine(2)(x))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [w for w in build().get_weights()]
    weights[0] = RNG.standard_normal(weights[0].shape).astype(np.float32)
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    y = RNG.standard_normal((6, 2)).astype(np.float32)
    # SGD(1) on the doubled training output: the gradient of the train step's loss.
    model = build()
    model.set_weights(weights)
    model.train_on_batch(x, y)
    gradient = weights[0] - model.get_weights()[0]
    w, b = weights[0].astype(np.float64), weights[1].astype(np.float64)

    def loss(w: np.ndarray) -> float:
        return float(np.mean((2 * np.tanh(x @ w + b) - y) ** 2))

    for entry in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[entry] += 1e-4
        down[entry] -= 1e-4
        assert gradient[entry] == pytest.approx((loss(up) - loss(down)) / 2e-4, abs=1e-3)


class MaskedSum(layers.Layer):
    """Sums the steps its input's mask keeps; gives a mask of its own (rows with any)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: ops.Tensor, mask: ops.Tensor | None = None) -> ops.Tensor:
        if mask is None:
            return ops.sum(inputs, axis=1)
        return ops.sum(inputs * ops.expand_dims(ops.cast(mask, inputs.dtype), -1), axis=1)

    def compute_mask(self, inputs: ops.Tensor, mask: ops.Tensor | None = None) -> object:
        return None if mask is None else ops.any(mask, axis=1, keepdims=True)


def test_a_custom_layer_takes_and_gives_masks() -> None:
    ids = layers.Input((4,), dtype="int32")
    e = layers.Embedding(5, 2, mask_zero=True)(ids)
    summed = MaskedSum()(e)
    assert MaskedSum.takes_mask and summed._keras_mask.shape == (None, 1)
    model = models.Model(ids, summed)
    model.compile(loss="mse", backend="reference")
    x = np.array([[1, 2, 0, 0], [0, 0, 0, 0], [3, 3, 3, 4]])
    table = model.layers[1].get_weights()[0]
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               (table[x] * (x != 0)[..., None]).sum(1), **TOL)


def test_lambda_with_a_mask_function_arguments_and_list_inputs() -> None:
    a, c = layers.Input((3,)), layers.Input((3,))
    joined = layers.Lambda(lambda xs, scale: (xs[0] - xs[1]) * scale, arguments={"scale": 3.0},
                           mask=lambda xs, mask: xs[0] > 0)([a, c])
    assert joined._keras_mask is not None
    model = models.Model([a, c], joined)
    model.compile(loss="mse", backend="reference")
    x1, x2 = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict([x1, x2], verbose=0), (x1 - x2) * 3, **TOL)


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_custom_layers_and_lambdas_train_on_every_backend(backend: str) -> None:
    def build(name: str) -> models.Model:
        x = layers.Input((4,))
        y = layers.Lambda(lambda t: ops.concatenate([t, ops.square(t[:, :2])], axis=-1))(x)
        model = models.Model(x, layers.Dense(2)(Affine(3)(y)))
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=name)
        return model

    x = RNG.standard_normal((8, 4)).astype(np.float32)
    y = RNG.standard_normal((8, 2)).astype(np.float32)
    assert_trains_like_the_reference(build, backend, x, y)


def test_lambda_gradient_matches_finite_differences() -> None:
    def build() -> models.Model:
        x = layers.Input((3,))
        h = layers.Dense(3, activation="tanh")(x)
        y = layers.Lambda(lambda t: ops.logsumexp(t * t[:, ::-1], axis=-1, keepdims=True))(h)
        model = models.Model(x, y)
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) for w in build().get_weights()]
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    y = RNG.standard_normal((5, 1)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, weights, x, y, index=0)


# -- saving and errors ---------------------------------------------------------------------
def doubled(x: ops.Tensor) -> ops.Tensor:
    return x * 2


def test_a_named_lambda_saves_and_loads_from_custom_objects(tmp_path: Path) -> None:
    x = layers.Input((3,))
    model = models.Model(x, layers.Lambda(doubled, output_shape=(3,), name="twice")(
        Affine(3)(x)))
    model.compile(loss="mse", backend="reference")
    model.save(tmp_path / "l.kiln")
    with pytest.raises(KilnError, match=r"'twice' \(Lambda\): its function is the function "
                                        r"'doubled'.*custom_objects"):
        models.load_model(tmp_path / "l.kiln", custom_objects={"Affine": Affine})
    loaded = models.load_model(tmp_path / "l.kiln",
                               custom_objects={"Affine": Affine, "doubled": doubled})
    data = RNG.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(data, verbose=0), model.predict(data, verbose=0))
    unnamed = models.Sequential([layers.Input((3,)), layers.Lambda(lambda t: t + 1)])
    unnamed.compile(loss="mse", backend="reference")
    with pytest.raises(KilnValueError, match="a lambda cannot be saved"):
        unnamed.save(tmp_path / "u.kiln")


def test_errors_name_what_went_wrong() -> None:
    with pytest.raises(KilnValueError, match="inside a layer's `call`"):
        ops.exp(np.ones(3))
    with pytest.raises(AttributeError, match="kiln.ops has no 'cumsum' .the IR has no such"):
        ops.cumsum  # noqa: B018
    with pytest.raises(KilnTypeError, match="no truth value"):
        _apply(lambda t: t if t > 0 else -t, X)
    with pytest.raises(KilnValueError, match=r"output_shape says \(None, 4\), but the "
                                             r"function gives \(None, 3, 5\)"):
        _apply(lambda t: t, X, output_shape=(4,))
    with pytest.raises(KilnTypeError, match="indexing takes ints, slices"):
        _apply(lambda t: t[[0, 1]], X)
    with pytest.raises(KilnValueError, match="index 3 is out of bounds for axis 1 with size 3"):
        _apply(lambda t: t[:, 3], X)
    with pytest.raises(KilnValueError, match="arange needs numbers as bounds"):
        _apply(lambda t: t[:, :1] * ops.arange(ops.cast(ops.shape(t)[0], "int32") + 1), X)
    with pytest.raises(KilnValueError, match="known only at run time takes start=0"):
        _apply(lambda t: t[:, :1] * ops.arange(1, ops.shape(t)[0]), X)
    with pytest.raises(KilnTypeError, match="Lambda expects a function"):
        layers.Lambda("exp")
