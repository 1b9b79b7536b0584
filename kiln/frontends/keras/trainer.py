"""compile / fit / evaluate / predict for Model, as Keras 3 defines them.

The graphs are built once and kept until compile() is called again: the training step
(forward, loss, metrics, gradients and optimizer update as one IR graph), the test step and
the predict graph, each made on first need and run by one executable. The executable's state
is the model's own Variable.value arrays, the optimizer's arrays and the random key, updated
in place, so weights, optimizer and model never drift apart. Data is checked in full before
the first step, so a call that fails leaves the model as it was.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kiln.compiler.pass_manager import CompileOptions
from kiln.frontends.keras import data as data_mod
from kiln.frontends.keras import metrics as metrics_mod
from kiln.frontends.keras import optimizers as optimizers_mod
from kiln.frontends.keras import streams
from kiln.frontends.keras.callbacks import CallbackList, History
from kiln.frontends.keras.compile_args import (
    OutputSpec,
    check_loss_weights,
    checked_loss,
    checked_metrics,
    outputs_spec,
)
from kiln.frontends.keras.data import Dataset
from kiln.frontends.keras.layer import LoweringContext
from kiln.frontends.keras.metric import SummedMetric
from kiln.frontends.keras.seeding import rng
from kiln.frontends.keras.streams import Stream
from kiln.ir import KilnError, KilnValueError, TensorType
from kiln.ir.training import LossSpec, MetricSpec, build_eval_step, build_train_step
from kiln.ir.training.summed_metrics import finish_mean
from kiln.ir.types import numpy_dtype
from kiln.runtimes import check_backend, create_executable, get_backend, residency

SEED_STATE = LoweringContext.SEED_STATE


class _Mean:
    """Keras's metrics over an epoch: each step's value weighted by its batch size, and for
    summed metrics (log name -> finish) the sum of the steps' statistics, finished."""

    def __init__(self, summed: dict[str, Any] | None = None) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.summed = summed or {}
        self.statistics: dict[str, np.ndarray] = {}

    def add(self, values: dict[str, Any], size: int) -> None:
        for key, value in values.items():
            if key in self.summed:
                total = self.statistics.get(key)
                if total is None:
                    self.statistics[key] = np.array(value, np.float64)
                else:
                    total += value
            else:
                self.sums[key] = self.sums.get(key, 0.0) + float(value) * size
        self.count += size

    def result(self) -> dict[str, Any]:
        logs = {key: self.sums[key] / self.count for key in self.sums}
        logs.update((key, self.summed[key](total)) for key, total in self.statistics.items())
        return {key: logs[key] for key in sorted(logs)}


def _to_host(exe: Any) -> None:
    """Bring the state arrays up to date with a device-resident executable's (numba-cuda);
    host backends update them in place and have nothing to do."""
    sync = getattr(exe, "sync_state", None)
    if sync is not None:
        sync()


# executable -> residency.epoch() when its load_state last looked for host writes
_LOOKED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _to_device(exe: Any) -> None:
    """Send state arrays changed on the host (set_weights, a callback) to the device. The
    frontend hands its arrays out for writing only through Variable.value and the
    optimizer's state (which bump residency's epoch): while the epoch stays, the host wrote
    nothing through it and there is nothing to compare (small arrays, a learning rate a
    callback sets, the executable notices by itself at every call)."""
    load = getattr(exe, "load_state", None)
    if load is not None and _LOOKED.get(exe) != residency.epoch():
        load()
        _LOOKED[exe] = residency.epoch()


def _ahead(exe: Any, entry: str, batches: Iterator[tuple[dict[str, np.ndarray], int]],
           ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """The batches, each yielded once the next one's copy to the device has started, on
    executables that prefetch (numba-cuda: a second stream, so the copy overlaps the step);
    the batches must stay intact one step ahead (Dataset.batches with buffers=2)."""
    prefetch = getattr(exe, "prefetch", None)
    if prefetch is None:
        yield from batches
        return
    current = next(batches, None)
    if current is not None:
        prefetch(entry, current[0])
    while current is not None:
        following = next(batches, None)
        if following is not None:
            prefetch(entry, following[0])
        yield current
        current = following


def _array_epochs(data: Dataset, batch_size: int, steps: int | None, shuffle: bool | str = False,
                  buffers: int = 1) -> Any:
    """A function giving each epoch's batches of arrays: one pass over them, or with `steps`
    that many batches, each epoch going on where the last stopped and a new pass (shuffled
    anew) beginning when one ends."""
    passes: list[Iterator[tuple[dict[str, np.ndarray], int]]] = []

    def epoch() -> Iterator[tuple[dict[str, np.ndarray], int]]:
        if steps is None:
            yield from data.batches(batch_size, shuffle, rng(), buffers=buffers)
            return
        for _ in range(steps):
            item = next(passes[0], None) if passes else None
            if item is None:
                passes[:] = [data.batches(batch_size, shuffle, rng(), buffers=buffers)]
                item = next(passes[0])
            yield item
    return epoch


def _steps_size(data: Dataset, batch_size: int | None, steps: int | None) -> int:
    """Keras's batch size for arrays: the given one, else as many samples as make `steps`
    batches, else 32."""
    if batch_size is None and steps:
        return -(-data.size // steps)
    return batch_size or 32


def _in_batch(err: KilnError, stream: Stream) -> KilnError:
    """The error of a batch's checks, naming the batch."""
    return type(err)(f"{stream!r}, batch {stream.position}: {err}")


def _no_arrays_beside(stream: Stream, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            what = "the targets" if name == "y" else "the sample weights"
            raise KilnValueError(f"When providing `x` as {stream.described}, `{name}` should not "
                                 f"be passed. Instead, {what} should be included as part of "
                                 f"the {stream.kind}.")


def _check_verbose(verbose: Any) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise KilnValueError(f"Expected verbose to be 'auto', 0, 1 or 2. "
                             f"Received: verbose={verbose!r}")
    return int(verbose)


def _watches_batches(cbs: CallbackList) -> bool:
    """Whether a callback may act on each batch. Only History is known not to (a user's
    callback may answer any hook, even through __getattr__), and with History alone (fit
    with verbose=0 and no callbacks) the loop need not call the batch hooks."""
    return any(type(cb) is not History for cb in cbs.callbacks)


class Trainer:
    """The training half of Model: compile, fit, evaluate, predict and the *_on_batch calls."""

    def __init__(self) -> None:
        self.compiled = False
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss: Any = None
        self.stop_training = False
        self.history: History | None = None
        self.metric_directions: dict[str, str] = {}
        # log name -> finish, for the metrics whose steps report summed statistics
        self.metric_finish: dict[str, Any] = {}
        self._compile_args: dict[str, Any] = {}
        self._backend: str | None = None
        # The pass level and IR dumps of the backend's compiler (kiln compile -O, --dump-ir).
        self.compile_options = CompileOptions()
        self._seed: np.ndarray | None = None  # the random key, drawn when first needed
        self._reset_graphs()

    # -- compile -------------------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                loss_weights: Any = None, backend: str | None = None) -> None:
        """Configure training: the optimizer (a name or an instance), the loss and metrics
        (a name, an object, a list, or a dict by output name), loss_weights (a list or dict
        by output), and the backend that runs the graphs (default: kiln.get_backend())."""
        optimizer = optimizers_mod.get(optimizer)
        backend = check_backend(backend) if backend is not None else get_backend()
        loss = checked_loss(loss)
        metrics = checked_metrics(metrics)
        check_loss_weights(loss_weights)
        args = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights}
        if self.built and self._inputs:
            self._outputs_spec(args)  # structure errors now, not at the first fit
        self.optimizer, self.loss, self._backend = optimizer, loss, backend
        self._compile_args = args
        self.compiled = True
        self._reset_graphs()

    def _outputs_spec(self, args: dict[str, Any] | None = None) -> list[OutputSpec]:
        args = args or self._compile_args
        return outputs_spec(args, self.output_names, self._outputs)

    def _require_compiled(self, method: str) -> None:
        if not self.compiled:
            raise KilnValueError(f"You must call `compile()` before using the model "
                                 f"(model.{method}).")
        given = list(self.loss.values()) if isinstance(self.loss, dict) else \
            self.loss if isinstance(self.loss, list) else [self.loss]
        if all(loss is None for loss in given):
            raise KilnValueError("No loss to compute. Provide a `loss` argument in `compile()`.")

    # -- data ----------------------------------------------------------------------------
    def _dataset(self, x: Any, y: Any = None, sample_weight: Any = None,
                 class_weight: Any = None, targets: bool = True,
                 where: tuple[str, str, str] = ("x", "y", "sample_weight")) -> Dataset:
        """Check and cast everything before any step; builds an unbuilt Sequential from x."""
        x_arg, y_arg, w_arg = where
        self._build_on(x)
        built = bool(self._inputs)
        in_names = self.input_names if built else ["input"]
        xs = [(label, data_mod.to_array(raw, label))
              for label, raw in data_mod.structure(x, in_names, x_arg)]
        groups: dict[str, list[tuple[str, np.ndarray]]] = {x_arg: xs, y_arg: [], w_arg: []}
        ys: dict[str, tuple[str, np.ndarray]] = {}
        if targets:
            if y is None:
                raise KilnValueError(f"Expected {y_arg} (the targets) for a model compiled with "
                                     f"a loss. Received: {y_arg}=None")
            out_names = self.output_names if built else ["output"]
            # outputs without a loss need no target (None in a list, absent from a dict)
            needed = ([o.name for o in self._outputs_spec() if o.loss is not None] if built
                      else out_names)
            if isinstance(y, dict):
                out_names = [n for n in out_names if n in needed or n in y]
            for (label, raw), name in zip(data_mod.structure(y, out_names, y_arg), out_names):
                if raw is not None or name in needed:
                    ys[name] = (label, data_mod.to_array(raw, label))
            groups[y_arg] = list(ys.values())
            if sample_weight is not None:
                groups[w_arg] = [(w_arg, data_mod.check_sample_weight(sample_weight, w_arg))]
        size = data_mod.check_cardinality(groups)
        if size == 0:
            raise KilnValueError(f"Expected at least one sample. Received: "
                                 f"{x_arg}.shape={xs[0][1].shape}")
        if not built:
            self.build((None, *xs[0][1].shape[1:]))
        feed = {}
        for (label, array), name, tensor in zip(xs, self.input_names, self._inputs):
            feed[name] = data_mod.check_input(array, tensor.shape, numpy_dtype(tensor.dtype),
                                              label, name, self.name)
        if not targets:
            return Dataset(feed, size)
        if not built:
            ys = {self.output_names[0]: ys["output"]}
        outputs = self._outputs_spec()
        single = len(outputs) == 1
        for out in outputs:
            if out.loss is not None:
                label, array = ys[out.name]
                feed["y" if single else f"y.{out.name}"] = data_mod.check_target(
                    array, out.loss, out.name, out.shape, out.dtype, label)
        weights = groups[w_arg][0][1] if groups[w_arg] else None
        if class_weight is not None:
            if not single:
                raise KilnValueError("class_weight is only supported for models with a single "
                                     f"output. Received: class_weight={class_weight!r}")
            cw = data_mod.class_weights(class_weight, ys[outputs[0].name][1])
            weights = cw if weights is None else weights * cw
        if weights is not None:
            feed["sample_weight"] = weights
        return Dataset(feed, size)

    # -- graphs and the executable -------------------------------------------------------
    def _reset_graphs(self) -> None:
        self._graphs: dict[str, Any] = {}
        self._graph_keys: dict[str, Any] = {}
        self._graph_structure: Any = None
        self._executable: Any = None
        self._bound: list[tuple[str, np.ndarray]] = []
        self._sources: list[tuple[str, Any, np.ndarray]] = []  # state name, Variable, array
        # The per-call fast path: (entry, signatures of x, y, sample_weight) -> the FeedPlan
        # and the executable it was made for, and each entry's log names in sorted order.
        self._plans: dict[tuple, tuple[data_mod.FeedPlan, Any]] = {}
        self._log_order: dict[str, tuple[list[str], list[int]]] = {}

    def compiled_graphs(self) -> dict[str, Any]:
        """The step graphs built so far (train_step, test_step, predict), as IR before the
        backend's passes: what `fit`, `evaluate` and `predict` run."""
        return dict(getattr(self, "_graphs", {}))

    @staticmethod
    def _key(data: Dataset) -> tuple:
        """What a step graph depends on in the data: each fed array's dtype and shape."""
        return tuple(sorted((name, str(a.dtype), a.shape[1:]) for name, a in data.feed.items()))

    def _specs(self, data: Dataset) -> tuple[list[LossSpec], list[MetricSpec]]:
        outputs = self._outputs_spec()
        single = len(outputs) == 1
        loss_specs, metric_specs, taken = [], [], set()
        self.metric_directions, self.metric_finish = {}, {}
        masked = {name for name, t in zip(self.output_names, self._outputs)
                  if t._keras_mask is not None}
        for out in outputs:
            if out.loss is None:
                continue
            target = data.feed["y" if single else f"y.{out.name}"]
            loss_specs.append(LossSpec(out.name, out.loss.ir, out.weight,
                                       TensorType(("N", *target.shape[1:]), str(target.dtype))))
            for identifier in out.metrics:
                metric = metrics_mod.get(identifier, target.shape, out.shape)
                name = metric.name
                while (name if single else f"{out.name}_{name}") in taken | {"loss"}:
                    name += "_1"
                log_name = name if single else f"{out.name}_{name}"
                taken.add(log_name)
                self.metric_directions[log_name] = metric.direction
                finish = metric.finish if isinstance(metric, SummedMetric) else None
                # Keras 3's mean metrics weigh an output's values by its mask.
                by_mask = finish is None and out.name in masked
                if by_mask:
                    finish = finish_mean
                if finish is not None:
                    self.metric_finish[log_name] = finish
                metric_specs.append(MetricSpec(out.name, name, metric.ir, finish, by_mask))
        return loss_specs, metric_specs

    def _step_graph(self, entry: str, losses: list[LossSpec], metrics: list[MetricSpec],
                    weighted: bool) -> tuple[Any, dict[str, np.ndarray]]:
        """The train_step or test_step graph for these losses and metrics, and (train_step)
        the optimizer state's initial values. Both add the regularizers' penalties to the
        loss; train_step applies the trainable weights' constraints after the update."""
        forward = self.forward_graph(training=entry == "train_step", name="forward",
                                     penalties=True, masks=True)
        if entry == "test_step":
            return build_eval_step(forward.graph, losses, metrics, weighted, name="test_step",
                                   penalty=forward.penalty, masks=forward.masks), {}
        names = self.state_names()
        variables = [v for v in self.trainable_weights if v.type.is_float] \
            if self.trainable else []
        step = build_train_step(forward.graph, losses, self.optimizer.rule(), metrics,
                                trainable=[names[id(v)] for v in variables],
                                sample_weight=weighted, name="train_step",
                                penalty=forward.penalty,
                                constraints={names[id(v)]: v.constraint for v in variables
                                             if v.constraint is not None},
                                decayed=[names[id(v)] for v in variables
                                         if self.optimizer._use_weight_decay(v)],
                                masks=forward.masks)
        return step.graph, step.initial_state

    def _runtime(self, wanted: dict[str, Dataset | None]) -> Any:
        """The executable with the entries of `wanted` built for these data's dtypes and
        shapes (entry name -> the data it will run on)."""
        if self._graph_structure is not self._records:
            self._reset_graphs()
            self._graph_structure = self._records
        built: dict[str, Any] = {}
        train_initial = None
        for entry, data in wanted.items():
            key = self._key(data)
            if entry in self._graphs and self._graph_keys[entry] == key:
                continue
            if entry in ("predict", "augment"):
                built[entry] = (self.forward_graph(training=False, name=entry,
                                                  augmenting=entry == "augment").graph, key)
                continue
            losses, metrics = self._specs(data)
            graph, initial = self._step_graph(entry, losses, metrics,
                                              "sample_weight" in data.feed)
            built[entry] = (graph, key)
            if entry == "train_step":
                train_initial = initial
        names = self.state_names()
        arrays = self._state_arrays()
        stale = any(arrays.get(name) is not array for name, array in self._bound)
        if not built and self._executable is not None and not stale:
            _to_device(self._executable)
            return self._executable
        if train_initial is not None:
            self.optimizer.bind_state(train_initial)
            arrays = self._state_arrays()
        for entry, (graph, key) in built.items():
            self._graphs[entry], self._graph_keys[entry] = graph, key
        state = {}
        for graph in self._graphs.values():
            for value in graph.state:
                if value.name not in arrays:
                    raise KilnValueError(f"model {self.name!r}: no array for the graph state "
                                         f"{value.name!r}")
                state[value.name] = arrays[value.name]
        self._bound = list(state.items())
        variables = {names[id(v)]: v for v in self.variables}
        self._sources = [(name, variables.get(name), array) for name, array in self._bound]
        self._plans.clear()
        self._log_order.clear()
        self._executable = create_executable(self._backend or get_backend(), self._graphs, state,
                                             self.compile_options)
        return self._executable

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Every array a step may hold as state, by state name: the model's variables (their
        own arrays), the optimizer's arrays, the random key."""
        names = self.state_names()
        arrays = {names[id(v)]: residency.fetch(v.storage) for v in self.variables}
        if self.optimizer is not None:
            arrays.update({name: residency.fetch(array)
                           for name, array in self.optimizer.storage.items()})
        if self._seed is None:
            self._seed = np.array(int(rng().integers(0, 2**62)), np.int64)
        arrays[SEED_STATE] = self._seed
        return arrays

    def _fresh(self) -> bool:
        """Whether every state array is still the one the executable was given (as
        _state_arrays would find them: the seed, then the optimizer's, then the variables')."""
        opt = self.optimizer.storage if self.optimizer is not None else {}
        for name, variable, array in self._sources:
            now = (self._seed if name == SEED_STATE else opt[name] if name in opt else
                   variable.storage if variable is not None else None)
            if now is not array:
                return False
        return True

    def _data(self, entry: str, x: Any, y: Any = None, sample_weight: Any = None,
              class_weight: Any = None) -> tuple[Any, Dataset]:
        """The executable and the checked data for one call of `entry`: through the FeedPlan
        of arguments of this kind when one was made (value checks and casts only), else the
        full checks, after which a plan is made for the next call."""
        targets = entry not in ("predict", "augment")
        key = (entry, data_mod.signature(x), data_mod.signature(y),
               data_mod.signature(sample_weight))
        found = self._plans.get(key) if class_weight is None else None
        if found is not None:
            plan, exe = found
            if (exe is self._executable and self._graph_structure is self._records
                    and self._fresh()):
                got = plan.apply((x, y, sample_weight))
                if got is not None:
                    _to_device(exe)
                    return exe, Dataset(*got)
        data = self._dataset(x, y, sample_weight, class_weight, targets=targets)
        exe = self._runtime({entry: data})
        if class_weight is None:
            self._remember(key, exe, x, y, sample_weight, targets)
        return exe, data

    def _remember(self, key: tuple, exe: Any, x: Any, y: Any, sample_weight: Any,
                  targets: bool) -> None:
        inputs = [(n, numpy_dtype(t.dtype)) for n, t in zip(self.input_names, self._inputs)]
        args = (x, y, sample_weight) if targets else (x, None, None)
        plan = data_mod.plan_for(args, inputs, self._outputs_spec() if targets else [],
                                 self.output_names)
        if plan is not None:
            if len(self._plans) >= 16:  # arguments of ever new kinds: keep the latest
                self._plans.clear()
            self._plans[key] = (plan, exe)

    def _logs(self, entry: str, out: dict[str, Any], return_dict: bool) -> Any:
        """A step's outputs as train/test_on_batch return them: a dict of floats by sorted
        name, or Keras's order (see _ordered); the ordering is worked out once per entry."""
        order = self._log_order.get(entry)
        if order is None or len(order[0]) != len(out):
            keys = sorted(out)
            ordered = self._ordered({k: i for i, k in enumerate(keys)})
            order = self._log_order[entry] = (keys, ordered if isinstance(ordered, list)
                                              else [ordered])
        keys, positions = order
        finish = self.metric_finish
        values = [finish[k](out[k]) if k in finish else float(out[k]) for k in keys]
        if return_dict:
            return dict(zip(keys, values))
        return values[positions[0]] if len(positions) == 1 else [values[i] for i in positions]

    # -- batches given as a generator, a PyDataset or a loader --------------------------
    def _first(self, stream: Stream, targets: bool = True, class_weight: Any = None,
               ) -> Dataset:
        """The stream's first batch, checked (building an unbuilt model on it): what the
        step graphs are built for before the first step."""
        x, y, weight = stream.peek()
        try:
            return self._dataset(x, y, weight, class_weight, targets=targets)
        except KilnError as err:
            raise _in_batch(err, stream) from None

    def _stream_items(self, entry: str, stream: Stream, class_weight: Any = None,
                      ) -> Iterator[tuple[Any, dict[str, np.ndarray], int]]:
        """(executable, feed, batch size) for each batch of one epoch of the stream, each
        checked and cast as arrays given to fit are (the per-call fast path)."""
        targets = entry not in ("predict", "augment")
        for x, y, weight in stream.epoch():
            try:
                exe, data = (self._data(entry, x, y, weight, class_weight) if targets
                             else self._data(entry, x))
            except KilnError as err:
                raise _in_batch(err, stream) from None
            yield exe, data.feed, data.size

    def _stream_of(self, value: Any, argument: str, steps: int | None, shuffle: bool = False,
                   **beside: Any) -> Stream | None:
        """A Stream when `value` is a source of batches (none of `beside` may be given with
        it), else None."""
        if streams.kind_of(value) is None:
            return None
        stream = Stream(value, argument, steps, shuffle, rng())
        _no_arrays_beside(stream, **beside)
        return stream

    # -- fit -----------------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Sequence[Any] | None = None,
            validation_split: float = 0.0, validation_data: Any = None,
            shuffle: bool | str = True, class_weight: dict | None = None,
            sample_weight: Any = None, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_steps: int | None = None,
            validation_batch_size: int | None = None, validation_freq: int = 1) -> History:
        """Train for `epochs` epochs of `batch_size` (32) samples; returns a History whose
        `history` holds each epoch's loss and metrics (val_* with validation data).

        x (and validation_data) may be arrays, or a source of batches: a generator or
        iterator, a kiln.utils.PyDataset, or an iterable such as a torch DataLoader,
        yielding `(x, y)` or `(x, y, sample_weight)` (kiln.frontends.keras.streams). Arrays
        are checked in full before the first step; batches from a source are checked as
        they come, so a bad one stops fit with the steps before it taken. steps_per_epoch
        (validation_steps) makes an epoch (a validation) that many batches."""
        self._require_compiled("fit")
        batch_size = data_mod.check_positive_int(batch_size, "batch_size")
        epochs = data_mod.check_positive_int(epochs, "epochs", False, allow_zero=True)
        initial_epoch = data_mod.check_positive_int(initial_epoch, "initial_epoch", False, True)
        steps_per_epoch = data_mod.check_positive_int(steps_per_epoch, "steps_per_epoch")
        validation_steps = data_mod.check_positive_int(validation_steps, "validation_steps")
        validation_batch_size = data_mod.check_positive_int(
            validation_batch_size, "validation_batch_size")
        validation_freq = data_mod.check_positive_int(validation_freq, "validation_freq", False)
        verbose = _check_verbose(verbose)
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (int, float)) or not 0 <= validation_split < 1:
            raise KilnValueError(f"`validation_split` must be in [0, 1). "
                                 f"Received: validation_split={validation_split!r}")
        if shuffle not in (True, False, "batch"):
            raise KilnValueError(f"Expected shuffle to be True, False or 'batch'. "
                                 f"Received: shuffle={shuffle!r}")
        stream = self._stream_of(x, "x", steps_per_epoch, bool(shuffle), y=y,
                                 sample_weight=sample_weight)
        if stream is not None and validation_split:
            raise KilnValueError(f"Argument `validation_split` is only supported for tensors "
                                 f"or NumPy arrays. Received: x as {stream.described}; pass "
                                 f"validation_data instead")
        val_stream = self._stream_of(validation_data, "validation_data", validation_steps)
        try:
            return self._fit(x, y, stream, batch_size, epochs, verbose, callbacks,
                             validation_split, validation_data, val_stream, shuffle,
                             class_weight, sample_weight, initial_epoch, steps_per_epoch,
                             validation_steps, validation_batch_size, validation_freq)
        finally:
            for source in (stream, val_stream):
                if source is not None:
                    source.close()

    def _fit(self, x: Any, y: Any, stream: Stream | None, batch_size: int | None, epochs: int,
             verbose: int, callbacks: Sequence[Any] | None, validation_split: float,
             validation_data: Any, val_stream: Stream | None, shuffle: bool | str,
             class_weight: Any, sample_weight: Any,
             initial_epoch: int, steps_per_epoch: int | None, validation_steps: int | None,
             validation_batch_size: int | None, validation_freq: int) -> History:
        if stream is not None:
            train = self._first(stream, class_weight=class_weight)
        else:
            train = self._dataset(x, y, sample_weight, class_weight)
        val = None
        if val_stream is not None:
            val = self._first(val_stream)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise KilnValueError("When passing a `validation_data` argument, it must contain "
                                     "either 2 items (x_val, y_val), or 3 items (x_val, y_val, "
                                     "val_sample_weights), or be a generator, a PyDataset or "
                                     "an iterable of batches. Received: validation_data of type "
                                     f"{type(validation_data).__name__}")
            vx, vy, *vw = validation_data
            val = self._dataset(vx, vy, vw[0] if vw else None, where=(
                "validation_data[0]", "validation_data[1]", "validation_data[2]"))
        elif validation_split:
            train, val = train.split(validation_split)
        exe = self._runtime({"train_step": train, **({"test_step": val} if val else {})})

        if stream is not None:
            steps = stream.steps
        else:
            batch_size = _steps_size(train, batch_size, steps_per_epoch)
            steps = steps_per_epoch or train.steps(batch_size)
            epoch_batches = _array_epochs(train, batch_size, steps_per_epoch, shuffle,
                                          buffers=2 if hasattr(exe, "prefetch") else 1)
        if val is not None and val_stream is None:
            validation_batch_size = validation_batch_size or _steps_size(
                val, batch_size, validation_steps)
            val_batches = _array_epochs(val, validation_batch_size, None)
        cbs = CallbackList(callbacks, self, add_history=True, add_progbar=verbose != 0,
                           verbose=verbose, epochs=epochs, steps=steps)
        hooks = _watches_batches(cbs)
        self.stop_training = False
        cbs.on_train_begin()
        logs: dict[str, float] | None = None
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            mean = _Mean(self.metric_finish)
            if stream is not None:
                items = self._stream_items("train_step", stream, class_weight)
            else:
                items = ((exe, feed, size) for feed, size in
                         _ahead(exe, "train_step", epoch_batches()))
            if hooks:
                for step, (exe, feed, size) in enumerate(items):
                    cbs.on_train_batch_begin(step)
                    mean.add(exe.run("train_step", feed), size)
                    cbs.on_train_batch_end(step, mean.result())
                    if self.stop_training:
                        break
            else:  # no callback watches batches: the loop is the step alone
                add = mean.add
                for exe, feed, size in items:
                    add(exe.run("train_step", feed), size)
            if not mean.count:  # a one-shot source had nothing left
                stream.ran_out()
                break
            epoch_logs = mean.result()
            if val is not None and (epoch + 1) % validation_freq == 0:
                if val_stream is not None:
                    val_items = self._stream_items("test_step", val_stream)
                else:
                    val_items = itertools.islice(
                        ((exe, feed, size) for feed, size in val_batches()), validation_steps)
                val_logs = self._test_loop(val_items, cbs)
                if val_logs is None:  # a one-shot source read to its end already
                    warnings.warn(f"{val_stream!r} ran out of data: epoch {epoch + 1} has no "
                                  f"validation logs. Pass validation_steps, or a source that "
                                  f"can be read again (a PyDataset, a loader)", stacklevel=3)
                else:
                    epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            _to_host(exe)  # callbacks may read or set weights
            cbs.on_epoch_end(epoch, epoch_logs)
            _to_device(exe)
            logs = epoch_logs
            if stream is not None and stream.exhausted and epoch + 1 < epochs:
                stream.ran_out()
                self.stop_training = True
            if self.stop_training:
                break
        _to_host(exe)
        cbs.on_train_end(logs)
        self.history = cbs.history
        return self.history

    # -- evaluate and predict ------------------------------------------------------------
    def _test_loop(self, items: Iterator[tuple[Any, dict[str, np.ndarray], int]],
                   cbs: CallbackList) -> dict[str, float] | None:
        """The test step's logs over the batches; None where there were none."""
        cbs.on_test_begin()
        mean = _Mean(self.metric_finish)
        for step, (exe, feed, size) in enumerate(items):
            cbs.on_test_batch_begin(step)
            mean.add(exe.run("test_step", feed), size)
            cbs.on_test_batch_end(step, mean.result())
        if not mean.count:
            cbs.on_test_end({})
            return None
        logs = mean.result()
        cbs.on_test_end(logs)
        return logs

    def _ordered(self, logs: dict[str, float]) -> Any:
        """Keras's order: loss, the compiled metrics, then the other logs (per-output
        losses) sorted; one value alone is returned as a scalar."""
        names = ["loss", *self.metric_directions]
        values = [logs[n] for n in names if n in logs]
        values += [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    def _items(self, entry: str, x: Any, y: Any, sample_weight: Any, batch_size: int | None,
               steps: int | None) -> tuple[Iterator[tuple[Any, dict[str, np.ndarray], int]],
                                           int | None, Stream | None]:
        """The batches evaluate or predict runs (entry test_step or predict), the number of
        steps where known, and the stream they come from (None for arrays)."""
        targets = entry == "test_step"
        stream = self._stream_of(x, "x", steps, y=y, sample_weight=sample_weight)
        if stream is not None:
            self._runtime({entry: self._first(stream, targets)})  # built for the first batch
            return self._stream_items(entry, stream), stream.steps, stream
        if targets:
            data = self._dataset(x, y, sample_weight)
            exe = self._runtime({entry: data})
        else:
            exe, data = self._data(entry, x)
        size = _steps_size(data, batch_size, steps)
        count = min(steps, data.steps(size)) if steps else data.steps(size)
        batches = itertools.islice(data.batches(size), count)
        return ((exe, feed, n) for feed, n in batches), count, None

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: int | None = None,
                 callbacks: Sequence[Any] | None = None, return_dict: bool = False) -> Any:
        """The loss (and metrics) over the data: a scalar, [loss, *metrics], or a dict. x may
        be arrays or a source of batches, as for fit; `steps` limits the batches."""
        self._require_compiled("evaluate")
        batch_size = data_mod.check_positive_int(batch_size, "batch_size")
        steps = data_mod.check_positive_int(steps, "steps")
        verbose = _check_verbose(verbose)
        items, count, stream = self._items("test_step", x, y, sample_weight, batch_size, steps)
        try:
            cbs = CallbackList(callbacks, self, add_history=False, add_progbar=verbose != 0,
                               verbose=verbose, epochs=1, steps=count)
            logs = self._test_loop(items, cbs)
        finally:
            if stream is not None:
                stream.close()
        if logs is None:
            raise KilnValueError(f"Expected {stream!r} to yield at least one batch. "
                                 f"Received: none")
        return logs if return_dict else self._ordered(logs)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: int | None = None, callbacks: Sequence[Any] | None = None) -> Any:
        """The model's outputs for x: an array, or a list / dict for several outputs. x may
        be arrays or a source of batches (only their x is read); `steps` limits the
        batches."""
        batch_size = data_mod.check_positive_int(batch_size, "batch_size")
        steps = data_mod.check_positive_int(steps, "steps")
        verbose = _check_verbose(verbose)
        items, count, stream = self._items("predict", x, None, None, batch_size, steps)
        cbs = CallbackList(callbacks, self, add_history=False, add_progbar=verbose != 0,
                           verbose=verbose, epochs=1, steps=count)
        cbs.on_predict_begin()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        try:
            for step, (exe, feed, _) in enumerate(items):
                cbs.on_predict_batch_begin(step)
                out = exe.run("predict", feed)
                for name in parts:
                    parts[name].append(np.array(out[name], copy=True))
                cbs.on_predict_batch_end(step, {"outputs": out})
        finally:
            if stream is not None:
                stream.close()
        cbs.on_predict_end()
        return self._structured({k: np.concatenate(v) for k, v in parts.items()})

    def _structured(self, outputs: dict[str, np.ndarray]) -> Any:
        if self._output_keys is not None:
            return dict(outputs)
        values = [outputs[name] for name in self.output_names]
        return values[0] if len(values) == 1 and self._single_output else values

    # -- one batch -----------------------------------------------------------------------
    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: dict | None = None, return_dict: bool = False) -> Any:
        """One optimizer step on exactly this batch; returns its loss and metrics."""
        self._require_compiled("train_on_batch")
        exe, data = self._data("train_step", x, y, sample_weight, class_weight)
        # The new state stays on a device that holds it (numba-cuda) until the host reads it
        # (Variable.value, get_weights, save: kiln.runtimes.residency).
        out = exe.run("train_step", data.feed)
        return self._logs("train_step", out, return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        self._require_compiled("test_on_batch")
        exe, data = self._data("test_step", x, y, sample_weight)
        return self._logs("test_step", exe.run("test_step", data.feed), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        return self._forward_on_batch("predict", x)

    def _augment_on_batch(self, x: Any) -> Any:
        """The model at inference but for its augmentation layers, which augment (a model
        called on arrays without training=): the entry "augment", built on first use."""
        return self._forward_on_batch("augment", x)

    def _forward_on_batch(self, entry: str, x: Any) -> Any:
        exe, data = self._data(entry, x)
        out = exe.run(entry, data.feed)
        return self._structured({k: v.copy() for k, v in out.items()})

    # -- reading -------------------------------------------------------------------------
    @property
    def metrics_names(self) -> list[str]:
        return ["loss", *self.metric_directions]

    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn: Any = None) -> None:
        """Print Keras 3's table of layers, output shapes and parameter counts."""
        from kiln.frontends.keras.summary import print_summary

        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)
