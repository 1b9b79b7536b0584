"""Keras 3's callbacks: the Callback hooks, History, the progress bar logger, EarlyStopping,
ModelCheckpoint, TerminateOnNaN, LearningRateScheduler, ReduceLROnPlateau and CSVLogger.

The hooks, their order and what they do to the model (stop_training, the optimizer's
learning_rate, restored weights) follow Keras 3, so a Keras callback reads the same here.
"""

from __future__ import annotations

import csv
import numbers
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras.progress import Progbar
from kiln.ir import KilnTypeError, KilnValueError

Logs = dict[str, Any]


class Callback:
    """Base class: override the hooks you need. `self.model` is the model being trained and
    `self.params` holds {"verbose", "epochs", "steps"}."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._model: Any = None

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_model(self, model: Any) -> None:
        self._model = model

    @property
    def model(self) -> Any:
        return self._model

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...
    def on_predict_begin(self, logs: Logs | None = None) -> None: ...
    def on_predict_end(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...

    # Keras's older names for the training batch hooks.
    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs)


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_test_begin",
          "on_test_end", "on_predict_begin", "on_predict_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_batch_begin", "on_predict_batch_end")


class LambdaCallback(Callback):
    """A callback of plain functions, as Keras's: on_epoch_begin / on_epoch_end(epoch, logs),
    on_train_begin / on_train_end(logs), on_train_batch_begin / on_train_batch_end(batch,
    logs), and any other hook by its name (on_batch_begin / on_batch_end: the training
    batch hooks, as in Keras)."""

    def __init__(self, on_epoch_begin: Any = None, on_epoch_end: Any = None,
                 on_train_begin: Any = None, on_train_end: Any = None,
                 on_train_batch_begin: Any = None, on_train_batch_end: Any = None,
                 **hooks: Any) -> None:
        super().__init__()
        hooks.update(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for legacy, name in (("on_batch_begin", "on_train_batch_begin"),
                             ("on_batch_end", "on_train_batch_end")):
            if legacy in hooks:
                function = hooks.pop(legacy)
                hooks[name] = hooks[name] or function
        for name, function in hooks.items():
            if name not in _HOOKS:
                raise KilnValueError(f"LambdaCallback: unknown hook {name!r}. Expected one of "
                                     f"{', '.join(_HOOKS)}")
            if function is not None:
                if not callable(function):
                    raise KilnTypeError(f"LambdaCallback: {name} must be a function. "
                                        f"Received: {function!r}")
                setattr(self, name, _with_logs(function, indexed="batch" in name
                                               or "epoch" in name))


def _with_logs(function: Callable[..., Any], indexed: bool) -> Callable[..., None]:
    """A hook that hands `function` the logs always (None where there are none), as Keras
    calls a LambdaCallback's functions."""
    if indexed:
        return lambda index, logs=None: function(index, logs)
    return lambda logs=None: function(logs)


class CallbackList:
    """The callbacks of one fit/evaluate/predict call, with Keras's defaults added: the
    progress bar first (when verbose), History last (for fit)."""

    def __init__(self, callbacks: Sequence[Callback] | None, model: Any, add_history: bool,
                 add_progbar: bool, **params: Any):
        given = list(callbacks or [])
        for cb in given:
            if not isinstance(cb, Callback):
                raise KilnTypeError(f"Expected callbacks to be kiln.callbacks.Callback "
                                    f"instances. Received: callbacks={given!r}")
        self.callbacks = list(given)
        self.history: History | None = None
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in given):
            self.callbacks.insert(0, ProgbarLogger())
        if add_history:
            self.history = next((cb for cb in given if isinstance(cb, History)), None)
            if self.history is None:
                self.history = History()
                self.callbacks.append(self.history)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(dict(params))

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if hook not in _HOOKS:
            raise AttributeError(hook)

        def call(*args: Any) -> None:
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

        return call


class History(Callback):
    """Records each epoch's logs: `history.history[key]` lists the values by epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.model.history = self


class ProgbarLogger(Callback):
    """Prints "Epoch e/E" and a progress bar (verbose=1) or one line per epoch (verbose=2)."""

    def __init__(self) -> None:
        super().__init__()
        self.progbar: Progbar | None = None
        self.in_fit = False
        self.seen = 0

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.verbose = params.get("verbose", 1)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _reset(self) -> None:
        self.progbar = Progbar(self.target, verbose=self.verbose)
        self.seen = 0

    def _update(self, batch: int, logs: Logs | None) -> None:
        self.seen = batch + 1
        if self.progbar is not None and self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize(self, logs: Logs | None) -> None:
        if self.progbar is not None:
            self.progbar.update(self.target or self.seen, list((logs or {}).items()),
                                finalize=True)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.in_fit = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        self.in_fit = False

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._reset()
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._update(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._finalize(logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        if not self.in_fit:
            self._reset()

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if not self.in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        if not self.in_fit:
            self._finalize(logs)

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._update(batch, None)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        self._finalize(None)


def monitor_mode(owner: str, monitor: str, mode: str, model: Any) -> str:
    """"min" or "max" for `monitor`: mode itself, or in "auto" the direction of the loss or of
    the compiled metric of that name (Keras 3's rule)."""
    if mode in ("min", "max"):
        return mode
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if base == "loss" or base.endswith("_loss"):
        return "min"
    direction = getattr(model, "metric_directions", {}).get(base)
    if direction is not None:
        return "max" if direction == "up" else "min"
    raise KilnValueError(f"{owner} callback received monitor={monitor!r}, but kiln cannot tell "
                         f"whether that metric should be maximized or minimized. Pass "
                         f"mode='max' or mode='min'. Received: mode={mode!r}")


def _check_mode(owner: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise KilnValueError(f"{owner}: expected mode to be one of 'auto', 'min', 'max'. "
                             f"Received: mode={mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop training when `monitor` has stopped improving for `patience` epochs; with
    restore_best_weights=True the weights of the best epoch are restored at the end."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        if not isinstance(patience, int) or patience < 0:
            raise KilnValueError(f"EarlyStopping: expected patience to be a non-negative int. "
                                 f"Received: patience={patience!r}")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = _check_mode("EarlyStopping", mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0
        self.direction = None

    def _improved(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.direction is None:
            self.direction = monitor_mode("EarlyStopping", self.monitor, self.mode, self.model)
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


def save_weights_npz(weights: Sequence[np.ndarray], path: str) -> None:
    """Write weights as an .npz (members arr_0, arr_1, ... in get_weights order), atomically:
    a temporary file in the same folder, then a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, *weights)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class ModelCheckpoint(Callback):
    """Save the model or its weights each epoch (or every `save_freq` batches).

    `filepath` may hold format fields filled from the epoch (1-based) and the logs, e.g.
    "ckpt/{epoch:02d}-{val_loss:.2f}.weights.npz". With save_weights_only=True the file is a
    NumPy .npz whose members arr_0, arr_1, ... are `model.get_weights()` in order (load with
    `np.load(path)` and `model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])`).
    Otherwise the path must end in `.kiln`: each save writes a whole-model artifact
    (`model.save`: config, weights, optimizer state) that `kiln.models.load_model` reads.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None):
        super().__init__()
        filepath = os.fspath(filepath)
        if save_weights_only and not filepath.endswith(".npz"):
            raise KilnValueError("When using save_weights_only=True in ModelCheckpoint, the "
                                 "filepath provided must end in `.npz` (NumPy weights format, "
                                 f"e.g. `.weights.npz`). Received: filepath={filepath!r}")
        if not save_weights_only and not filepath.endswith(".kiln"):
            raise KilnValueError("The filepath provided must end in `.kiln` (kiln's model "
                                 "artifact) when using save_weights_only=False in "
                                 "ModelCheckpoint, or in `.npz` with save_weights_only=True. "
                                 f"Received: filepath={filepath!r}")
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq <= 0):
            raise KilnValueError(f"Unrecognized save_freq: {save_freq!r}. Expected save_freq "
                                 f"to be 'epoch' or a positive integer. "
                                 f"Received: save_freq={save_freq!r}")
        self.filepath = filepath
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _check_mode("ModelCheckpoint", mode)
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        self.best: float | None = initial_value_threshold
        self.direction: str | None = None
        self._batches = 0
        self._epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.save_best_only and self.direction is None:
            self.direction = monitor_mode("ModelCheckpoint", self.monitor, self.mode, self.model)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.save_freq != "epoch":
            self._batches += 1
            if self._batches % self.save_freq == 0:
                self._save(self._epoch, logs or {}, batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def _save(self, epoch: int, logs: Logs, batch: int | None = None) -> None:
        try:
            path = self.filepath.format(epoch=epoch + 1, batch=batch, **logs)
        except KeyError as err:
            raise KilnValueError(f"ModelCheckpoint: failed to format filepath "
                                 f"{self.filepath!r}: no log named {err}. Available: "
                                 f"{sorted(logs)}") from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                return
            if self.best is not None and not (current < self.best if self.direction == "min"
                                              else current > self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            if self.verbose > 0:
                start = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {start} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            save_weights_npz(self.model.get_weights(), path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class LearningRateScheduler(Callback):
    """At the start of each epoch, set the optimizer's learning rate to
    `schedule(epoch, lr)` (or `schedule(epoch)`); the rate is logged as "learning_rate"."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise KilnTypeError(f"LearningRateScheduler: expected a callable schedule. "
                                f"Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        lr = float(optimizer.learning_rate)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:  # a schedule of the epoch alone (Keras accepts both)
            lr = self.schedule(epoch)
        if not _number(lr) or isinstance(lr, np.ndarray):
            raise KilnValueError(f"The output of the `schedule` function should be a float. "
                                 f"Got: {lr!r}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved (by more than
    min_delta) for `patience` epochs, then wait `cooldown` epochs; never below min_lr."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, **kwargs: Any):
        super().__init__()
        if kwargs:
            key = next(iter(kwargs))
            raise KilnTypeError(f"ReduceLROnPlateau: unrecognized keyword argument {key!r}. "
                                f"Received: {key}={kwargs[key]!r}")
        if not _number(factor) or factor >= 1.0:
            raise KilnValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                                 f"Received factor={factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.mode = _check_mode("ReduceLROnPlateau", mode)
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr

    def on_train_begin(self, logs: Logs | None = None) -> None:
        # Keras's rule here: "auto" maximizes monitors whose name holds "acc".
        self.maximize = self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)
        self.best = -np.inf if self.maximize else np.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current: float) -> bool:
        if self.maximize:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file: "epoch" then the log keys sorted (and
    their val_ counterparts, NA where absent), as Keras 3 does."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys: list[str] | None = None
        self.writer: csv.DictWriter | None = None
        self.file: Any = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self.append_header = not f.readline()
        self.file = open(self.filename, "a" if self.append else "w", newline="",  # noqa: SIM115
                         encoding="utf-8")
        self.keys = None
        self.writer = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys],
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}}
        self.writer.writerow(row)
        self.file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.writer = None


__all__ = [
    "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
    "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau",
    "TerminateOnNaN",
]
