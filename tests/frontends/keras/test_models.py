"""Model structure: Sequential (list, add, pop, leading Input, input_shape), functional models
with several inputs and outputs, shared layers, and models called on tensors as layers."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models
from kiln.ir import KilnTypeError, KilnValueError
from kiln.runtimes.reference import run_graph
from kiln.utils import set_random_seed


def _predict(model: models.Model, *xs: np.ndarray) -> list[np.ndarray]:
    fg = model.forward_graph(training=False)
    out, _ = run_graph(fg.graph, dict(zip(model.input_names, xs)),
                       {n: v.value for n, v in fg.variables.items()})
    return [out[n] for n in model.output_names]


def test_sequential_add_pop_and_leading_input() -> None:
    model = models.Sequential([layers.Input(shape=(6,)), layers.Dense(4), layers.Dense(2)])
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]
    assert model.count_params() == 6 * 4 + 4 + 4 * 2 + 2
    popped = model.pop()
    assert isinstance(popped, layers.Dense) and len(model.layers) == 1
    model.add(layers.Dense(3, activation="softmax"))
    (y,) = _predict(model, np.ones((5, 6), np.float32))
    assert y.shape == (5, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)


def test_a_shared_layer_has_one_set_of_weights_and_both_uses_train_it() -> None:
    set_random_seed(0)
    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(3,), name="b")
    shared = layers.Dense(2, name="shared")
    merged = layers.Add()([shared(a), shared(b)])
    model = models.Model(inputs=[a, b], outputs=merged)
    assert [w.path for w in model.weights] == ["shared/kernel", "shared/bias"]
    x1, x2 = np.ones((4, 3), np.float32), np.full((4, 3), 2.0, np.float32)
    (y,) = _predict(model, x1, x2)
    kernel, bias = shared.get_weights()
    np.testing.assert_allclose(y, x1 @ kernel + x2 @ kernel + 2 * bias, rtol=1e-6)
    model.compile(optimizer="sgd", loss="mse")
    before = shared.get_weights()[0].copy()
    model.fit([x1, x2], np.zeros((4, 2), np.float32), epochs=1, verbose=0)
    # d loss / d kernel gathers both uses: (x1 + x2)^T g.
    assert not np.allclose(shared.get_weights()[0], before)


def test_a_model_called_on_tensors_is_a_layer_that_shares_its_weights() -> None:
    set_random_seed(1)
    inner = models.Sequential([layers.Dense(4, activation="relu", input_shape=(5,)),
                               layers.Dense(3)], name="inner")
    x = layers.Input(shape=(5,))
    outer = models.Model(x, layers.Dense(1)(inner(x)))
    assert len(outer.weights) == 6
    assert outer.weights[0] is inner.weights[0]
    data = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    (y,) = _predict(outer, data)
    (h,) = _predict(inner, data)
    last = outer.layers[-1]
    np.testing.assert_allclose(y, h @ last.get_weights()[0] + last.get_weights()[1], rtol=1e-5)
    outer.compile(optimizer="sgd", loss="mse")
    outer.fit(data, np.ones((6, 1), np.float32), epochs=2, verbose=0)
    (h_after,) = _predict(inner, data)
    assert not np.allclose(h, h_after)  # training the outer model trained the inner one


def test_multi_output_functional_model_outputs_by_name() -> None:
    x = layers.Input(shape=(4,), name="features")
    h = layers.Dense(8, activation="relu")(x)
    out_a = layers.Dense(2, name="head_a")(h)
    out_b = layers.Dense(1, name="head_b")(h)
    model = models.Model(inputs=x, outputs=[out_a, out_b])
    assert model.output_names == ["head_a", "head_b"] and model.input_names == ["features"]
    ya, yb = _predict(model, np.ones((3, 4), np.float32))
    assert ya.shape == (3, 2) and yb.shape == (3, 1)
    assert model.get_layer("head_b") is out_b.history[0]


def test_structure_errors_name_what_is_wrong() -> None:
    x = layers.Input(shape=(4,))
    other = layers.Input(shape=(4,))
    y = layers.Add()([x, other])
    with pytest.raises(KilnValueError, match="not among the model's inputs"):
        models.Model(inputs=x, outputs=y)
    with pytest.raises(KilnTypeError, match="symbolic"):
        layers.Dense(3)(np.ones((2, 4)))
    with pytest.raises(KilnTypeError, match="expected a layer"):
        models.Sequential().add("dense")
    with pytest.raises(KilnValueError, match="expected axis -1 of input shape to have value 4"):
        dense = layers.Dense(2)
        dense(layers.Input(shape=(4,)))
        dense(layers.Input(shape=(5,)))


def test_functional_layers_are_in_keras_order() -> None:
    """Keras 3 lists a functional model's layers by decreasing depth (calls to an output),
    ties in the order a walk from the outputs first meets them; get_weights follows it, so
    weights copied from a Keras model of the same graph land in the same layers. (The
    order here is what keras.Model gives for this graph, checked with Keras 3.15.)"""
    a, b = layers.Input((3,), name="a"), layers.Input((2,), name="b")
    first = layers.Dense(4, name="first")(a)  # called first, but one call from the output
    side = layers.Dense(4, name="side")(layers.Dense(2, name="deep")(b))
    late = layers.Dense(4, name="late")(a)
    out = layers.concatenate([first, layers.add([side, late], name="sum")], name="cat")
    unused = layers.Input((1,), name="unused")
    model = models.Model([a, b, unused], out)
    assert [la.name for la in model.layers] == [
        "b", "a", "deep", "side", "late", "first", "sum", "unused", "cat"]
    assert [w.path for w in model.weights][:2] == ["deep/kernel", "deep/bias"]


def test_a_nested_model_called_with_training_false_keeps_its_layers_at_inference() -> None:
    """The transfer-learning guide's `base_model(inputs, training=False)`: the base's batch
    normalization normalizes with its moving statistics and leaves them alone while the outer
    model trains, as a training= given to any layer's call holds in kiln (kiln used to drop
    it on a nested model). Keras 3 itself lets fit's training=True override a training=
    recorded in a functional model, for layers and nested models alike."""
    base = models.Sequential([layers.Input((3,)), layers.BatchNormalization(),
                              layers.Dropout(0.5)])
    inputs = layers.Input((3,))
    model = models.Model(inputs, layers.Dense(1)(base(inputs, training=False)))
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    x = np.random.default_rng(0).normal(5.0, 2.0, (8, 3)).astype(np.float32)
    dense = model.layers[-1]
    kernel, bias = (w.copy() for w in dense.get_weights())
    y = np.zeros((8, 1), np.float32)
    loss = model.train_on_batch(x, y)
    norm = base.layers[0]
    np.testing.assert_array_equal(norm.moving_mean.numpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(norm.moving_variance.numpy(), np.ones(3, np.float32))
    # The loss of the step: the base at inference (x / sqrt(1 + eps), no dropout).
    expected = ((x / np.sqrt(1 + 1e-3)) @ kernel + bias) ** 2
    assert loss == pytest.approx(float(expected.mean()), rel=1e-5)
