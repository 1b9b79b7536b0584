"""Callbacks follow Keras 3: hook order, stop_training, EarlyStopping (with restored best
weights), LearningRateScheduler and ReduceLROnPlateau acting on the optimizer's graph-state
learning rate, TerminateOnNaN, CSVLogger rows, ModelCheckpoint .npz files, and the progress
output of verbose=1 and verbose=2."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from kiln import callbacks, layers, models, optimizers
from kiln.ir import KilnValueError

rs = np.random.default_rng(0)
X = rs.standard_normal((20, 4)).astype(np.float32)
Y = (X @ rs.standard_normal((4, 2))).astype(np.float32)


def _model(lr: float = 0.05) -> models.Sequential:
    model = models.Sequential([layers.Input((4,)), layers.Dense(2)])
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse", metrics=["mae"])
    return model


class Inject(callbacks.Callback):
    """Puts a scripted value in the epoch logs (before the callbacks after it read them) and
    keeps the weights at each epoch's end."""

    def __init__(self, key: str, values: list[float]):
        super().__init__()
        self.key, self.values, self.weights = key, values, []

    def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN201
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def test_hooks_run_in_keras_order() -> None:
    events = []

    class Record(callbacks.Callback):
        def __getattribute__(self, name):  # noqa: ANN001, ANN204
            if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
                return lambda *args: events.append((name, *args[:1]) if args and
                                                   isinstance(args[0], int) else (name,))
            return super().__getattribute__(name)

    model = _model()
    model.fit(X, Y, batch_size=8, epochs=2, validation_data=(X[:10], Y[:10]), verbose=0,
              callbacks=[Record()])
    epoch = [("on_epoch_begin", 0), ("on_train_batch_begin", 0), ("on_train_batch_end", 0),
             ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
             ("on_train_batch_begin", 2), ("on_train_batch_end", 2),
             ("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
             ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",),
             ("on_epoch_end", 0)]
    second = [(e[0], 1) if e[0].startswith("on_epoch") else e for e in epoch]
    assert events == [("on_train_begin",), *epoch, *second, ("on_train_end",)]


def test_batch_logs_are_running_means_and_params_are_set() -> None:
    seen = []

    class Logs(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001, ANN201
            seen.append(dict(logs))

        def on_train_begin(self, logs=None):  # noqa: ANN001, ANN201
            seen.append(self.params)

    model = _model(lr=0.0)
    model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[Logs()])
    assert seen[0] == {"verbose": 0, "epochs": 1, "steps": 3}
    first = model.evaluate(X[:8], Y[:8], verbose=0, return_dict=True)
    assert seen[1] == pytest.approx(first, rel=1e-6)
    assert seen[3] == pytest.approx(model.evaluate(X, Y, verbose=0, return_dict=True), rel=1e-6)


def test_stop_training_is_honoured_after_the_batch() -> None:
    class Stop(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001, ANN201
            if batch == 1:
                self.model.stop_training = True

    model = _model()
    history = model.fit(X, Y, batch_size=4, epochs=5, verbose=0, callbacks=[Stop()])
    assert history.epoch == [0] and model.optimizer.iterations == 2
    assert model.stop_training
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)  # a new fit starts afresh
    assert not model.stop_training and model.optimizer.iterations == 7


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    model = _model()
    inject = Inject("val_loss", [1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    stop = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(X, Y, epochs=6, verbose=0, callbacks=[inject, stop])
    assert history.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3
    assert stop.best == 0.5 and stop.best_epoch == 1
    for got, best in zip(model.get_weights(), inject.weights[1]):
        np.testing.assert_array_equal(got, best)
    assert not np.array_equal(inject.weights[3][0], inject.weights[1][0])


def test_early_stopping_modes_min_delta_and_start_epoch() -> None:
    model = _model()
    stop = callbacks.EarlyStopping(monitor="val_mae", min_delta=0.1, patience=1)
    inject = Inject("val_mae", [1.0, 0.95, 0.5, 0.45, 0.44, 0.43])
    assert model.fit(X, Y, epochs=6, verbose=0, callbacks=[inject, stop]).epoch == [0, 1]
    grow = callbacks.EarlyStopping(monitor="score", mode="max", patience=0, start_from_epoch=2)
    inject = Inject("score", [5.0, 1.0, 1.0, 2.0, 1.5, 3.0])
    assert model.fit(X, Y, epochs=6, verbose=0, callbacks=[inject, grow]).epoch == [0, 1, 2, 3, 4]
    unknown = callbacks.EarlyStopping(monitor="score")
    with pytest.raises(KilnValueError, match="Pass mode='max' or mode='min'"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[Inject("score", [1.0]), unknown])


def test_learning_rate_scheduler_changes_the_graph_learning_rate() -> None:
    base = _model(lr=0.1)
    start = base.get_weights()
    halved = _model(lr=0.1)
    halved.set_weights(start)
    schedule = callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)
    history = halved.fit(X, Y, batch_size=20, epochs=1, verbose=0, callbacks=[schedule])
    base.fit(X, Y, batch_size=20, epochs=1, verbose=0)
    assert history.history["learning_rate"] == pytest.approx([0.05])  # a float32 state
    assert halved.optimizer.learning_rate == pytest.approx(0.05)
    for w0, full, half in zip(start, base.get_weights(), halved.get_weights()):
        np.testing.assert_allclose(half - w0, (full - w0) / 2, rtol=1e-4, atol=1e-7)

    frozen = callbacks.LearningRateScheduler(lambda epoch: 0.1 if epoch == 0 else 0.0)
    inject = Inject("unused", [0, 0, 0])
    history = base.fit(X, Y, epochs=3, verbose=0, callbacks=[frozen, inject])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.0, 0.0])
    for a, b in zip(inject.weights[1], inject.weights[2]):
        np.testing.assert_array_equal(a, b)  # lr 0: no update, and no recompile needed
    bad = callbacks.LearningRateScheduler(lambda epoch, lr: "fast")
    with pytest.raises(KilnValueError, match="should be a float"):
        base.fit(X, Y, epochs=1, verbose=0, callbacks=[bad])


def test_reduce_lr_on_plateau() -> None:
    model = _model(lr=0.1)
    reduce = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1,
                                         min_lr=0.02)
    inject = Inject("val_loss", [1.0, 1.0, 1.0, 1.0, 0.5])
    history = model.fit(X, Y, epochs=5, verbose=0, callbacks=[inject, reduce])
    # logged before the reduction of that epoch, as Keras does
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.02])
    assert model.optimizer.learning_rate == pytest.approx(0.02)

    model = _model(lr=0.1)
    cooled = callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    inject = Inject("val_loss", [1.0] * 6)
    model.fit(X, Y, epochs=6, verbose=0, callbacks=[inject, cooled])
    # Keras's counting: reduced at epoch 1, cooldown ends within epoch 3 (reduced again), 5
    assert model.optimizer.learning_rate == pytest.approx(0.0125)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan(capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(lr=1e12)
    history = model.fit(X, Y * 1e3, batch_size=2, epochs=5, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert model.stop_training and len(history.epoch) == 1
    assert model.optimizer.iterations < 10
    assert not np.isfinite(history.history["loss"][0])
    assert re.search(r"Batch \d+: Invalid loss, terminating training", capsys.readouterr().out)


def test_csv_logger_writes_rows(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "log.csv"
    model = _model()
    model.fit(X, Y, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[callbacks.CSVLogger(str(path))])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert float(rows[2]["loss"]) == pytest.approx(model.history.history["loss"][2])

    model.fit(X, Y, epochs=2, verbose=0,
              callbacks=[callbacks.CSVLogger(str(path), separator=";", append=True)])
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("epoch,") and lines[4].startswith("0;")
    assert lines[4].endswith(";NA;NA")  # no validation: Keras's NA for the val_ columns


def test_model_checkpoint_writes_loadable_npz(tmp_path) -> None:  # noqa: ANN001
    model = _model()
    pattern = str(tmp_path / "ckpt" / "w.{epoch:02d}.weights.npz")
    model.fit(X, Y, epochs=2, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(pattern, save_weights_only=True)])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["w.01.weights.npz",
                                                                     "w.02.weights.npz"]
    with np.load(tmp_path / "ckpt" / "w.02.weights.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    fresh = _model()
    fresh.set_weights(weights)
    np.testing.assert_array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))


def test_model_checkpoint_save_best_only(tmp_path) -> None:  # noqa: ANN001
    model = _model()
    path = tmp_path / "best.weights.npz"
    inject = Inject("val_loss", [1.0, 2.0, 0.5, 0.7])
    best = callbacks.ModelCheckpoint(str(path), save_best_only=True, save_weights_only=True)
    saved = []

    class Watch(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN201
            saved.append(path.stat().st_mtime_ns if path.exists() else None)

    model.fit(X, Y, epochs=4, verbose=0, callbacks=[inject, best, Watch()])
    assert saved[0] is not None and saved[1] == saved[0] and saved[3] == saved[2]
    assert best.best == 0.5
    with np.load(path) as f:
        np.testing.assert_array_equal(f["arr_0"], inject.weights[2][0])


def test_model_checkpoint_refusals() -> None:
    with pytest.raises(KilnValueError, match=re.escape("must end in `.npz`")):
        callbacks.ModelCheckpoint("weights.h5", save_weights_only=True)
    with pytest.raises(KilnValueError, match=re.escape("must end in `.kiln`")):
        callbacks.ModelCheckpoint("model.h5")
    with pytest.raises(KilnValueError, match="save_freq"):
        callbacks.ModelCheckpoint("w.npz", save_weights_only=True, save_freq="sometimes")


def test_progress_output(capsys: pytest.CaptureFixture[str]) -> None:
    model = _model()
    model.fit(X, Y, batch_size=8, epochs=2, verbose=1, validation_data=(X, Y))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    assert re.fullmatch(r"3/3 ━{20} \d+s \d+(us|ms|s)/step - loss: \S+ - mae: \S+ - "
                        r"val_loss: \S+ - val_mae: \S+", out[1]), out[1]
    model.fit(X, Y, batch_size=8, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and re.fullmatch(
        r"3/3 - \d+s - \d+(us|ms|s)/step - loss: \S+ - mae: \S+", out[1]), out[1]
    model.fit(X, Y, epochs=1, verbose=0)
    model.evaluate(X, Y, verbose=0)
    model.predict(X, verbose=0)
    assert capsys.readouterr().out == ""
    model.evaluate(X, Y, batch_size=5, verbose=1)
    assert re.fullmatch(r"4/4 ━{20} \d+s \d+(us|ms|s)/step - loss: \S+ - mae: \S+\n",
                        capsys.readouterr().out)
    model.fit(X, Y, epochs=1)  # verbose="auto": a bar, no "Epoch 1/1" line
    assert capsys.readouterr().out.startswith("1/1 ━")


def test_lambda_callback_calls_its_functions() -> None:
    events = []
    hook = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: events.append(("epoch", epoch, sorted(logs))),
        on_train_begin=lambda logs: events.append(("begin",)),
        on_batch_end=lambda batch, logs: events.append(("batch", batch)),
        on_test_end=lambda logs: events.append(("test", sorted(logs))))
    _model().fit(X, Y, batch_size=16, epochs=1, validation_data=(X[:10], Y[:10]),
                 callbacks=[hook], verbose=0)
    batches = -(-len(X) // 16)
    assert events == [("begin",), *[("batch", b) for b in range(batches)],
                      ("test", ["loss", "mae"]),
                      ("epoch", 0, ["loss", "mae", "val_loss", "val_mae"])]
    with pytest.raises(KilnValueError, match="unknown hook 'on_epoch_ended'"):
        callbacks.LambdaCallback(on_epoch_ended=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function"):
        callbacks.LambdaCallback(on_epoch_end=3)
