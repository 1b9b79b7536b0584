"""The summed metrics of kiln.ir.training.summed_metrics: each statistics builder against its
counts written out in NumPy (hypothesis over shapes, thresholds and weights), each finish
against scikit-learn's metric of the same name where one exists, and how a step reports
summed statistics."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, TensorType, f32
from kiln.ir.training import SGD, LossSpec, MetricSpec, build_eval_step, build_train_step
from kiln.ir.training import losses as ir_losses
from kiln.ir.training import summed_metrics as sm
from kiln.runtimes.reference import run_graph

rng = np.random.default_rng(11)


def _apply(fn, y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None,
           **kwargs) -> np.ndarray:  # noqa: ANN001
    b = GraphBuilder("f")
    t = b.input("t", TensorType(y_true.shape, str(y_true.dtype)))
    p = b.input("p", TensorType(y_pred.shape, str(y_pred.dtype)))
    feed = {"t": y_true, "p": y_pred}
    w = None
    if weights is not None:
        w = b.input("w", TensorType(weights.shape, str(weights.dtype)))
        feed["w"] = weights
    b.output(fn(b, t, p, weights=w, **kwargs), "out")
    return run_graph(b.build(), feed)[0]["out"]


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, thresholds: list[float],
               weights: np.ndarray | None = None, evenly: bool = False) -> np.ndarray:
    """tp, fp, tn, fn per threshold, written from Keras's definition."""
    w = np.ones(y_pred.shape) if weights is None else np.broadcast_to(
        weights.reshape((-1,) + (1,) * (y_pred.ndim - 1)), y_pred.shape)
    if evenly:  # Keras's buckets: ceil(clip(p) * (T - 1)) - 1, at least 0 with epsilons
        count = len(thresholds)
        bucket = np.ceil(np.clip(y_pred, 0, 1) * np.float32(count - 1)) - 1
        if thresholds[0] < 0 or thresholds[-1] > 1:
            bucket = np.maximum(bucket, 0)
        above = [bucket >= i for i in range(count)]
    else:
        above = [y_pred > t for t in thresholds]
    actual = y_true != 0
    rows = [[np.sum(w * (a & hit)), np.sum(w * (~a & hit)), np.sum(w * (~a & ~hit)),
             np.sum(w * (a & ~hit))] for hit in above for a in [actual]]
    return np.array(rows).T


CASES = st.tuples(st.integers(1, 9), st.lists(st.integers(1, 4), min_size=0, max_size=2))


@settings(max_examples=40, deadline=None)
@given(shape=CASES, seed=st.integers(0, 2**31), weighted=st.booleans(),
       thresholds=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_confusion_counts_match_numpy(shape, seed, weighted, thresholds) -> None:  # noqa: ANN001
    gen = np.random.default_rng(seed)
    dims = (shape[0], *shape[1])
    y_true = gen.integers(0, 3, dims).astype(np.float32) * (gen.uniform(size=dims) > 0.4)
    # a grid, so that predictions meet the thresholds exactly now and then
    y_pred = (gen.integers(0, 9, dims) / 8).astype(np.float32)
    weights = gen.uniform(0, 2, dims[0]).astype(np.float32) if weighted else None
    got = _apply(sm.confusion_statistics, y_true, y_pred, weights, thresholds=thresholds,
                 evenly=False)
    np.testing.assert_allclose(got, _confusion(y_true, y_pred, thresholds, weights),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("thresholds", [sm.auc_thresholds(9), sm.constrained_thresholds(9),
                                        sm.auc_thresholds(3)])
def test_evenly_spaced_thresholds_count_as_keras_buckets(thresholds) -> None:  # noqa: ANN001
    y_true = rng.integers(0, 2, (40, 3)).astype(np.float32)
    # outside [0, 1], on the grid, and at the ends
    y_pred = np.concatenate([rng.integers(-2, 11, (30, 3)) / 8,
                             rng.uniform(-0.5, 1.5, (10, 3))]).astype(np.float32)
    assert sm.evenly_spaced(thresholds)
    got = _apply(sm.confusion_statistics, y_true, y_pred, thresholds=thresholds)
    np.testing.assert_array_equal(got, _confusion(y_true, y_pred, thresholds, evenly=True))
    # not the plain comparison: predictions above 1 and the epsilons count differently
    assert not np.array_equal(got, _confusion(y_true, y_pred, thresholds))


def test_top_k_class_id_and_label_weights() -> None:
    y_true = rng.integers(0, 2, (12, 4)).astype(np.float32)
    y_pred = rng.uniform(size=(12, 4)).astype(np.float32)
    y_pred[0] = [0.5, 0.5, 0.5, 0.1]  # a tie: the first two of the three count
    kept = np.zeros_like(y_pred, bool)
    order = np.argsort(-y_pred, axis=-1, kind="stable")[:, :2]
    np.put_along_axis(kept, order, True, axis=-1)
    filtered = np.where(kept, y_pred, sm.NEG_INF)
    got = _apply(sm.confusion_statistics, y_true, y_pred, thresholds=[sm.NEG_INF, 0.3],
                 top_k=2)
    np.testing.assert_array_equal(got, _confusion(y_true, filtered, [sm.NEG_INF, 0.3]))
    got = _apply(sm.confusion_statistics, y_true, y_pred, thresholds=[0.5], class_id=2)
    np.testing.assert_array_equal(got, _confusion(y_true[:, 2:3], y_pred[:, 2:3], [0.5]))
    lw = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    w = rng.uniform(size=12).astype(np.float32)
    got = _apply(sm.confusion_statistics, y_true, y_pred, w, thresholds=[0.25, 0.5],
                 label_weights=lw)
    expected = sum(_confusion(y_true[:, j:j + 1], y_pred[:, j:j + 1], [0.25, 0.5], w) * lw[j]
                   for j in range(4))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_multi_label_counts_each_label() -> None:
    y_true = rng.integers(0, 2, (10, 3)).astype(np.float32)
    y_pred = rng.uniform(size=(10, 3)).astype(np.float32)
    thresholds = sm.auc_thresholds(6)
    got = _apply(sm.confusion_statistics, y_true, y_pred, thresholds=thresholds,
                 multi_label=True)
    assert got.shape == (4, 6, 3)
    for j in range(3):
        np.testing.assert_array_equal(got[:, :, j], _confusion(
            y_true[:, j], y_pred[:, j], thresholds, evenly=True))


def test_finishers_agree_with_scikit_learn() -> None:
    y = rng.integers(0, 2, 300).astype(np.float32)
    score = np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1).astype(np.float32)
    fine = sm.auc_thresholds(5001)  # the Riemann sum converges on the exact area
    sums = _apply(sm.confusion_statistics, y, score, thresholds=fine)
    assert sm.finish_auc(sums) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-3)
    assert sm.finish_auc(sums, "PR") == pytest.approx(
        skm.average_precision_score(y, score), abs=1e-2)
    sums = _apply(sm.confusion_statistics, y, score, thresholds=[0.5])
    assert sm.finish_precision(sums) == pytest.approx(skm.precision_score(y, score > 0.5))
    assert sm.finish_recall(sums) == pytest.approx(skm.recall_score(y, score > 0.5))
    assert sm.finish_count(sums, 1) == np.sum((y == 0) & (score > 0.5))
    # several thresholds: an array
    sums = _apply(sm.confusion_statistics, y, score, thresholds=[0.2, 0.5, 0.8])
    assert sm.finish_precision(sums).shape == (3,)

    labels = rng.integers(0, 4, 200)
    onehot = np.eye(4, dtype=np.float32)[labels]
    scores = rng.uniform(size=(200, 4)).astype(np.float32) + onehot * 0.4
    sums = _apply(sm.fbeta_statistics, onehot, scores)
    predicted = scores.argmax(-1)
    for average in (None, "micro", "macro", "weighted"):
        np.testing.assert_allclose(sm.finish_fbeta(sums, 1.0, average),
                                   skm.f1_score(labels, predicted, average=average),
                                   rtol=1e-5, err_msg=str(average))
    np.testing.assert_allclose(sm.finish_fbeta(sums, 2.0, "macro"),
                               skm.fbeta_score(labels, predicted, beta=2.0, average="macro"),
                               rtol=1e-5)

    target = rng.standard_normal((50, 3)).astype(np.float32)
    guess = (target + rng.standard_normal((50, 3)) * [0.3, 1.0, 2.0]).astype(np.float32)
    sums = _apply(sm.r2_statistics, target, guess)
    for ours, theirs in (("uniform_average", "uniform_average"),
                         ("variance_weighted_average", "variance_weighted"),
                         (None, "raw_values")):
        np.testing.assert_allclose(sm.finish_r2(sums, ours),
                                   skm.r2_score(target, guess, multioutput=theirs), rtol=1e-5)
    # adjusted for 4 regressors over the 150 target values, as Keras counts them
    r2 = skm.r2_score(target, guess)
    assert sm.finish_r2(sums, num_regressors=4) == pytest.approx(
        1 - (1 - r2) * 149 / 145, rel=1e-5)
    sums = _apply(sm.squared_error_statistics, target, guess)
    assert sm.finish_root_mean_squared(sums) == pytest.approx(
        np.sqrt(skm.mean_squared_error(target, guess)), rel=1e-6)


def test_class_confusion_matches_numpy_and_iou_matches_scikit_learn() -> None:
    labels = rng.integers(-1, 5, (8, 5))  # ids outside [0, 4) count nothing
    scores = rng.uniform(size=(8, 5, 4)).astype(np.float32)
    w = rng.uniform(0, 2, 8).astype(np.float32)
    got = _apply(sm.class_confusion_statistics, labels, scores, w, num_classes=4,
                 ignore_class=2, sparse_y_pred=False)
    predicted = scores.argmax(-1)
    expected = np.zeros((4, 4))
    for (i, j), t in np.ndenumerate(labels):
        if 0 <= t < 4 and t != 2:
            expected[t, predicted[i, j]] += w[i]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # one-hot targets, float ids that truncate, thresholds for two classes
    onehot = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 30)]
    ids = rng.uniform(0, 4, 30).astype(np.float32)
    got = _apply(sm.class_confusion_statistics, onehot, ids, num_classes=4,
                 sparse_y_true=False)
    np.testing.assert_array_equal(got, skm.confusion_matrix(
        onehot.argmax(-1), ids.astype(int), labels=range(4)))
    flags = rng.integers(0, 2, (30, 2)).astype(np.float32)
    binary = (rng.integers(0, 5, (30, 2)) / 8).astype(np.float32)  # 0.5 itself is class 1
    sums = _apply(sm.class_confusion_statistics, flags, binary, num_classes=2, threshold=0.5)
    hit = binary >= 0.5
    assert np.any(binary == 0.5)
    np.testing.assert_array_equal(sums, skm.confusion_matrix(flags.ravel(), hit.ravel(),
                                                             labels=[0, 1]))
    truth, guess = rng.integers(0, 4, 200), rng.integers(0, 3, 200)  # class 3 never guessed
    sums = _apply(sm.class_confusion_statistics, truth, guess, num_classes=4)
    per_class = skm.jaccard_score(truth, guess, average=None, labels=range(4))
    assert sm.finish_iou(sums, [0, 1, 2, 3]) == pytest.approx(np.mean(per_class), rel=1e-6)
    assert sm.finish_iou(sums, [1, 3]) == pytest.approx(np.mean(per_class[[1, 3]]), rel=1e-6)
    # a class in neither targets nor predictions does not count in the mean
    sums[2, :] = sums[:, 2] = 0
    assert sm.finish_iou(sums, [0, 2]) == pytest.approx(
        sums[0, 0] / (sums[0].sum() + sums[:, 0].sum() - sums[0, 0]), rel=1e-6)


def test_weighted_statistics_match_numpy() -> None:
    target = rng.standard_normal((20, 2)).astype(np.float32)
    guess = rng.standard_normal((20, 2)).astype(np.float32)
    w = rng.uniform(0, 2, 20).astype(np.float32)
    got = _apply(sm.r2_statistics, target, guess, w)
    wc = w[:, None]
    expected = [np.sum(wc * target, 0), np.sum(wc * target**2, 0),
                np.sum(wc * (target - guess) ** 2, 0), np.full(2, w.sum()), np.full(2, 40.0)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    got = _apply(sm.squared_error_statistics, target, guess, w)
    np.testing.assert_allclose(got, [np.sum(w * np.mean((target - guess) ** 2, -1)), w.sum()],
                               rtol=1e-5)
    onehot = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 20)]
    got = _apply(sm.fbeta_statistics, onehot, guess, w, threshold=0.1)
    hit = (guess > 0.1).astype(np.float32)
    expected = [np.sum(wc * hit * onehot, 0), np.sum(wc * hit * (1 - onehot), 0),
                np.sum(wc * (1 - hit) * onehot, 0), np.sum(wc * onehot, 0)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_empty_sums_finish_to_zero_not_nan() -> None:
    zeros = np.zeros((4, 3))
    assert sm.finish_precision(zeros[:, :1]) == 0.0
    assert sm.finish_recall(zeros[:, :1]) == 0.0
    assert sm.finish_auc(zeros) == 0.0
    assert sm.finish_at(zeros, "recall", 0.5, "precision") == 0.0
    assert sm.finish_root_mean_squared(np.zeros(2)) == 0.0


@pytest.mark.parametrize("fn,kwargs,y_true,y_pred,message", [
    (sm.confusion_statistics, {"thresholds": [0.5]}, f32[4, 3], f32[4, 2],
     "expected targets of the predictions' shape"),
    (sm.confusion_statistics, {"thresholds": [0.5], "multi_label": True}, f32[4, 3, 2],
     f32[4, 3, 2], "with multi_label=True expected predictions of rank 2"),
    (sm.confusion_statistics, {"thresholds": [0.5], "class_id": 3}, f32[4, 3], f32[4, 3],
     "expected class_id in [0, 3)"),
    (sm.fbeta_statistics, {}, f32[4], f32[4], "expected 2D inputs"),
    (sm.r2_statistics, {}, f32[4, 2, 2], f32[4, 2, 2], "expected 2D inputs"),
])
def test_bad_shapes_are_named(fn, kwargs, y_true, y_pred, message) -> None:  # noqa: ANN001
    b = GraphBuilder("f")
    with pytest.raises((KilnTypeError, KilnValueError), match=re.escape(message)):
        fn(b, b.input("t", y_true), b.input("p", y_pred), **kwargs)


def _forward():  # noqa: ANN202
    b = GraphBuilder("forward")
    x = b.input("x", f32["N", 3])
    w = b.state("w", f32[3, 2])
    b.output(b.sigmoid(b.matmul(x, w)), "out")
    return b.build()


def test_steps_output_summed_statistics_as_they_are() -> None:
    forward = _forward()
    auc = MetricSpec("out", "auc", lambda b, t, p: sm.confusion_statistics(
        b, t, p, sm.auc_thresholds(5)), sm.finish_auc)
    loss = [LossSpec("out", ir_losses.binary_crossentropy)]
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = rng.integers(0, 2, (6, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    step = build_eval_step(forward, loss, [auc])
    (out,) = [v.type for name, v in step.outputs if name == "auc"]
    assert out.shape == (4, 5)
    got = run_graph(step, {"x": x, "y": y}, {"w": w})[0]["auc"]
    p = 1 / (1 + np.exp(-(x @ w)))
    np.testing.assert_allclose(got, _confusion(y, p, sm.auc_thresholds(5), evenly=True))
    train = build_train_step(forward, loss, SGD(0.1), [auc])
    assert dict(train.graph.outputs)["auc"].type.shape == (4, 5)


def test_statistics_with_a_batch_axis_are_refused() -> None:
    bad = MetricSpec("out", "per_sample", lambda b, t, p: b.sum(p, axes=(-1,)), lambda s: s)
    with pytest.raises(KilnValueError, match="metric 'per_sample': expected its batch "
                                             "statistics as a float tensor of a fixed shape"):
        build_eval_step(_forward(), [LossSpec("out", ir_losses.binary_crossentropy)], [bad])
