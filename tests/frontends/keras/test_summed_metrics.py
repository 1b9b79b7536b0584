"""The summed metrics of the Keras frontend (RootMeanSquaredError, R2Score, the confusion-matrix
metrics): names, what evaluate / fit / the *_on_batch calls report (the sums over all batches
finished, not a mean of batch values), eager use, save and load, and the errors. (Their IR and
finishing are tested in tests/ir/training, against real Keras in tests/oracle.)"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest
from sklearn import metrics as skm

from kiln import layers, metrics, models, optimizers
from kiln.ir import KilnTypeError, KilnValueError

rng = np.random.default_rng(17)


def _binary_model(units: int = 3) -> models.Model:
    model = models.Sequential([layers.Input((5,)), layers.Dense(units, activation="sigmoid")])
    model.set_weights([rng.standard_normal((5, units)).astype("float32"),
                       rng.standard_normal(units).astype("float32")])
    return model


def _data(n: int = 30, units: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return (rng.standard_normal((n, 5)).astype("float32"),
            rng.integers(0, 2, (n, units)).astype("float32"))


@pytest.mark.parametrize("identifier,cls", [
    ("auc", metrics.AUC), ("AUC", metrics.AUC), ("precision", metrics.Precision),
    ("Recall", metrics.Recall), ("true_positives", metrics.TruePositives),
    ("FalseNegatives", metrics.FalseNegatives), ("root_mean_squared_error",
                                                 metrics.RootMeanSquaredError),
    ("r2_score", metrics.R2Score), ("f1_score", metrics.F1Score),
    ("FBetaScore", metrics.FBetaScore), ("binary_io_u", metrics.BinaryIoU),
])
def test_names_resolve_to_summed_metrics_named_as_given(identifier, cls) -> None:  # noqa: ANN001
    metric = metrics.get(metrics.check(identifier), (None, 3), (None, 3))
    assert type(metric) is cls and metric.name == identifier
    assert isinstance(metric, metrics.SummedMetric)


def test_evaluate_sums_statistics_over_batches() -> None:
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=["auc", metrics.Precision(thresholds=[0.3, 0.6]), "recall",
                           metrics.TruePositives(), metrics.RootMeanSquaredError(),
                           metrics.F1Score(average="macro", threshold=0.5)])
    x, y = _data()
    logs = model.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0).astype(np.float64)
    hit = p > 0.5
    assert logs["recall"] == pytest.approx(skm.recall_score(y.ravel(), hit.ravel()))
    np.testing.assert_allclose(logs["precision"], [
        skm.precision_score(y.ravel(), (p > t).ravel()) for t in (0.3, 0.6)], rtol=1e-6)
    assert logs["true_positives"] == np.sum(hit & (y > 0))
    assert logs["root_mean_squared_error"] == pytest.approx(
        np.sqrt(np.mean((p - y) ** 2)), rel=1e-6)
    assert logs["f1_score"] == pytest.approx(skm.f1_score(y, hit, average="macro"), rel=1e-5)
    assert logs["auc"] == pytest.approx(skm.roc_auc_score(y.ravel(), p.ravel()), abs=0.02)
    # not the mean of the batches' values
    per_batch = [model.test_on_batch(x[i:i + 7], y[i:i + 7], return_dict=True)["recall"]
                 for i in range(0, 30, 7)]
    assert abs(np.average(per_batch, weights=[7, 7, 7, 7, 2]) - logs["recall"]) > 1e-3


def test_fit_reports_each_epoch_over_all_its_batches() -> None:
    model = _binary_model()
    # no learning: the predictions stay, so an epoch's value is the metric of the whole set
    model.compile(optimizer=optimizers.SGD(0.0), loss="binary_crossentropy",
                  metrics=[metrics.AUC(num_thresholds=50, curve="PR", name="pr"),
                           metrics.R2Score(class_aggregation=None)])
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=True,
                        validation_data=(x[:12], y[:12])).history
    whole = metrics.AUC(num_thresholds=50, curve="PR")
    whole.update_state(y, model.predict(x, verbose=0))
    assert history["pr"] == pytest.approx([whole.result()] * 2, rel=1e-6)
    r2 = skm.r2_score(y, model.predict(x, verbose=0), multioutput="raw_values")
    for epoch in history["r2_score"]:
        np.testing.assert_allclose(epoch, r2, rtol=1e-5)
    val = skm.r2_score(y[:12], model.predict(x[:12], verbose=0), multioutput="raw_values")
    np.testing.assert_allclose(history["val_r2_score"][-1], val, rtol=1e-5)


def test_mean_iou_of_a_classifier() -> None:
    model = models.Sequential([layers.Input((5,)), layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[metrics.MeanIoU(4, sparse_y_pred=False),
                           metrics.IoU(4, [1], sparse_y_pred=False, name="iou_1")])
    x = rng.standard_normal((40, 5)).astype("float32")
    labels = rng.integers(0, 4, 40)
    logs = model.evaluate(x, labels, batch_size=16, verbose=0, return_dict=True)
    guess = model.predict(x, verbose=0).argmax(-1)
    per_class = skm.jaccard_score(labels, guess, average=None, labels=range(4))
    present = np.isin(range(4), np.concatenate([labels, guess]))
    assert logs["mean_io_u"] == pytest.approx(per_class[present].mean(), rel=1e-5)
    assert logs["iou_1"] == pytest.approx(per_class[1], rel=1e-5)


def test_on_batch_calls_finish_their_own_batch() -> None:
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[metrics.Recall(thresholds=[0.2, 0.8]), "precision"])
    x, y = _data(10)
    p = model.predict(x, verbose=0)
    loss, recall, precision = model.test_on_batch(x, y)
    np.testing.assert_allclose(recall, [skm.recall_score(y.ravel(), (p > t).ravel())
                                        for t in (0.2, 0.8)], rtol=1e-6)
    assert precision == pytest.approx(skm.precision_score(y.ravel(), (p > 0.5).ravel()))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["precision"] == pytest.approx(precision) and logs["loss"] == pytest.approx(loss)


def test_progress_shows_arrays_of_values() -> None:
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[metrics.Precision(thresholds=[0.25, 0.75])])
    out = io.StringIO()
    with redirect_stdout(out):
        model.fit(*_data(16), batch_size=8, epochs=1, verbose=2)
    assert re.search(r"precision: \[\d\.\d{4} \d\.\d{4}\]", out.getvalue()), out.getvalue()


def test_eager_state_sums_batches_and_weights() -> None:
    y = rng.integers(0, 2, (20, 2)).astype("float32")
    p = rng.uniform(size=(20, 2)).astype("float32")
    w = rng.uniform(0, 2, 20).astype("float32")
    auc = metrics.AUC()
    assert auc.result() == 0.0
    auc.update_state(y[:9], p[:9])
    auc.update_state(y[9:], p[9:])
    whole = metrics.AUC()
    whole.update_state(y, p)
    assert auc.result() == pytest.approx(whole.result())
    auc.reset_state()
    assert auc.result() == 0.0
    precision = metrics.Precision()
    precision.update_state(y, p, sample_weight=w)
    hit = p > 0.5
    ww = np.broadcast_to(w[:, None], y.shape)
    assert precision.result() == pytest.approx(
        np.sum(ww * hit * y) / np.sum(ww * hit), rel=1e-6)
    assert metrics.RootMeanSquaredError()(y, p) == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))
    with pytest.raises(KilnValueError, match=re.escape(
            "precision: expected sample_weight of shape (20,)")):
        precision.update_state(y, p, sample_weight=w[:5])


def test_class_arguments_survive_save_and_load(tmp_path) -> None:  # noqa: ANN001
    model = _binary_model()
    chosen = [metrics.AUC(thresholds=[0.3, 0.5, 0.7], summation_method="minoring",
                          multi_label=True, label_weights=[1.0, 2.0, 0.5], name="mauc"),
              metrics.Precision(top_k=1, class_id=2), metrics.PrecisionAtRecall(0.6),
              metrics.SensitivityAtSpecificity(0.4, num_thresholds=30),
              metrics.FBetaScore(average="weighted", beta=0.5, threshold=0.4),
              metrics.R2Score(num_regressors=2), metrics.FalsePositives(thresholds=0.7),
              metrics.OneHotIoU(3, [0, 2], ignore_class=1), metrics.BinaryIoU([1], 0.3)]
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=chosen)
    x, y = _data()
    before = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    model.save(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln")
    after = loaded.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert after == pytest.approx(before)
    assert loaded.metric_directions == model.metric_directions
    assert loaded.metric_directions["false_positives"] == "down"


def test_errors_name_the_metric_and_argument() -> None:
    cases = [
        (lambda: metrics.AUC(curve="ROCK"), "AUC: invalid `curve` argument value 'ROCK'"),
        (lambda: metrics.AUC(num_thresholds=1), "argument `num_thresholds` must be an integer"),
        (lambda: metrics.AUC(num_labels=3), "`num_labels` is needed only when `multi_label`"),
        (lambda: metrics.Precision(thresholds=[0.5, 1.5]),
         "Precision: threshold values must be in [0, 1]"),
        (lambda: metrics.Recall(top_k=0), "Recall: expected `top_k` to be None or an integer"),
        (lambda: metrics.PrecisionAtRecall(1.2),
         "PrecisionAtRecall: argument `recall` must be in the range [0, 1]"),
        (lambda: metrics.FBetaScore(average="mean"), "invalid `average` argument value"),
        (lambda: metrics.R2Score(class_aggregation="sum"), "R2Score: invalid value for"),
        (lambda: metrics.check("precision_at_recall"),
         "metric 'precision_at_recall' needs arguments (recall): pass "
         "kiln.metrics.PrecisionAtRecall(recall=...)"),
        (lambda: metrics.check("MeanIoU"), "pass kiln.metrics.MeanIoU(num_classes=...)"),
        (lambda: metrics.IoU(3, [0, 3]), "IoU: expected target class ids in [0, 3)"),
    ]
    for make, message in cases:
        with pytest.raises(KilnValueError, match=re.escape(message)):
            make()


def test_shape_errors_surface_at_fit_and_change_nothing() -> None:
    model = models.Sequential([layers.Input((5,)), layers.Dense(2), layers.Reshape((2, 1))])
    model.compile(optimizer="sgd", loss="mse", metrics=[metrics.AUC(multi_label=True)])
    weights = model.get_weights()
    x = rng.standard_normal((4, 5)).astype("float32")
    with pytest.raises(KilnTypeError, match="auc: with multi_label=True expected predictions "
                                            "of rank 2"):
        model.fit(x, np.zeros((4, 2, 1), "float32"), verbose=0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[metrics.AUC(multi_label=True, num_labels=4)])
    with pytest.raises(KilnValueError, match=re.escape("auc: expected predictions of 4 labels")):
        model.evaluate(*_data(4), verbose=0)
