"""Losses and metrics against Keras 3's definitions written out in NumPy, and the loss and
metric outputs of the train and eval step graphs (reduction, sample weights, multi-output)."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, f32, f64, i64
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
