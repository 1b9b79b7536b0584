"""Keras 3's losses and metrics by name, class and function: what each name resolves to and
is reported as, the values `evaluate` reports against NumPy from the predictions, the
classes' arguments through save and load, and the errors. (Their IR definitions are tested
against NumPy in tests/ir/training, and against real Keras in tests/oracle.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

from kiln import layers, losses, metrics, models
from kiln.ir import KilnTypeError, KilnValueError

EPS = 1e-7
rng = np.random.default_rng(3)


@pytest.mark.parametrize("identifier,cls,name", [
    ("huber", losses.Huber, "huber"),
    ("Huber", losses.Huber, "huber_loss"),
    ("log_cosh", losses.LogCosh, "log_cosh"),
    ("LogCosh", losses.LogCosh, "log_cosh"),
    ("mape", losses.MeanAbsolutePercentageError, "mape"),
    ("MAPE", losses.MeanAbsolutePercentageError, "MAPE"),
    ("msle", losses.MeanSquaredLogarithmicError, "msle"),
    ("kld", losses.KLDivergence, "kld"),
    ("KLD", losses.KLDivergence, "KLD"),
    ("KLDivergence", losses.KLDivergence, "kl_divergence"),
    ("poisson", losses.Poisson, "poisson"),
    ("hinge", losses.Hinge, "hinge"),
    ("squared_hinge", losses.SquaredHinge, "squared_hinge"),
    ("categorical_hinge", losses.CategoricalHinge, "categorical_hinge"),
    ("cosine_similarity", losses.CosineSimilarity, "cosine_similarity"),
    ("bce", losses.BinaryCrossentropy, "bce"),
    (losses.huber, losses.Huber, "huber"),
    (losses.kld, losses.KLDivergence, "kl_divergence"),
])
def test_loss_names_resolve_like_keras(identifier, cls, name) -> None:  # noqa: ANN001
    loss = losses.get(identifier)
    assert type(loss) is cls and loss.name == name


def _regression_model() -> models.Model:
    model = models.Sequential([layers.Input((5,)), layers.Dense(4, activation="softplus")])
    model.set_weights([rng.standard_normal((5, 4)).astype("float32"),
                       rng.standard_normal(4).astype("float32")])
    return model


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


REGRESSION_METRICS = {  # compile name -> per-sample values from (y, p)
    "mape": lambda y, p: 100 * np.mean(np.abs(y - p) / np.maximum(np.abs(y), EPS), -1),
    "msle": lambda y, p: np.mean((np.log(p + 1) - np.log(y + 1)) ** 2, -1),
    "log_cosh_error": lambda y, p: np.mean(np.log(np.cosh(p - y)), -1),
    "cosine_similarity": lambda y, p: np.sum(_unit(y) * _unit(p), -1),
    "poisson": lambda y, p: np.mean(p - y * np.log(p + EPS), -1),
    "MeanSquaredLogarithmicError": lambda y, p: np.mean((np.log(p + 1) - np.log(y + 1)) ** 2,
                                                        -1),
}


@pytest.mark.parametrize("loss", ["huber", "log_cosh", "poisson", "mape", "msle",
                                  "cosine_similarity"])
def test_evaluate_reports_keras_values_by_the_given_names(loss: str) -> None:
    model = _regression_model()
    model.compile(optimizer="sgd", loss=loss, metrics=list(REGRESSION_METRICS))
    x = rng.standard_normal((20, 5)).astype("float32")
    y = rng.uniform(0.1, 2.0, (20, 4)).astype("float32")
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert set(logs) == {"loss", *REGRESSION_METRICS}
    p = model.predict(x, verbose=0).astype(np.float64)
    for name, fn in REGRESSION_METRICS.items():
        assert logs[name] == pytest.approx(np.mean(fn(y, p)), rel=1e-5), name
    assert logs["loss"] == pytest.approx(np.mean(getattr(losses, loss)(y, p)), rel=1e-5)


def test_classification_metrics_and_their_directions() -> None:
    # 7 classes: the default k of 5 leaves some labels out
    model = models.Sequential([layers.Input((6,)), layers.Dense(7, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["sparse_top_k_categorical_accuracy",
                           metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
                           "sparse_categorical_crossentropy"])
    x = rng.standard_normal((30, 6)).astype("float32")
    labels = rng.integers(0, 7, 30)
    logs = model.evaluate(x, labels, batch_size=7, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    rank = np.sum(p > p[np.arange(30), labels][:, None], -1)  # scores above the label's
    assert 0 < np.mean(rank < 5) < 1
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(np.mean(rank < 5))
    assert logs["top2"] == pytest.approx(np.mean(rank < 2))
    assert logs["sparse_categorical_crossentropy"] == pytest.approx(logs["loss"], rel=1e-6)
    assert model.metric_directions == {"sparse_top_k_categorical_accuracy": "up",
                                       "top2": "up", "sparse_categorical_crossentropy": "down"}


def test_accuracy_spellings_and_the_exact_accuracy_class(tmp_path) -> None:  # noqa: ANN001
    model = models.Sequential([layers.Input((6,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=["ACC", "Accuracy", metrics.Accuracy(name="exact")])
    x = rng.standard_normal((12, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 12)]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    hits = np.mean(model.predict(x, verbose=0).argmax(-1) == y.argmax(-1))
    assert logs["ACC"] == logs["Accuracy"] == pytest.approx(hits) and logs["exact"] == 0.0
    exact = metrics.Accuracy()
    exact.update_state([[1, 2], [3, 4]], [[1, 2], [3, 0]], sample_weight=[1.0, 3.0])
    assert exact.result() == pytest.approx((2 * 1 + 1 * 3) / 8)
    model.save(tmp_path / "m.kiln")
    assert models.load_model(tmp_path / "m.kiln").evaluate(
        x, y, verbose=0, return_dict=True) == pytest.approx(logs)


def test_functions_on_arrays() -> None:
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    p = np.array([[0.2, 0.5, 0.3], [0.3, 0.6, 0.1]], np.float32)
    np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(y, p, k=1), [1.0, 0.0])
    np.testing.assert_array_equal(metrics.top_k_categorical_accuracy(y, p, k=2), [1.0, 1.0])
    np.testing.assert_allclose(metrics.cosine_similarity(y, p),
                               -losses.cosine_similarity(y, p), rtol=1e-6)
    e = np.abs(p - y)
    np.testing.assert_allclose(losses.huber(y, p, delta=0.4),
                               np.mean(np.where(e <= 0.4, 0.5 * e * e, 0.4 * e - 0.08), -1),
                               rtol=1e-6)
    assert losses.Huber(delta=0.4)(y, p) == pytest.approx(np.mean(losses.huber(y, p, 0.4)))
    np.testing.assert_allclose(metrics.kl_divergence(y, p), losses.KLD(y, p))
    hinge = metrics.Hinge()
    hinge.update_state(y, p)
    assert hinge.result() == pytest.approx(np.mean(np.maximum(1 - (2 * y - 1) * p, 0)))


def test_class_arguments_survive_save_and_load(tmp_path) -> None:  # noqa: ANN001
    model = models.Sequential([layers.Input((6,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=losses.Huber(delta=0.25),
                  metrics=[metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                           metrics.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
                           metrics.CosineSimilarity(axis=-1), "mape"])
    x = rng.standard_normal((9, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 9)]
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln")
    assert loaded.loss.get_config()["delta"] == 0.25
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(before)


def test_errors_name_the_argument() -> None:
    cases = [
        (lambda: losses.Huber(delta=-1.0), KilnValueError, "Huber: expected a number delta"),
        (lambda: metrics.TopKCategoricalAccuracy(k=0), KilnValueError,
         "TopKCategoricalAccuracy: expected an integer k >= 1. Received: k=0"),
        (lambda: metrics.BinaryCrossentropy(label_smoothing=2.0), KilnValueError,
         "label_smoothing in [0, 1]"),
        (lambda: losses.get("log_cosh_loss"), KilnValueError,
         "Could not interpret loss identifier: 'log_cosh_loss'"),
        (lambda: metrics.check("logcosh"), KilnValueError,
         "Could not interpret metric identifier: 'logcosh'"),
        (lambda: metrics.check(losses.cosine_similarity), KilnValueError,
         "kiln.losses.cosine_similarity is the negated similarity"),
        (lambda: metrics.check(len), KilnTypeError, "metrics=<built-in function len>"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            make()
