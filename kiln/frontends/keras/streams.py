"""Data given to fit / evaluate / predict as batches rather than arrays: Python generators
and iterators, `kiln.utils.PyDataset` (Keras 3's PyDataset, the successor of
keras.utils.Sequence), and re-iterable loaders such as torch's DataLoader.

Each batch is `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, as Keras 3 unpacks it; its
arrays go through the same checks as arrays given to fit, one batch at a time. Epochs follow
Keras 3's EpochIterator: without `steps_per_epoch` an epoch is one pass over the data (a
PyDataset's `num_batches`, a loader's `len`, or a generator until it stops); with it, an epoch
is that many batches, and the next epoch goes on where the last stopped, starting a new pass
once a finite source's batches are all seen. A one-shot iterator that runs out ends training
after the epoch, with Keras's warning.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import types
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from kiln.ir import KilnTypeError, KilnValueError

Batch = tuple[Any, Any, Any]


class PyDataset:
    """Keras 3's PyDataset: subclass it with `__getitem__(index)` returning a batch and
    `__len__` (or a `num_batches` property; None for an infinite dataset), and optionally
    `on_epoch_begin` / `on_epoch_end`. Index order is shuffled per pass when fit's
    `shuffle` is true. `workers` > 1 fetches batches ahead on that many threads (processes
    with `use_multiprocessing=True`), at most `max_queue_size` ahead, in order."""

    # Class-level defaults: a subclass that does not call super().__init__ still has them.
    workers: int = 1
    use_multiprocessing: bool = False
    max_queue_size: int = 10

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index), "
                                  "which returns the batch at that position")

    @property
    def num_batches(self) -> int | None:
        """The number of batches, or None for an infinite dataset (then fit needs
        steps_per_epoch); `len(self)` by default."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(f"{type(self).__name__} must define __len__ or a "
                                  "`num_batches` property (None for an infinite dataset)")

    def __iter__(self) -> Iterator[Any]:
        count = self.num_batches
        for index in itertools.count() if count is None else range(count):
            yield self[index]

    def on_epoch_begin(self) -> None:
        """Called at the start of every epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of every epoch."""


def _array_like(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic, list, tuple, dict, range, str, bytes,
                              int, float, bool)) or hasattr(value, "__array__") \
        or hasattr(value, "shape")


def _is_torch_loader(value: Any) -> bool:
    return any(c.__name__ == "DataLoader" and "torch.utils.data" in c.__module__
               for c in type(value).__mro__)


def kind_of(value: Any) -> str | None:
    """What kind of batch source `value` is ("PyDataset", "generator", "iterator",
    "torch DataLoader", "iterable"), or None for arrays and everything fit reads as arrays."""
    if value is None or _array_like(value):
        return None
    if isinstance(value, PyDataset):
        return "PyDataset"
    if isinstance(value, types.GeneratorType):
        return "generator"
    if isinstance(value, Iterator):
        return "iterator"
    if _is_torch_loader(value):
        return "torch DataLoader"
    if isinstance(value, Iterable):
        return "iterable"
    return None


def _to_numpy(value: Any) -> Any:
    """Tensors of other frameworks (anything with __array__) as NumPy arrays, through
    tuples, lists and dicts, so that the per-call fast path sees plain arrays."""
    if isinstance(value, np.ndarray) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_to_numpy(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    if hasattr(value, "__array__"):
        detach = getattr(value, "detach", None)  # a torch tensor that requires grad
        return np.asarray(detach().cpu() if callable(detach) else value)
    return value


def unpack(batch: Any, where: str) -> Batch:
    """(x, y, sample_weight) of a batch, as Keras 3's unpack_x_y_sample_weight reads it."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return _to_numpy(batch), None, None
    if not 1 <= len(batch) <= 3:
        raise KilnValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or "
                             f"`(x, y, sample_weight)`. Received: {where} yielded a tuple of "
                             f"{len(batch)} items")
    x, y, weight = (*batch, None, None)[:3]
    return _to_numpy(x), _to_numpy(y), _to_numpy(weight)


def in_order(pool: concurrent.futures.Executor, function: Callable[[Any], Any],
             items: Iterable[Any], depth: int) -> Iterator[Any]:
    """function(item) for each item, computed on the pool up to `depth` items ahead of the
    one yielded, in the items' order; what is still pending when the caller stops is
    cancelled."""
    pending: deque[concurrent.futures.Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


class _Ahead:
    """A PyDataset's batches fetched ahead on `workers` threads or processes, in order."""

    def __init__(self, dataset: PyDataset) -> None:
        self.dataset = dataset
        workers = int(dataset.workers)
        if dataset.use_multiprocessing:
            self.pool: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(
                workers, initializer=_share, initargs=(dataset,))
            self.get: Callable[[int], Any] = _shared_item
        else:
            self.pool = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix="kiln-pydataset")
            self.get = dataset.__getitem__
        self.depth = max(int(dataset.max_queue_size), workers, 1)

    def batches(self, indices: Iterator[int]) -> Iterator[Any]:
        return in_order(self.pool, self.get, indices, self.depth)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


_SHARED: dict[str, PyDataset] = {}


def _share(dataset: PyDataset) -> None:  # a worker process's initializer
    _SHARED["dataset"] = dataset


def _shared_item(index: int) -> Any:
    return _SHARED["dataset"][index]


class Stream:
    """One source of batches for fit, evaluate or predict, read epoch by epoch.

    argument: how errors name it ("x", "validation_data"); steps: steps_per_epoch (or
    validation_steps / steps), None for one pass; shuffle: a PyDataset's index order is
    drawn from `rng` for each pass."""

    def __init__(self, source: Any, argument: str, steps: int | None = None,
                 shuffle: bool = False, rng: np.random.Generator | None = None) -> None:
        self.source = source
        self.kind = kind_of(source)
        if self.kind is None:
            raise KilnTypeError(f"Expected {argument} to be a generator, a PyDataset or an "
                                f"iterable of batches. Received: {type(source).__name__}")
        self.argument = argument
        self.steps_per_epoch = steps
        self.shuffle = bool(shuffle) and rng is not None
        self.rng = rng
        self.one_shot = self.kind in ("generator", "iterator")
        self.num_batches = self._count()
        if self.kind == "PyDataset" and self.num_batches is None and steps is None:
            raise KilnValueError(f"{argument} is an infinite PyDataset (num_batches is None): "
                                 f"pass steps_per_epoch (validation_steps, steps) to say how "
                                 f"many batches an epoch takes")
        self.exhausted = False  # a one-shot iterator ran out
        self._warned = False
        self._current: Iterator[Any] | None = None
        self._seen = 0  # batches taken from _current
        self._pending: list[Any] = []  # batches peeked from a one-shot iterator
        self._ahead: _Ahead | None = None

    def _count(self) -> int | None:
        if self.kind == "PyDataset":
            count = self.source.num_batches
            return None if count is None else int(count)
        if not self.one_shot and hasattr(self.source, "__len__"):
            try:
                return len(self.source)
            except TypeError:  # an iterable dataset of unknown length
                return None
        return None

    @property
    def steps(self) -> int | None:
        """The batches of one epoch, where known."""
        return self.steps_per_epoch or self.num_batches

    @property
    def position(self) -> int:
        """The index, within its pass, of the batch taken last (0 before any)."""
        return max(self._seen - 1, 0)

    def __repr__(self) -> str:
        return f"{self.argument} ({self.described})"

    @property
    def described(self) -> str:
        """The kind with its article: "a generator", "an iterator"."""
        return ("an " if self.kind[0] in "aeiou" else "a ") + self.kind

    # -- reading ------------------------------------------------------------------------
    def _pass(self) -> Iterator[Any]:
        """A new pass over the source's batches (a one-shot iterator: the rest of it)."""
        if self.one_shot:
            return itertools.chain(self._take_pending(), self.source)
        if self.kind != "PyDataset":
            return iter(self.source)
        dataset = self.source
        if self.num_batches is None:
            indices: Iterator[int] = itertools.count()
        elif self.shuffle:
            indices = iter(self.rng.permutation(self.num_batches).tolist())
        else:
            indices = iter(range(self.num_batches))
        if int(dataset.workers) > 1 or (int(dataset.workers) > 0
                                        and dataset.use_multiprocessing):
            if self._ahead is None:
                self._ahead = _Ahead(dataset)
            return self._ahead.batches(indices)
        return (dataset[i] for i in indices)

    def _take_pending(self) -> list[Any]:
        pending, self._pending = self._pending, []
        return pending

    def peek(self) -> Batch:
        """The first batch, unpacked, without taking it from the epochs to come."""
        where = f"{self!r}"
        if self.one_shot:
            if not self._pending:
                try:
                    self._pending.append(next(self.source))
                except StopIteration:
                    raise KilnValueError(f"Expected {where} to yield at least one batch. "
                                         f"Received: an empty {self.kind}") from None
            return unpack(self._pending[0], where)
        if self.kind == "PyDataset":
            if self.num_batches == 0:
                raise KilnValueError(f"Expected {where} to hold at least one batch. "
                                     f"Received: num_batches=0")
            return unpack(self.source[0], where)
        for batch in self.source:
            return unpack(batch, where)
        raise KilnValueError(f"Expected {where} to yield at least one batch. "
                             f"Received: an empty {self.kind}")

    def epoch(self) -> Iterator[Batch]:
        """The batches of one epoch, unpacked; on_epoch_begin / on_epoch_end of a PyDataset
        around them."""
        if self.kind == "PyDataset":
            self.source.on_epoch_begin()
        try:
            yield from self._epoch()
        finally:
            if self.kind == "PyDataset":
                self.source.on_epoch_end()

    def _epoch(self) -> Iterator[Batch]:
        target = self.steps
        if self._current is None or self.steps_per_epoch is None:
            self._current, self._seen = self._pass(), 0
        step = 0
        while target is None or step < target:
            if self.num_batches and self._seen >= self.num_batches:
                if not self.steps_per_epoch:
                    break
                self._current, self._seen = self._pass(), 0  # the next pass goes on
            try:
                batch = next(self._current)
            except StopIteration:
                self._current = None
                if self.one_shot:
                    self.exhausted = True
                    if self.steps_per_epoch:  # the epoch was cut short
                        self.ran_out()
                elif self.num_batches is None:
                    self.num_batches = self._seen
                return
            self._seen += 1
            step += 1
            yield unpack(batch, f"{self!r}, batch {self._seen - 1}")
        if self.steps_per_epoch is None:
            self._current = None

    def ran_out(self) -> None:
        """Keras's warning, once, that a one-shot source ran out while training wanted more."""
        if not self._warned:
            self._warned = True
            warnings.warn("Your input ran out of data; interrupting training. Make sure that "
                          f"your dataset or generator ({self!r}) can generate at least "
                          "`steps_per_epoch * epochs` batches.", stacklevel=4)

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

