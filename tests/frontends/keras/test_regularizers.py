"""Weight and activity regularizers and weight constraints (kiln.regularizers,
kiln.constraints), against Keras 3's formulas written in NumPy:

- each penalty and projection, on random shapes and factors, run by the reference runtime;
- the loss a step reports is the compiled loss plus the penalties (an activity penalty over
  the batch size), in train_on_batch, evaluate and fit, on every backend;
- one SGD step moves a weight by the gradient of the penalty too (L2: 2 * l2 * w), and a
  constrained weight is the projection of the unconstrained update;
- prediction computes no penalty; names, configs, save/load and the errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln import constraints, layers, models, optimizers, regularizers
from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType
from kiln.runtimes.reference import run_graph
from tests.frontends.keras.steps import assert_gradient_matches_finite_differences

EPS = 1e-7  # Keras's backend.epsilon()


# -- the penalties and projections, op by op ------------------------------------------------
def _apply(fn, w: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """fn(b, value) on the array w, run by the reference runtime."""
    b = GraphBuilder("apply")
    x = b.input("w", TensorType(w.shape, "float32"))
    b.output(fn(b, x), "out")
    return run_graph(b.build(), {"w": w})[0]["out"]


def _normalized(w: np.ndarray, axis: int) -> np.ndarray:
    return w * np.minimum(1.0 / np.sqrt(np.sum(w * w, axis=axis, keepdims=True)), 1e7)


def _orthogonal(w: np.ndarray, factor: float, mode: str) -> float:
    u = _normalized(w, 1) if mode == "rows" else _normalized(w, 0).T
    product = u @ u.T
    n = product.shape[0]
    return factor * 0.5 * np.abs(product * (1 - np.eye(n))).sum() / (n * (n - 1) / 2)


PENALTIES = {
    "l1": (lambda f: regularizers.L1(f), lambda w, f: f * np.abs(w).sum()),
    "l2": (lambda f: regularizers.L2(f), lambda w, f: f * np.square(w).sum()),
    "l1_l2": (lambda f: regularizers.L1L2(l1=f, l2=2 * f),
              lambda w, f: f * np.abs(w).sum() + 2 * f * np.square(w).sum()),
    "l1_only": (lambda f: regularizers.L1L2(l1=f),  lambda w, f: f * np.abs(w).sum()),
    "orthogonal_rows": (lambda f: regularizers.OrthogonalRegularizer(f),
                        lambda w, f: _orthogonal(w, f, "rows")),
    "orthogonal_columns": (lambda f: regularizers.OrthogonalRegularizer(f, mode="columns"),
                           lambda w, f: _orthogonal(w, f, "columns")),
}


@pytest.mark.parametrize("name", PENALTIES)
@settings(max_examples=15, deadline=None)
@given(rows=st.integers(2, 6), cols=st.integers(2, 6), factor=st.floats(0.0, 3.0),
       seed=st.integers(0, 2**16))
def test_penalty_matches_keras_formula(name: str, rows: int, cols: int, factor: float,
                                       seed: int) -> None:
    make, reference = PENALTIES[name]
    w = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    got = _apply(make(factor), w)
    assert got.shape == () and got.dtype == np.float32
    np.testing.assert_allclose(got, reference(w.astype(np.float64), factor), rtol=1e-5,
                               atol=1e-6)


def _norms(w: np.ndarray, axis) -> np.ndarray:  # noqa: ANN001
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


PROJECTIONS = {
    "max_norm": (lambda a: constraints.MaxNorm(1.5, axis=a),
                 lambda w, a: w * np.clip(_norms(w, a), 0, 1.5) / (EPS + _norms(w, a))),
    "min_max_norm": (lambda a: constraints.MinMaxNorm(0.5, 1.2, rate=0.7, axis=a),
                     lambda w, a: w * (0.7 * np.clip(_norms(w, a), 0.5, 1.2)
                                       + 0.3 * _norms(w, a)) / (EPS + _norms(w, a))),
    "unit_norm": (lambda a: constraints.UnitNorm(axis=a),
                  lambda w, a: w / (EPS + _norms(w, a))),
    "non_neg": (lambda a: constraints.NonNeg(), lambda w, a: np.maximum(w, 0)),
}


@pytest.mark.parametrize("name", PROJECTIONS)
@pytest.mark.parametrize("axis", [0, 1, [0, 1, 2], -1])
def test_projection_matches_keras_formula(name: str, axis) -> None:  # noqa: ANN001
    make, reference = PROJECTIONS[name]
    w = (np.random.default_rng(3).standard_normal((3, 2, 4, 5)) * 2).astype(np.float32)
    a = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(_apply(make(axis), w), reference(w.astype(np.float64), a),
                               rtol=1e-5, atol=1e-6)


# -- the loss a step reports ----------------------------------------------------------------
def _data(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, 5)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rs.integers(0, 3, n)]


def _model(regularized: bool, backend: str = "reference", optimizer=None) -> models.Model:  # noqa: ANN001
    reg = regularized or None
    inputs = layers.Input((5,))
    h = layers.Dense(4, activation="tanh", name="hidden",
                     kernel_regularizer=reg and regularizers.L2(0.05),
                     bias_regularizer=reg and "l1",
                     activity_regularizer=reg and regularizers.L1L2(l1=0.01, l2=0.02))(inputs)
    out = layers.Dense(3, activation="softmax", name="out",
                       kernel_regularizer=reg and regularizers.OrthogonalRegularizer(0.1))(h)
    model = models.Model(inputs, out)
    model.set_weights([np.random.default_rng(1).standard_normal(w.shape).astype(np.float32)
                       * 0.5 for w in model.get_weights()])
    model.compile(optimizer=optimizer or optimizers.SGD(0.1), loss="categorical_crossentropy",
                  backend=backend)
    return model


def _penalty(model: models.Model, x: np.ndarray) -> float:
    """Keras 3's model.losses summed, in NumPy: the weights' penalties and the hidden
    layer's activity penalty over the batch size."""
    k1, b1, k2, _ = (w.astype(np.float64) for w in model.get_weights())
    h = np.tanh(x.astype(np.float64) @ k1 + b1)
    activity = (0.01 * np.abs(h).sum() + 0.02 * np.square(h).sum()) / len(x)
    return 0.05 * np.square(k1).sum() + 0.01 * np.abs(b1).sum() + activity \
        + _orthogonal(k2, 0.1, "rows")


@pytest.mark.parametrize("backend", ["reference", "numba", "onnxruntime"])
def test_step_loss_is_compiled_loss_plus_penalties(backend: str) -> None:
    x, y = _data()
    plain, regularized = _model(False, backend), _model(True, backend)
    penalty = _penalty(regularized, x)
    assert penalty > 0.1
    base = plain.evaluate(x, y, verbose=0)
    assert regularized.evaluate(x, y, verbose=0) == pytest.approx(base + penalty, rel=1e-5)
    assert float(regularized.test_on_batch(x, y)) == pytest.approx(base + penalty, rel=1e-5)
    # The step reports the loss before its update.
    assert float(regularized.train_on_batch(x, y)) == pytest.approx(base + penalty, rel=1e-5)
    # Prediction computes no penalty: both models give the same outputs.
    np.testing.assert_array_equal(plain.predict(x, verbose=0),
                                  _model(True, backend).predict(x, verbose=0))


def test_fit_history_includes_penalties_with_validation() -> None:
    x, y = _data(30)
    model = _model(True)
    history = model.fit(x, y, batch_size=30, epochs=1, shuffle=False, verbose=0,
                        validation_data=(x[:10], y[:10])).history
    fresh = _model(True)
    assert history["loss"][0] == pytest.approx(float(fresh.test_on_batch(x, y)), rel=1e-5)
    assert history["val_loss"][0] == pytest.approx(model.evaluate(x[:10], y[:10], verbose=0),
                                                   rel=1e-5)


def test_l2_adds_its_gradient_to_the_sgd_step() -> None:
    """With SGD(lr) and only an L2 kernel penalty, the regularized kernel moves by
    lr * 2 * l2 * w more than the plain one (the loss gradients are the same)."""
    x, y = _data()
    lr, l2 = 0.1, 0.05

    def build(reg):  # noqa: ANN001, ANN202
        model = models.Sequential([layers.Input((5,)),
                                   layers.Dense(3, activation="softmax", kernel_regularizer=reg)])
        model.set_weights([np.full((5, 3), 0.3, np.float32) * np.arange(15).reshape(5, 3) / 15,
                           np.zeros(3, np.float32)])
        model.compile(optimizer=optimizers.SGD(lr), loss="categorical_crossentropy",
                      backend="reference")
        return model

    plain, regularized = build(None), build(regularizers.L2(l2))
    w0 = regularized.get_weights()[0]
    plain.train_on_batch(x, y)
    regularized.train_on_batch(x, y)
    np.testing.assert_allclose(regularized.get_weights()[0],
                               plain.get_weights()[0] - lr * 2 * l2 * w0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(regularized.get_weights()[1], plain.get_weights()[1], rtol=1e-6)


def test_penalty_gradient_matches_finite_differences() -> None:
    """The regularized loss's gradient (read off one SGD(1) step) equals central
    differences of the loss evaluate reports, for every weight entry of the hidden kernel."""
    x, y = _data(8)
    assert_gradient_matches_finite_differences(
        lambda: _model(True, optimizer=optimizers.SGD(1.0)), _model(True).get_weights(), x, y)


@pytest.mark.parametrize("backend", ["reference", "numba", "onnxruntime"])
def test_constrained_weights_are_the_projected_update(backend: str) -> None:
    x, y = _data()

    def build(constrained: bool):  # noqa: ANN202
        c = constrained or None
        model = models.Sequential([
            layers.Input((5,)),
            layers.Dense(4, activation="tanh", kernel_constraint=c and constraints.MaxNorm(0.5),
                         bias_constraint=c and "non_neg"),
            layers.Dense(3, activation="softmax",
                         kernel_constraint=c and constraints.UnitNorm(axis=1))])
        model.set_weights([np.random.default_rng(2).standard_normal(w.shape).astype(np.float32)
                           for w in model.get_weights()])
        model.compile(optimizer=optimizers.Adam(0.1), loss="categorical_crossentropy",
                      backend=backend)
        return model

    plain, constrained = build(False), build(True)
    plain.train_on_batch(x, y)
    constrained.train_on_batch(x, y)
    k1, b1, k2, b2 = (w.astype(np.float64) for w in plain.get_weights())
    expected = [k1 * np.clip(_norms(k1, 0), 0, 0.5) / (EPS + _norms(k1, 0)), np.maximum(b1, 0),
                k2 / (EPS + _norms(k2, 1)), b2]
    for got, want in zip(constrained.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.linalg.norm(constrained.get_weights()[0], axis=0) <= 0.5 + 1e-6)


def test_every_layer_with_weights_takes_regularizers_and_constraints() -> None:
    """Conv2D, Embedding, the recurrent layers and BatchNormalization pass their arguments
    to their weights; the loss is the mean squared error plus exactly their penalties."""
    l2 = regularizers.L2(0.1)
    image = layers.Input((6, 6, 2))
    conv = layers.Conv2D(3, 3, kernel_regularizer=l2, bias_regularizer=l2, name="conv",
                         activity_regularizer="l2", kernel_constraint="max_norm")(image)
    norm = layers.BatchNormalization(gamma_regularizer=l2, beta_regularizer=l2, name="norm",
                                     gamma_constraint="non_neg")(conv)
    ids = layers.Input((4,), dtype="int32")
    embedded = layers.Embedding(10, 3, embeddings_regularizer=l2, name="embed",
                                embeddings_constraint="unit_norm")(ids)
    lstm = layers.LSTM(2, kernel_regularizer=l2, recurrent_regularizer=l2, name="lstm",
                       bias_regularizer=l2, recurrent_constraint="max_norm")(embedded)
    gru = layers.GRU(2, kernel_regularizer=l2, activity_regularizer="l1", name="gru")(embedded)
    rnn = layers.SimpleRNN(2, recurrent_regularizer=l2, bias_constraint="non_neg",
                           name="rnn")(embedded)
    merged = layers.Concatenate()([layers.Flatten()(norm), lstm, gru, rnn])
    model = models.Model([image, ids], layers.Dense(1, kernel_regularizer="l1",
                                                    name="head")(merged))
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    rs = np.random.default_rng(0)
    x = [rs.standard_normal((4, 6, 6, 2)).astype(np.float32), rs.integers(0, 10, (4, 4))]
    y = rs.standard_normal((4, 1)).astype(np.float32)
    penalized = {v.path: v.regularizer for v in model.weights if v.regularizer is not None}
    assert sorted(penalized) == sorted([
        "conv/kernel", "conv/bias", "norm/gamma", "norm/beta", "embed/embeddings",
        "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias", "gru/kernel",
        "rnn/recurrent_kernel", "head/kernel"])
    assert sorted(v.path for v in model.weights if v.constraint is not None) == [
        "conv/kernel", "embed/embeddings", "lstm/recurrent_kernel", "norm/gamma", "rnn/bias"]
    weights = {v.path: v.numpy().astype(np.float64) for v in model.weights}
    of_weights = sum(0.1 * np.square(weights[p]).sum() if r is l2 else
                     0.01 * np.abs(weights[p]).sum() for p, r in penalized.items())
    conv_out, gru_out = (o.astype(np.float64) for o in
                         models.Model(model.inputs, [conv, gru]).predict(x, verbose=0))
    of_activity = 0.01 * np.square(conv_out).sum() / 4 + 0.01 * np.abs(gru_out).sum() / 4
    mse = np.mean(np.square(model.predict(x, verbose=0).astype(np.float64) - y))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + of_weights + of_activity,
                                                            rel=1e-5)
    model.train_on_batch(x, y)
    assert np.all(model.get_layer("norm").gamma.numpy() >= 0)
    assert np.all(model.get_layer("rnn").bias.numpy() >= 0)
    np.testing.assert_allclose(np.linalg.norm(model.get_layer("embed").embeddings.numpy(),
                                              axis=0), 1.0, rtol=1e-5)
    assert np.all(np.linalg.norm(model.get_layer("conv").kernel.numpy(), axis=0) <= 2 + 1e-6)


def test_frozen_weights_are_not_penalized() -> None:
    """Keras 3 penalizes trainable weights only: a frozen layer's regularizer adds nothing."""
    x, y = _data()
    plain, regularized = _model(False), _model(True)
    regularized.get_layer("hidden").trainable = False
    regularized.get_layer("out").trainable = False
    regularized.compile(optimizer="sgd", loss="categorical_crossentropy", backend="reference")
    h = np.tanh(x.astype(np.float64) @ regularized.get_weights()[0]
                + regularized.get_weights()[1])
    activity = (0.01 * np.abs(h).sum() + 0.02 * np.square(h).sum()) / len(x)
    assert regularized.evaluate(x, y, verbose=0) == pytest.approx(
        plain.evaluate(x, y, verbose=0) + activity, rel=1e-5)


def test_custom_callables() -> None:
    x, y = _data()

    def penalty(b, w):  # noqa: ANN001, ANN202
        return b.mul(b.sum(w), 0.5)

    def clip(b, w):  # noqa: ANN001, ANN202
        return b.clip(w, min=-0.1, max=0.1)

    model = models.Sequential([layers.Input((5,)),
                               layers.Dense(3, kernel_regularizer=penalty,
                                            kernel_constraint=clip)])
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    kernel = model.get_weights()[0].astype(np.float64)
    prediction = model.predict(x, verbose=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        np.mean(np.square(prediction - y)) + 0.5 * kernel.sum(), rel=1e-5)
    model.train_on_batch(x, y)
    assert np.abs(model.get_weights()[0]).max() <= 0.1


# -- names, configs, saving -----------------------------------------------------------------
@pytest.mark.parametrize("identifier, cls, config", [
    ("l1", regularizers.L1, {"l1": 0.01}), ("L2", regularizers.L2, {"l2": 0.01}),
    ("l1_l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ("orthogonal_regularizer", regularizers.OrthogonalRegularizer,
     {"factor": 0.01, "mode": "rows"}),
    (regularizers.L2, regularizers.L2, {"l2": 0.01}),
    ({"class_name": "L1L2", "config": {"l1": 0.5, "l2": None}}, regularizers.L1L2,
     {"l1": 0.5, "l2": 0.0}),
])
def test_regularizer_identifiers(identifier, cls, config) -> None:  # noqa: ANN001
    reg = regularizers.get(identifier)
    assert type(reg) is cls and reg.get_config() == config
    assert regularizers.get(regularizers.serialize(reg)).get_config() == config
    assert regularizers.l1_l2 is regularizers.L1L2 and regularizers.get(None) is None


@pytest.mark.parametrize("identifier, cls", [
    ("max_norm", constraints.MaxNorm), ("MinMaxNorm", constraints.MinMaxNorm),
    ("non_neg", constraints.NonNeg), ("unit_norm", constraints.UnitNorm),
    ({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": [0, 1]}},
     constraints.MaxNorm),
])
def test_constraint_identifiers(identifier, cls) -> None:  # noqa: ANN001
    c = constraints.get(identifier)
    assert type(c) is cls
    assert constraints.get(constraints.serialize(c)).get_config() == c.get_config()


def test_configs_and_save_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    x, y = _data()
    model = models.Sequential([
        layers.Input((5,)),
        layers.Dense(4, kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                     activity_regularizer="l2", kernel_constraint=constraints.MaxNorm(2, [0])),
        layers.Dense(3, activation="softmax",
                     kernel_regularizer=regularizers.OrthogonalRegularizer(0.2, "columns"),
                     bias_constraint="non_neg")])
    config = model.layers[0].get_config()
    assert config["kernel_regularizer"] == {"class_name": "L1L2",
                                            "config": {"l1": 0.01, "l2": 0.02}}
    assert config["activity_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    assert config["kernel_constraint"] == {"class_name": "MaxNorm",
                                           "config": {"max_value": 2, "axis": [0]}}
    assert config["bias_regularizer"] is None and config["bias_constraint"] is None
    model.compile(optimizer="adam", loss="categorical_crossentropy", backend="reference")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln", backend="reference")
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0),
                                                             rel=1e-6)
    assert loaded.layers[0].get_config()["kernel_constraint"] == config["kernel_constraint"]
    np.testing.assert_allclose(float(loaded.train_on_batch(x, y)),
                               float(model.train_on_batch(x, y)), rtol=1e-6)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_callable_regularizer_cannot_be_saved(tmp_path) -> None:  # noqa: ANN001
    model = models.Sequential([layers.Input((5,)),
                               layers.Dense(3, kernel_regularizer=lambda b, w: b.sum(w))])
    model.compile(loss="mse", backend="reference")
    with pytest.raises(KilnValueError, match="kernel_regularizer"):
        model.save(tmp_path / "m.kiln")
    assert not (tmp_path / "m.kiln").exists()


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: regularizers.L2(-1), KilnValueError, "l2: expected a non-negative float"),
    (lambda: regularizers.L1(float("nan")), KilnValueError, "l1"),
    (lambda: regularizers.OrthogonalRegularizer(mode="diagonal"), KilnValueError, "mode"),
    (lambda: regularizers.get("l3"), KilnValueError, "'l3'"),
    (lambda: regularizers.get({"class_name": "L9"}), KilnValueError, "'L9'"),
    (lambda: constraints.get("positive"), KilnValueError, "'positive'"),
    (lambda: constraints.get(3), KilnValueError, "constraint"),
    (lambda: layers.Dense(3, kernel_regularizer="l7"), KilnValueError, "kernel_regularizer"),
    (lambda: layers.Dense(3, kernel_constraint=1.5), KilnValueError, "kernel_constraint"),
    (lambda: layers.Dense(3, activity_regularizer="x"), KilnValueError,
     "activity_regularizer"),
    (lambda: layers.Dense(3, recurrent_regularizer="l2"), KilnTypeError,
     "recurrent_regularizer"),
])
def test_bad_arguments(make, error, match) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, match", [
    (lambda: layers.Dense(3, bias_regularizer=regularizers.OrthogonalRegularizer()),
     "regularizer of dense.*/bias: Inputs to OrthogonalRegularizer must have rank 2"),
    (lambda: layers.Dense(3, kernel_regularizer=lambda b, w: b.square(w)),
     "regularizer of dense.*/kernel: expected the regularizer to return a float scalar"),
    (lambda: layers.Dense(3, activity_regularizer=lambda b, y: y),
     "activity_regularizer of layer 'dense.*': expected the regularizer to return a float"),
    (lambda: layers.Dense(3, kernel_constraint=lambda b, w: b.sum(w)),
     "constraint of 'dense.*kernel': expected a value of the variable's type"),
    (lambda: layers.Dense(3, kernel_constraint=constraints.MaxNorm(axis=4)),
     "constraint of 'dense.*kernel'.*axis 4 is out of range"),
])
def test_bad_regularizers_and_constraints_name_the_weight(layer, match) -> None:  # noqa: ANN001
    x, y = _data()
    model = models.Sequential([layers.Input((5,)), layer()])
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    before = model.get_weights()
    with pytest.raises(KilnValueError, match=match):
        model.fit(x, y[:, :3], epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
