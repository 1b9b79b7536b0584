"""TimeDistributed: the wrapped layer applied to every step, against the same layer called on
each step's slice; the three lowerings (whole tensor, scan, unrolled) and when each is taken;
batch normalization's per-step moments and moving statistics in training; masks; symbolic
steps; errors; weights, config and saving; a finite-difference gradient through the scan;
and training on every CPU backend as on the reference (tests/oracle checks Keras 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(11)
TOL = {"rtol": 1e-5, "atol": 1e-6}

# name -> (the wrapped layer, one step's input shape, the lowering TimeDistributed picks)
INNER: dict[str, tuple[Callable[[], layers.Layer], tuple, str]] = {
    "dense": (lambda: layers.Dense(3, activation="tanh"), (4,), "whole"),
    "relu": (lambda: layers.ReLU(max_value=0.5), (2, 3), "whole"),
    "dropout": (lambda: layers.Dropout(0.5), (4,), "whole"),
    "conv2d": (lambda: layers.Conv2D(2, 3, padding="same", activation="relu"), (5, 4, 2),
               "scan"),
    "pooling": (lambda: layers.MaxPooling2D(), (4, 4, 3), "scan"),
    "flatten": (lambda: layers.Flatten(), (2, 3), "scan"),
    "layer_norm": (lambda: layers.LayerNormalization(), (3, 4), "scan"),
    "batch_norm": (lambda: layers.BatchNormalization(moving_mean_initializer="ones"), (4,),
                   "scan"),
    "spatial_dropout": (lambda: layers.SpatialDropout1D(0.5), (3, 2), "scan"),
    "gru": (lambda: layers.GRU(3), (4, 2), "scan"),
    "sequential": (lambda: models.Sequential([layers.Conv1D(2, 2), layers.Flatten(),
                                              layers.Dense(3)]), (5, 2), "scan"),
}


def _ops(model: models.Model, training: bool) -> list[str]:
    return [node.op for node in model.forward_graph(training=training).graph.nodes]


@pytest.mark.parametrize("name", INNER)
def test_applies_the_layer_to_every_step(name: str) -> None:
    make, step, lowering = INNER[name]
    inner, steps = make(), 3
    seq = layers.Input((steps, *step))
    wrapped = models.Model(seq, layers.TimeDistributed(inner)(seq))
    one = layers.Input(step)
    alone = models.Model(one, inner(one))  # the same layer, so the same weights
    for model in (wrapped, alone):
        model.compile(loss="mse", backend="reference")
    x = RNG.standard_normal((4, steps, *step)).astype(np.float32)
    expected = np.stack([alone.predict(x[:, t], verbose=0) for t in range(steps)], axis=1)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected, **TOL)
    assert wrapped.outputs[0].shape == (None, steps, *alone.outputs[0].shape[1:])
    ops = _ops(wrapped, training=False)
    assert ("scan" in ops) == (lowering == "scan"), ops


def test_symbolic_steps_take_the_whole_tensor_or_a_scan() -> None:
    seq = layers.Input((None, 4))
    dense, norm = layers.Dense(2), layers.LayerNormalization()
    model = models.Model(seq, layers.TimeDistributed(norm)(layers.TimeDistributed(dense)(seq)))
    model.compile(loss="mse", backend="reference")
    assert model.outputs[0].shape == (None, None, 2)
    one = layers.Input((4,))
    alone = models.Model(one, norm(dense(one)))
    alone.compile(loss="mse", backend="reference")
    for steps in (1, 5):
        x = RNG.standard_normal((3, steps, 4)).astype(np.float32)
        expected = np.stack([alone.predict(x[:, t], verbose=0) for t in range(steps)], axis=1)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, **TOL)


def _moments_model(steps: int | None) -> tuple[models.Model, layers.BatchNormalization]:
    norm = layers.BatchNormalization(momentum=0.5)
    seq = layers.Input((steps, 3))
    model = models.Model(seq, layers.TimeDistributed(norm)(seq))
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
    return model, norm


def test_batch_norm_in_training_takes_each_steps_moments_and_updates_per_step() -> None:
    """Keras calls the layer once per step: each step is normalized by its own moments, and
    the moving statistics move once per step, in order."""
    model, norm = _moments_model(4)
    x = (RNG.standard_normal((6, 4, 3)) * 2 + 1).astype(np.float32)
    y = RNG.standard_normal((6, 4, 3)).astype(np.float32)
    assert "scan" not in _ops(model, training=True)  # unrolled: a scan body has no state
    loss = model.train_on_batch(x, y)
    mean, var = x.mean(axis=0), x.var(axis=0)  # (steps, features)
    normalized = (x - mean) / np.sqrt(var + norm.epsilon)
    assert float(loss) == pytest.approx(float(np.mean((normalized - y) ** 2)), rel=1e-5)
    moving_mean, moving_var = np.zeros(3), np.ones(3)
    for t in range(4):
        moving_mean = moving_mean * 0.5 + mean[t] * 0.5
        moving_var = moving_var * 0.5 + var[t] * 0.5
    np.testing.assert_allclose(norm.moving_mean.numpy(), moving_mean, rtol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), moving_var, rtol=1e-5)


def test_a_stateful_call_over_symbolic_steps_is_refused_by_name() -> None:
    model, _ = _moments_model(None)
    x = RNG.standard_normal((2, 3, 3)).astype(np.float32)
    model.predict(x, verbose=0)  # inference updates nothing: a scan
    with pytest.raises(KilnValueError, match=r"time_distributed.*batch_normalization.*known "
                                             r"number of steps"):
        model.train_on_batch(x, x)


def test_each_step_draws_its_own_dropout_mask() -> None:
    seq = layers.Input((3, 2, 4))
    model = models.Model(seq, layers.TimeDistributed(layers.SpatialDropout1D(0.5))(seq))
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
    assert "scan" not in _ops(model, training=True)
    drawn = model.forward_graph(training=True)
    # Spatial dropout shares a draw over the step's own (2) positions, never across steps.
    assert sum(node.op == "bernoulli" for node in drawn.graph.nodes) == 3


def test_the_mask_passes_through_and_a_masking_layer_gets_each_steps_slice() -> None:
    ids = layers.Input((5,), dtype="int32")
    e = layers.Embedding(6, 3, mask_zero=True)(ids)
    dense = layers.TimeDistributed(layers.Dense(2))(e)
    assert dense._keras_mask is not None and dense._keras_mask.shape == (None, 5)
    norm = layers.BatchNormalization(momentum=0.0)
    model = models.Model(ids, layers.TimeDistributed(norm)(dense))
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
    x = np.array([[1, 2, 0, 0, 0], [3, 0, 4, 5, 0], [1, 1, 1, 1, 1]])
    y = np.zeros((3, 5, 2), np.float32)
    model.train_on_batch(x, y)
    # momentum 0: the moving mean is the last step's masked mean (only the third row counts).
    probe = models.Model(ids, dense)
    probe.compile(loss="mse", backend="reference")
    last = probe.predict(x, verbose=0)[:, 4]
    np.testing.assert_allclose(norm.moving_mean.numpy(), last[2], rtol=1e-5)


def test_bad_arguments_and_inputs_are_refused_by_name() -> None:
    with pytest.raises(KilnValueError, match="initialize `TimeDistributed` layer with a"):
        layers.TimeDistributed("dense")
    with pytest.raises(KilnValueError, match=r"at least 3 dimensions, received: \(None, 4\)"):
        layers.TimeDistributed(layers.Dense(2))(layers.Input((4,)))
    with pytest.raises(KilnValueError, match=r"stacks one tensor per step; layer 'states' "
                                             r"returns 3"):
        layers.TimeDistributed(layers.LSTM(2, return_state=True, name="states"))(
            layers.Input((3, 4, 2)))
    with pytest.raises(KilnValueError, match="expected axis -1 of input shape to have value"):
        dense = layers.Dense(2)
        dense(layers.Input((5,)))
        layers.TimeDistributed(dense)(layers.Input((3, 4)))


def test_weights_are_the_wrapped_layers_and_freezing_freezes_them() -> None:
    inner = layers.Conv2D(2, 3)
    wrapper = layers.TimeDistributed(inner)
    seq = layers.Input((2, 5, 5, 1))
    model = models.Model(seq, wrapper(seq))
    assert [w.shape for w in model.get_weights()] == [(3, 3, 1, 2), (2,)]
    assert wrapper.count_params() == inner.count_params() == 20
    wrapper.trainable = False
    assert not inner.trainable and model.trainable_weights == []
    frozen = layers.TimeDistributed(layers.Dense(2), trainable=False)
    assert not frozen.layer.trainable


def test_config_and_saving_round_trip(tmp_path: Path) -> None:
    seq = layers.Input((3, 4, 4, 1))
    y = layers.TimeDistributed(models.Sequential([layers.Conv2D(2, 2), layers.Flatten()]))(seq)
    y = layers.TimeDistributed(layers.Dense(2), name="head")(layers.GRU(3,
                                                                      return_sequences=True)(y))
    model = models.Model(seq, y)
    model.compile(optimizer="adam", loss="mse", backend="reference")
    x = RNG.standard_normal((2, 3, 4, 4, 1)).astype(np.float32)
    path = tmp_path / "td.kiln"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               **TOL)
    head = loaded.get_layer("head")
    assert isinstance(head, layers.TimeDistributed) and isinstance(head.layer, layers.Dense)
    again = layers.TimeDistributed.from_config(head.get_config())
    assert again.layer.get_config()["units"] == 2


def test_gradient_through_the_scan_matches_finite_differences() -> None:
    def build() -> models.Model:
        seq = layers.Input((2, 3, 3, 1))
        y = layers.TimeDistributed(layers.Conv2D(1, 2, activation="tanh"))(seq)
        model = models.Model(seq, layers.Flatten()(y))
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in build().get_weights()]
    x = RNG.standard_normal((3, 2, 3, 3, 1)).astype(np.float32)
    y = RNG.standard_normal((3, 8)).astype(np.float32)
    assert_gradient_matches_finite_differences(build, weights, x, y, index=0)


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_time_distributed_models_train_on_every_backend(backend: str) -> None:
    def build(name: str) -> models.Model:
        seq = layers.Input((3, 5, 5, 2))
        y = layers.TimeDistributed(layers.Conv2D(3, 3, activation="relu"))(seq)
        y = layers.TimeDistributed(layers.BatchNormalization())(y)
        y = layers.TimeDistributed(layers.GlobalAveragePooling2D())(y)
        y = layers.TimeDistributed(layers.Dense(4))(y)
        model = models.Model(seq, layers.LSTM(2)(y))
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=name)
        return model

    x = RNG.standard_normal((4, 3, 5, 5, 2)).astype(np.float32)
    y = RNG.standard_normal((4, 2)).astype(np.float32)
    assert_trains_like_the_reference(build, backend, x, y)
