"""BatchDataset: a re-iterable sequence of batches with the part of tf.data's API the book
uses on what keras.utils.*_dataset_from_directory return: iterate it (`for x, y in ds`),
`map` (a function of the batch's parts, as tf.data calls it), `cache`, `prefetch`, `take`,
`skip`, `len`. fit, evaluate and predict take it as any other iterable of batches, one pass
per epoch."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kiln.frontends.keras.data import check_positive_int
from kiln.frontends.keras.streams import in_order
from kiln.ir import KilnTypeError

AUTOTUNE = -1  # as tf.data.AUTOTUNE: let kiln choose (prefetch: 2 batches, map: 4 threads)


class BatchDataset:
    """Batches made anew on every iteration by `make` (a function returning an iterator);
    `length` is their number where known. Attributes given as keywords (class_names,
    file_paths) are kept and carried through map, cache, prefetch, take and skip."""

    def __init__(self, make: Callable[[], Iterator[Any]], length: int | None,
                 **attributes: Any) -> None:
        self._make = make
        self._length = length
        self._attributes = attributes
        for name, value in attributes.items():
            setattr(self, name, value)

    def __iter__(self) -> Iterator[Any]:
        return self._make()

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this BatchDataset's length is unknown")
        return self._length

    def cardinality(self) -> int:
        """The number of batches; -2 where unknown (tf.data's UNKNOWN_CARDINALITY)."""
        return -2 if self._length is None else self._length

    def _derived(self, make: Callable[[], Iterator[Any]], length: int | None) -> BatchDataset:
        return BatchDataset(make, length, **self._attributes)

    def map(self, function: Callable[..., Any], num_parallel_calls: int | None = None,
            deterministic: bool | None = None) -> BatchDataset:
        """Each batch through `function`: called with the batch's parts as arguments when
        the batch is a tuple (`lambda x, y: ...`), else with the batch. num_parallel_calls
        > 1 (or AUTOTUNE) maps that many batches at once on threads; the order is kept."""
        if not callable(function):
            raise KilnTypeError(f"map expects a function. Received: {type(function).__name__}")
        workers = 4 if num_parallel_calls == AUTOTUNE else check_positive_int(
            num_parallel_calls, "num_parallel_calls") or 1

        def call(batch: Any) -> Any:
            return function(*batch) if isinstance(batch, tuple) else function(batch)

        def make() -> Iterator[Any]:
            if workers == 1:
                return (call(batch) for batch in self)
            return _mapped_on_threads(call, self, workers)
        return self._derived(make, self._length)

    def cache(self, filename: str = "") -> BatchDataset:
        """The batches of the first complete pass, kept in memory and replayed after (a
        pass left unfinished is not kept). A filename is refused: kiln caches in memory."""
        if filename:
            raise KilnTypeError("cache keeps the batches in memory; a cache file is not "
                                f"supported. Received: filename={filename!r}")
        kept: list[list[Any]] = []

        def make() -> Iterator[Any]:
            if kept:
                return iter(kept[0])
            return _keeping(self, kept)
        return self._derived(make, self._length)

    def prefetch(self, buffer_size: int = AUTOTUNE) -> BatchDataset:
        """The batches made on a background thread, up to `buffer_size` ahead."""
        depth = 2 if buffer_size == AUTOTUNE else check_positive_int(
            buffer_size, "buffer_size", allow_none=False)
        return self._derived(lambda: _ahead_on_a_thread(self, depth), self._length)

    def take(self, count: int) -> BatchDataset:
        """The first `count` batches (all of them for -1)."""
        if count == -1:
            return self
        count = check_positive_int(count, "count", allow_none=False, allow_zero=True)

        def make() -> Iterator[Any]:
            iterator = iter(self)
            for _ in range(count):
                try:
                    yield next(iterator)
                except StopIteration:
                    return
        return self._derived(make, None if self._length is None else min(count, self._length))

    def skip(self, count: int) -> BatchDataset:
        """All but the first `count` batches."""
        count = check_positive_int(count, "count", allow_none=False, allow_zero=True)

        def make() -> Iterator[Any]:
            iterator = iter(self)
            for _ in range(count):
                if next(iterator, _END) is _END:
                    return
            yield from iterator
        return self._derived(make, None if self._length is None
                             else max(self._length - count, 0))


_END = object()


def _keeping(source: Iterable[Any], kept: list[list[Any]]) -> Iterator[Any]:
    batches = []
    for batch in source:
        batches.append(batch)
        yield batch
    if not kept:
        kept.append(batches)


def _mapped_on_threads(call: Callable[[Any], Any], source: Iterable[Any],
                       workers: int) -> Iterator[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="kiln-map") as pool:
        yield from in_order(pool, call, source, 2 * workers)


def _ahead_on_a_thread(source: Iterable[Any], depth: int) -> Iterator[Any]:
    """The batches of `source` made by a thread while the caller uses the earlier ones; an
    error in the thread is raised here, where the batch it was making would come."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def fill() -> None:
        try:
            for batch in source:
                while not stop.is_set():
                    try:
                        slots.put((True, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((False, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            slots.put((False, err))

    worker = threading.Thread(target=fill, name="kiln-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # let a blocked put see the stop
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(0.05)
