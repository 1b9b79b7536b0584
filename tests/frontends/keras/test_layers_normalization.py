"""BatchNormalization against Keras's formulas in NumPy: batch statistics (biased variance) and
the moving-statistics update in training, the moving statistics at inference, and gradients
that flow through the batch statistics."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.ir import KilnError, KilnValueError, grad
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(3)


def run(model: Model, xs: list[np.ndarray], training: bool,
        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    fg = model.forward_graph(training=training)
    state = {name: var.value for name, var in fg.variables.items()}
    return run_graph(fg.graph, dict(zip(model.input_names, xs)), state)


def random_weights(channels: int) -> list[np.ndarray]:
    gamma = RNG.uniform(0.5, 1.5, channels)
    beta = RNG.normal(size=channels)
    mean = RNG.normal(size=channels)
    variance = RNG.uniform(0.5, 2.0, channels)
    return [w.astype(np.float32) for w in (gamma, beta, mean, variance)]


def normalize(x, mean, variance, gamma, beta, epsilon, shape):  # noqa: ANN001, ANN201
    """Keras's batch_normalization, in float64; `shape` broadcasts the per-feature arrays."""
    r = [np.asarray(a, np.float64).reshape(shape) for a in (mean, variance, gamma, beta)]
    return (x - r[0]) / np.sqrt(r[1] + epsilon) * r[2] + r[3]


def test_weights_order_shapes_and_counts() -> None:
    model = Sequential([layers.Input(shape=(5, 5, 64)), layers.BatchNormalization()])
    bn = model.layers[0]
    assert [w.path for w in model.weights] == [
        f"{bn.name}/gamma", f"{bn.name}/beta", f"{bn.name}/moving_mean",
        f"{bn.name}/moving_variance"]
    assert all(w.shape == (64,) for w in model.weights)
    assert [w.trainable for w in model.weights] == [True, True, False, False]
    assert model.count_params() == 256
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 128
    gamma, beta, mean, variance = model.get_weights()
    for array, value in ((gamma, 1), (beta, 0), (mean, 0), (variance, 1)):
        np.testing.assert_array_equal(array, value)


def test_center_and_scale_off() -> None:
    bn = layers.BatchNormalization(center=False, scale=False)
    Sequential([layers.Input(shape=(3,)), bn])
    assert [w.name for w in bn.weights] == ["moving_mean", "moving_variance"]
    assert bn.count_params() == 6
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3,)), layers.BatchNormalization(center=False)])
    gamma, _, mean, variance = random_weights(3)
    model.set_weights([gamma, mean, variance])
    outputs, _ = run(model, [x], training=False)
    expected = normalize(x, mean, variance, gamma, np.zeros(3), 1e-3, (1, 3))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-5, atol=1e-5)


def test_inference_uses_the_moving_statistics() -> None:
    x = RNG.normal(size=(2, 3, 3, 4)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 3, 4)), layers.BatchNormalization()])
    weights = random_weights(4)
    model.set_weights(weights)
    outputs, state = run(model, [x], training=False)
    expected = normalize(x, weights[2], weights[3], weights[0], weights[1], 1e-3, (1, 1, 1, 4))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-5, atol=1e-5)
    bn = model.layers[0]
    np.testing.assert_array_equal(state[f"{bn.name}.moving_mean"], weights[2])
    assert model.forward_graph(training=False).graph.updates == ()


@pytest.mark.parametrize("momentum", [0.99, 0.5])
def test_training_uses_batch_statistics_and_updates_moving_ones(momentum: float) -> None:
    x = RNG.normal(2.0, 3.0, size=(6, 3, 2, 4)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 2, 4)),
                        layers.BatchNormalization(momentum=momentum, epsilon=0.01)])
    gamma, beta, moving_mean, moving_variance = random_weights(4)
    model.set_weights([gamma, beta, moving_mean, moving_variance])
    outputs, state = run(model, [x], training=True)
    x64 = x.astype(np.float64)
    batch_mean = x64.mean(axis=(0, 1, 2))
    batch_variance = x64.var(axis=(0, 1, 2))  # biased: divided by the count, not count - 1
    expected = normalize(x64, batch_mean, batch_variance, gamma, beta, 0.01, (1, 1, 1, 4))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-4, atol=1e-4)
    bn = model.layers[0]
    np.testing.assert_allclose(state[f"{bn.name}.moving_mean"],
                               moving_mean * momentum + batch_mean * (1 - momentum), rtol=1e-5)
    np.testing.assert_allclose(state[f"{bn.name}.moving_variance"],
                               moving_variance * momentum + batch_variance * (1 - momentum),
                               rtol=1e-5)


def test_a_layer_called_twice_updates_its_moving_statistics_twice_in_order() -> None:
    """Keras assigns the moving statistics at each call, so the second call's update starts
    from the first's."""
    from kiln.frontends.keras.layers import Input

    bn, dense = layers.BatchNormalization(momentum=0.5), layers.Dense(3, use_bias=False)
    x_in = Input((3,))
    model = Model(x_in, bn(dense(bn(x_in))))
    kernel = RNG.normal(size=(3, 3)).astype(np.float32)
    dense.set_weights([kernel])
    bn.set_weights(random_weights(3))
    gamma, beta, mean, variance = (w.astype(np.float64) for w in bn.get_weights())
    x = RNG.normal(1.0, 2.0, size=(8, 3))
    _, state = run(model, [x.astype(np.float32)], training=True)
    first = normalize(x, x.mean(0), x.var(0), gamma, beta, bn.epsilon, (1, 3))
    hidden = first @ kernel.astype(np.float64)
    for batch in (x, hidden):
        mean = mean * 0.5 + batch.mean(0) * 0.5
        variance = variance * 0.5 + batch.var(0) * 0.5
    np.testing.assert_allclose(state[f"{bn.name}.moving_mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(state[f"{bn.name}.moving_variance"], variance, rtol=1e-4)


def test_feature_axis_other_than_last() -> None:
    x = RNG.normal(size=(5, 3, 4)).astype(np.float32)
    model = Sequential([layers.Input(shape=(3, 4)), layers.BatchNormalization(axis=1)])
    gamma, beta, moving_mean, moving_variance = random_weights(3)
    model.set_weights([gamma, beta, moving_mean, moving_variance])
    outputs, state = run(model, [x], training=True)
    batch_mean, batch_variance = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    expected = normalize(x, batch_mean, batch_variance, gamma, beta, 1e-3, (1, 3, 1))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-4, atol=1e-4)
    name = model.layers[0].name
    np.testing.assert_allclose(state[f"{name}.moving_mean"],
                               moving_mean * 0.99 + batch_mean * 0.01, rtol=1e-5)
    outputs, _ = run(model, [x], training=False)
    expected = normalize(x, moving_mean, moving_variance, gamma, beta, 1e-3, (1, 3, 1))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-5, atol=1e-5)


def test_frozen_layer_runs_in_inference_mode() -> None:
    """Keras 3: a BatchNormalization with trainable=False uses its moving statistics, and
    leaves them unchanged, even in training."""
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    bn = layers.BatchNormalization()
    model = Sequential([layers.Input(shape=(3,)), bn])
    weights = random_weights(3)
    model.set_weights(weights)
    bn.trainable = False
    outputs, _ = run(model, [x], training=True)
    expected = normalize(x, weights[2], weights[3], weights[0], weights[1], 1e-3, (1, 3))
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-5, atol=1e-5)
    assert model.forward_graph(training=True).graph.updates == ()


def test_training_call_argument_forces_the_mode() -> None:
    inputs = layers.Input(shape=(3,))
    model = Model(inputs, layers.BatchNormalization()(inputs, training=True))
    x = RNG.normal(size=(8, 3)).astype(np.float32)
    outputs, _ = run(model, [x], training=False)
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(outputs[model.output_names[0]], expected, rtol=1e-4, atol=1e-4)


def test_gradient_flows_through_the_batch_statistics() -> None:
    """d sum(r * bn(x)) / dx = gamma / sqrt(var + eps) * (r - mean(r) - xhat * mean(r * xhat))
    per feature, not gamma / sqrt(var + eps) * r as with the statistics held constant."""
    x_in, r_in = layers.Input(shape=(3,), name="x"), layers.Input(shape=(3,), name="r")
    model = Model([x_in, r_in], layers.Multiply()([layers.BatchNormalization()(x_in), r_in]))
    gamma, beta, moving_mean, moving_variance = random_weights(3)
    model.set_weights([gamma, beta, moving_mean, moving_variance])
    fg = model.forward_graph(training=True)
    graph = grad(fg.graph, of=model.output_names[0], wrt=["x"])
    x = RNG.normal(size=(6, 3)).astype(np.float32)
    r = RNG.normal(size=(6, 3)).astype(np.float32)
    state = {name: var.value for name, var in fg.variables.items()}
    outputs, _ = run_graph(graph, {"x": x, "r": r}, state)
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    inv = gamma / np.sqrt(x64.var(0) + 1e-3)
    xhat = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-3)
    expected = inv * (r64 - r64.mean(0) - xhat * (r64 * xhat).mean(0))
    np.testing.assert_allclose(outputs["grad.x"], expected, rtol=1e-3, atol=1e-4)


def test_config() -> None:
    config = layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                                       name="bn").get_config()
    assert config["axis"] == 1 and config["momentum"] == 0.9 and config["epsilon"] == 1e-5
    assert config["center"] is False and config["scale"] is True
    assert config["gamma_initializer"] == "ones"
    assert config["moving_variance_initializer"] == "ones"
    assert config["name"] == "bn"


def test_errors() -> None:
    with pytest.raises(KilnValueError, match=r"layer 'bn'.*axis 3 is out of bounds"):
        layers.BatchNormalization(axis=3, name="bn")(layers.Input(shape=(4,)))
    with pytest.raises(KilnValueError, match="should have a defined dimension"):
        layers.BatchNormalization()(layers.Input(shape=(None,)))
    with pytest.raises(KilnError, match=r"axis=\[1, 2\]"):
        layers.BatchNormalization(axis=[1, 2])
    bn = layers.BatchNormalization()
    bn(layers.Input(shape=(4,)))
    with pytest.raises(KilnValueError, match="expected axis -1 of input shape to have value 4"):
        bn(layers.Input(shape=(5,)))
    with pytest.raises(KilnValueError, match="expected ndim=2, found ndim=3"):
        bn(layers.Input(shape=(3, 4)))
