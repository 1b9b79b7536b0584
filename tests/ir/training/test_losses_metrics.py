"""Losses and metrics against Keras 3's definitions written out in NumPy, and the loss and
metric outputs of the train and eval step graphs (reduction, sample weights, multi-output)."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, f32, f64, grad, i64
from kiln.ir.training import (
    LOSSES,
    METRICS,
    SGD,
    LossSpec,
    MetricSpec,
    build_eval_step,
    build_train_step,
)
from kiln.runtimes.reference import run_graph

EPS = 1e-7
rng = np.random.default_rng(7)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _apply(fn, y_true: np.ndarray, y_pred: np.ndarray, **kwargs) -> np.ndarray:  # noqa: ANN001
    b = GraphBuilder("f")
    t = b.input("t", TensorType(y_true.shape, str(y_true.dtype)))
    p = b.input("p", TensorType(y_pred.shape, str(y_pred.dtype)))
    b.output(fn(b, t, p, **kwargs), "out")
    return run_graph(b.build(), {"t": y_true, "p": y_pred})[0]["out"]


probs = _softmax(rng.standard_normal((6, 4)))
onehot = np.eye(4)[rng.integers(0, 4, 6)]
labels = onehot.argmax(-1)
binary_true = (rng.uniform(size=(6, 3)) > 0.5).astype(np.float64)
binary_pred = rng.uniform(0.01, 0.99, (6, 3))
logits = rng.standard_normal((6, 4)) * 3


@pytest.mark.parametrize("name,args,kwargs,expected", [
    ("mean_squared_error", (binary_true, binary_pred), {},
     np.mean((binary_true - binary_pred) ** 2, -1)),
    ("mean_absolute_error", (binary_true, binary_pred), {},
     np.mean(np.abs(binary_true - binary_pred), -1)),
    ("binary_crossentropy", (binary_true, binary_pred), {},
     -np.mean(binary_true * np.log(np.clip(binary_pred, EPS, 1 - EPS))
              + (1 - binary_true) * np.log(1 - np.clip(binary_pred, EPS, 1 - EPS)), -1)),
    ("binary_crossentropy", (binary_true, logits[:, :3]), {"from_logits": True},
     -np.mean(binary_true * np.log(1 / (1 + np.exp(-logits[:, :3])))
              + (1 - binary_true) * np.log(1 - 1 / (1 + np.exp(-logits[:, :3]))), -1)),
    ("categorical_crossentropy", (onehot, probs * 3), {},
     -np.sum(onehot * np.log(np.clip(probs, EPS, 1 - EPS)), -1)),
    ("categorical_crossentropy", (onehot, logits), {"from_logits": True},
     -np.sum(onehot * _log_softmax(logits), -1)),
    ("sparse_categorical_crossentropy", (labels, probs), {},
     -np.log(np.clip(probs[np.arange(6), labels], EPS, 1 - EPS))),
    ("sparse_categorical_crossentropy", (labels[:, None].astype(np.int32), logits),
     {"from_logits": True}, -_log_softmax(logits)[np.arange(6), labels]),
])
def test_loss_matches_keras_definition(name, args, kwargs, expected) -> None:  # noqa: ANN001
    np.testing.assert_allclose(_apply(LOSSES[name], *args, **kwargs), expected, rtol=1e-10)


def test_probability_clipping_keeps_losses_finite() -> None:
    y_true = np.array([[1.0, 0.0]])
    y_pred = np.array([[0.0, 1.0]])
    value = _apply(LOSSES["binary_crossentropy"], y_true, y_pred)
    np.testing.assert_allclose(value, -np.log(EPS), rtol=1e-6)


@pytest.mark.parametrize("name,args,expected", [
    ("binary_accuracy", (binary_true, binary_pred),
     np.mean(binary_true == (binary_pred > 0.5), -1)),
    ("categorical_accuracy", (onehot, probs), (onehot.argmax(-1) == probs.argmax(-1)) * 1.0),
    ("sparse_categorical_accuracy", (labels, probs), (labels == probs.argmax(-1)) * 1.0),
    ("mean_absolute_error", (binary_true, binary_pred),
     np.mean(np.abs(binary_true - binary_pred), -1)),
])
def test_metric_matches_keras_definition(name, args, expected) -> None:  # noqa: ANN001
    np.testing.assert_allclose(_apply(METRICS[name], *args), expected)


def test_target_rank_is_matched_like_keras() -> None:
    y_pred = rng.uniform(0.1, 0.9, (5, 1))
    y_true = (rng.uniform(size=5) > 0.5).astype(np.float64)
    got = _apply(LOSSES["binary_crossentropy"], y_true, y_pred)
    expected = -(y_true * np.log(y_pred[:, 0]) + (1 - y_true) * np.log(1 - y_pred[:, 0]))
    np.testing.assert_allclose(got, expected)


def test_sparse_labels_of_the_wrong_rank_are_refused() -> None:
    with pytest.raises(KilnTypeError, match="sparse_categorical_crossentropy"):
        _apply(LOSSES["sparse_categorical_crossentropy"], np.zeros((6, 2, 2), np.int64), probs)


def _two_output_model() -> object:
    b = GraphBuilder("forward")
    x = b.input("x", f64["N", 4])
    w = b.state("w", f64[4])
    b.output(b.softmax(b.mul(x, w)), "probs")
    b.output(b.sum(b.mul(x, w), axes=(1,), keepdims=True), "value")
    return b.build()


def test_multi_output_losses_are_weighted_and_reported_per_output() -> None:
    forward = _two_output_model()
    mse = LOSSES["mean_squared_error"]
    cce = LOSSES["categorical_crossentropy"]
    losses = [LossSpec("probs", cce, weight=0.5), LossSpec("value", mse, weight=2.0)]
    metrics = [MetricSpec("probs", "accuracy", METRICS["categorical_accuracy"])]
    graph = build_eval_step(forward, losses, metrics)
    assert [v.name for v in graph.inputs] == ["x", "y.probs", "y.value"]
    x, w = rng.standard_normal((5, 4)), rng.standard_normal(4)
    y_probs, y_value = np.eye(4)[[0, 1, 2, 3, 0]], rng.standard_normal((5, 1))
    out, _ = run_graph(graph, {"x": x, "y.probs": y_probs, "y.value": y_value}, {"w": w})
    p = _softmax(x * w)
    cce_value = np.mean(-np.sum(y_probs * np.log(np.clip(p, EPS, 1 - EPS)), -1))
    mse_value = np.mean(((x @ w)[:, None] - y_value) ** 2)
    np.testing.assert_allclose(out["probs_loss"], cce_value)
    np.testing.assert_allclose(out["value_loss"], mse_value)
    np.testing.assert_allclose(out["loss"], 0.5 * cce_value + 2.0 * mse_value)
    np.testing.assert_allclose(out["probs_accuracy"],
                               np.mean(p.argmax(-1) == y_probs.argmax(-1)))


def test_sample_weights_follow_sum_over_batch_size() -> None:
    b = GraphBuilder("forward")
    x = b.input("x", f32["N", 2])
    w = b.state("w", f32[2])
    b.output(b.mul(x, w), "out")
    forward = b.build()
    step = build_train_step(forward, [LossSpec("out", LOSSES["mean_squared_error"])], SGD(0.0),
                            sample_weight=True)
    x = rng.standard_normal((4, 2)).astype(np.float32)
    y = rng.standard_normal((4, 2)).astype(np.float32)
    sw = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    out, _ = run_graph(step.graph, {"x": x, "y": y, "sample_weight": sw},
                       {"w": np.ones(2, np.float32), **step.initial_state})
    per_sample = np.mean((x - y) ** 2, -1)
    np.testing.assert_allclose(out["loss"], np.sum(per_sample * sw) / 4, rtol=1e-6)


def test_step_errors_name_what_is_wrong() -> None:
    forward = _two_output_model()
    mse = LOSSES["mean_squared_error"]
    with pytest.raises(KilnValueError, match="unknown output 'nope'"):
        build_eval_step(forward, [LossSpec("nope", mse)])
    with pytest.raises(KilnValueError, match="'bias' is not state"):
        build_train_step(forward, [LossSpec("value", mse)], SGD(), trainable=["bias"])
    with pytest.raises(KilnValueError, match="at least one loss"):
        build_eval_step(forward, [])


def test_integer_labels_input_type_can_differ_from_the_output() -> None:
    forward = _two_output_model()
    spec = LossSpec("probs", LOSSES["sparse_categorical_crossentropy"],
                    target_type=i64["N"])
    graph = build_train_step(forward, [spec], SGD(0.1)).graph
    assert graph.inputs[1].type == i64["N"]


# -- the losses beyond the book's (Keras 3's regression, probabilistic and hinge losses) ----
regression_true = rng.standard_normal((6, 3))
regression_pred = rng.standard_normal((6, 3))
counts_true = rng.uniform(0.0, 3.0, (6, 3))
counts_pred = rng.uniform(0.1, 3.0, (6, 3))
signs = np.where(binary_true > 0, 1.0, -1.0)
tanh_pred = np.tanh(regression_pred)


def _huber(t: np.ndarray, p: np.ndarray, delta: float) -> np.ndarray:
    e = np.abs(p - t)
    return np.mean(np.where(e <= delta, 0.5 * e * e, delta * e - 0.5 * delta * delta), -1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("name,args,kwargs,expected", [
    ("mean_absolute_percentage_error", (regression_true, regression_pred), {},
     100 * np.mean(np.abs(regression_true - regression_pred)
                   / np.maximum(np.abs(regression_true), EPS), -1)),
    ("mean_squared_logarithmic_error", (counts_true, regression_pred), {},
     np.mean((np.log(np.maximum(regression_pred, EPS) + 1)
              - np.log(np.maximum(counts_true, EPS) + 1)) ** 2, -1)),
    ("huber", (regression_true, regression_pred), {},
     _huber(regression_true, regression_pred, 1.0)),
    ("huber", (regression_true, regression_pred), {"delta": 0.4},
     _huber(regression_true, regression_pred, 0.4)),
    ("log_cosh", (regression_true, regression_pred), {},
     np.mean(np.log(np.cosh(regression_pred - regression_true)), -1)),
    ("kl_divergence", (onehot, probs), {},
     np.sum(np.clip(onehot, EPS, 1) * np.log(np.clip(onehot, EPS, 1) / probs), -1)),
    ("poisson", (counts_true, counts_pred), {},
     np.mean(counts_pred - counts_true * np.log(counts_pred + EPS), -1)),
    # 0/1 labels become -1/1 when the whole batch is 0/1; -1/1 labels stay
    ("hinge", (binary_true, tanh_pred), {},
     np.mean(np.maximum(1 - signs * tanh_pred, 0), -1)),
    ("hinge", (signs, tanh_pred), {}, np.mean(np.maximum(1 - signs * tanh_pred, 0), -1)),
    ("squared_hinge", (binary_true, tanh_pred), {},
     np.mean(np.maximum(1 - signs * tanh_pred, 0) ** 2, -1)),
    ("categorical_hinge", (onehot, logits), {},
     np.maximum(np.max((1 - onehot) * logits, -1) - np.sum(onehot * logits, -1) + 1, 0)),
    ("cosine_similarity", (regression_true, regression_pred), {},
     -np.sum(_unit(regression_true) * _unit(regression_pred), -1)),
    ("cosine_similarity", (regression_true, regression_pred), {"axis": 0},
     -np.sum(regression_true / np.linalg.norm(regression_true, axis=0)
             * regression_pred / np.linalg.norm(regression_pred, axis=0), 0)),
])
def test_more_losses_match_keras_definitions(name, args, kwargs, expected) -> None:  # noqa: ANN001
    np.testing.assert_allclose(_apply(LOSSES[name], *args, **kwargs), expected, rtol=1e-10)


def test_correlation_metrics_match_their_definitions() -> None:
    t, p = regression_true, regression_pred
    pearson = [np.corrcoef(a, b)[0, 1] for a, b in zip(t, p)]
    np.testing.assert_allclose(_apply(METRICS["pearson_correlation"], t, p), pearson,
                               rtol=1e-10)
    # Keras 3's concordance centres the targets on the predictions' mean in its covariance
    tm, pm = t.mean(-1, keepdims=True), p.mean(-1, keepdims=True)
    spread = t.var(-1, keepdims=True) + p.var(-1, keepdims=True) + (tm - pm) ** 2
    concordance = np.mean(2 * (t - pm) * (p - pm) / (spread + EPS), -1)
    np.testing.assert_allclose(_apply(METRICS["concordance_correlation"], t, p), concordance,
                               rtol=1e-10)
    np.testing.assert_allclose(_apply(METRICS["pearson_correlation"], t, p, axis=0),
                               [np.corrcoef(a, b)[0, 1] for a, b in zip(t.T, p.T)],
                               rtol=1e-10)


def test_hinge_keeps_labels_of_a_batch_that_is_not_all_zero_or_one() -> None:
    labels = binary_true.copy()
    labels[0, 0] = 0.5  # one label outside {0, 1}: Keras converts none of the batch
    np.testing.assert_allclose(_apply(LOSSES["hinge"], labels, tanh_pred),
                               np.mean(np.maximum(1 - labels * tanh_pred, 0), -1))


@pytest.mark.filterwarnings("ignore:divide by zero")  # rsqrt(0) = inf, then clipped to 1e7
def test_cosine_similarity_of_a_zero_vector_is_zero_and_the_axis_is_checked() -> None:
    t = np.array([[0.0, 0.0], [1.0, 1.0]])
    p = np.array([[1.0, 0.0], [2.0, 2.0]])
    np.testing.assert_allclose(_apply(METRICS["cosine_similarity"], t, p), [0.0, 1.0])
    with pytest.raises(KilnValueError, match="cosine_similarity: expected an axis"):
        _apply(LOSSES["cosine_similarity"], t, p, axis=2)


def test_top_k_counts_ties_for_the_label_like_keras_in_top_k() -> None:
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4],
                       [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([2, 0, 1, 3])
    # row 0: label's score ties for first; row 2: third largest; row 3: all tie
    np.testing.assert_array_equal(
        _apply(METRICS["sparse_top_k_categorical_accuracy"], labels, scores, k=1),
        [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        _apply(METRICS["sparse_top_k_categorical_accuracy"], labels, scores, k=2),
        [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        _apply(METRICS["top_k_categorical_accuracy"], np.eye(4)[labels], scores, k=3),
        [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(
        _apply(METRICS["sparse_top_k_categorical_accuracy"], labels[:, None].astype(np.int32),
               scores, k=5), [1.0, 1.0, 1.0, 1.0])  # k beyond the classes: every label
    with pytest.raises(KilnValueError, match="k >= 1"):
        _apply(METRICS["top_k_categorical_accuracy"], np.eye(4)[labels], scores, k=0)


def _finite_difference(fn, y_true: np.ndarray, y_pred: np.ndarray,  # noqa: ANN001
                       eps: float = 1e-6) -> np.ndarray:
    def total(p: np.ndarray) -> float:
        return float(np.sum(_apply(fn, y_true, p)))

    result = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        plus, minus = y_pred.copy(), y_pred.copy()
        plus[index] += eps
        minus[index] -= eps
        result[index] = (total(plus) - total(minus)) / (2 * eps)
    return result


# Predictions kept away from each loss's kinks (the hinge's 1, huber's delta, the clips).
GRADIENT_CASES = {
    "mean_absolute_percentage_error": (regression_true, regression_pred),
    "mean_squared_logarithmic_error": (counts_true, counts_pred),
    "huber": (regression_true, regression_pred),
    "log_cosh": (regression_true, regression_pred),
    "kl_divergence": (onehot * 0.8 + 0.05, probs),
    "poisson": (counts_true, counts_pred),
    "hinge": (binary_true, tanh_pred * 0.9),
    "squared_hinge": (signs, tanh_pred * 0.9),
    "categorical_hinge": (onehot, logits),
    "cosine_similarity": (regression_true, regression_pred),
}


@pytest.mark.parametrize("name", GRADIENT_CASES)
def test_more_losses_gradients_match_finite_differences(name: str) -> None:
    y_true, y_pred = GRADIENT_CASES[name]
    b = GraphBuilder("loss")
    t = b.input("t", TensorType(y_true.shape, "float64"))
    p = b.input("p", TensorType(y_pred.shape, "float64"))
    b.output(b.sum(LOSSES[name](b, t, p)), "loss")
    graph = grad(b.build(), "loss", ["p"])
    analytic = run_graph(graph, {"t": y_true, "p": y_pred})[0]["grad.p"]
    np.testing.assert_allclose(analytic, _finite_difference(LOSSES[name], y_true, y_pred),
                               rtol=1e-5, atol=1e-7)
