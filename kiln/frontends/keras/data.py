"""The arrays given to fit / evaluate / predict: matched to the model's inputs and outputs by
position or name, checked (shapes, dtypes, finite values, label ranges, sample counts) before
any step runs, cast to the graph's dtypes, and cut into batches.

Every check raises with Keras's wording where Keras has one, naming the argument (x, y,
sample_weight, validation_data) and the shapes involved.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.ir import KilnTypeError, KilnValueError


def check_positive_int(value: Any, argument: str, allow_none: bool = True,
                       allow_zero: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise KilnValueError(f"Expected {argument} to be {kind} integer. "
                             f"Received: {argument}={value!r}")
    return int(value)


def structure(value: Any, names: Sequence[str], argument: str) -> list[tuple[str, Any]]:
    """Match `value` (an array, a list in order, or a dict by name) to `names`; returns
    (label for errors, raw value) in the order of `names`."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise KilnValueError(f"Expected {argument} as a dict with the keys {list(names)}. "
                                 f"Received keys: {list(value)}")
        return [(f"{argument}[{n!r}]", value[n]) for n in names]
    if isinstance(value, (list, tuple)):
        if len(names) == 1:
            if len(value) == 1 and hasattr(value[0], "shape"):
                return [(argument, value[0])]
            return [(argument, value)]  # a nested list of numbers
        if len(value) != len(names):
            raise KilnValueError(f"Expected {argument} as a list of {len(names)} arrays, one "
                                 f"per model {'input' if argument.startswith('x') else 'output'}"
                                 f" {list(names)}. Received: a list of {len(value)} items")
        return [(f"{argument}[{i}]", v) for i, v in enumerate(value)]
    if len(names) != 1:
        raise KilnValueError(f"Expected {argument} as a list or dict of {len(names)} arrays "
                             f"for {list(names)}. Received: a single array")
    return [(argument, value)]


def to_array(raw: Any, label: str) -> np.ndarray:
    """A numeric array with a batch axis and finite values."""
    if raw is None:
        raise KilnValueError(f"Expected {label} to be an array. Received: {label}=None")
    try:
        array = np.asarray(raw)
    except ValueError as err:  # ragged nested lists
        raise KilnValueError(f"Expected {label} to be a rectangular array of numbers. "
                             f"Received: {label} that NumPy cannot convert ({err})") from None
    if array.dtype.kind not in "biuf":
        raise KilnTypeError(f"Expected {label} to hold numbers (bool, int or float). "
                            f"Received: {label} with dtype {array.dtype}")
    if array.ndim == 0:
        raise KilnValueError(f"Expected {label} to have a batch dimension. "
                             f"Received: {label}.shape=()")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        what = "NaN" if np.isnan(array[bad]) else "inf"
        raise KilnValueError(f"Expected finite values in {label}. Received: {label} contains "
                             f"{what} at index {bad}")
    return array


def check_cardinality(arrays: dict[str, list[tuple[str, np.ndarray]]]) -> int:
    """All arrays must hold the same number of samples; returns it."""
    sizes = {a.shape[0] for group in arrays.values() for _, a in group}
    if len(sizes) > 1:
        parts = [f"'{name}' sizes: {', '.join(str(a.shape[0]) for _, a in group)}"
                 for name, group in arrays.items() if group]
        raise KilnValueError("Data cardinality is ambiguous. Make sure all arrays contain the "
                             "same number of samples. " + "; ".join(parts))
    return sizes.pop() if sizes else 0


def _compatible(actual: tuple, expected: tuple) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e
                                                for a, e in zip(actual, expected))


def check_input(array: np.ndarray, shape: tuple, dtype: np.dtype, label: str, input_name: str,
                model: str) -> np.ndarray:
    """The array for one model input, cast to the input's dtype."""
    if not _compatible(array.shape[1:], tuple(shape[1:])):
        raise KilnValueError(f"Input {input_name!r} of model {model!r} is incompatible with the "
                             f"data: expected shape {tuple(shape)}. "
                             f"Received: {label}.shape={array.shape}")
    if dtype.kind in "iu" and array.dtype.kind == "f" and not np.all(np.round(array) == array):
        raise KilnValueError(f"Input {input_name!r} of model {model!r} expects integers "
                             f"({dtype}). Received: {label} with fractional values")
    return np.ascontiguousarray(array, dtype=dtype)


def check_target(array: np.ndarray, loss: Any, output: str, shape: tuple, dtype: np.dtype,
                 label: str) -> np.ndarray:
    """The target for one output: its shape against the output's (after Keras's
    squeeze-or-expand of a last axis of 1), integer labels in range for sparse losses."""
    out, got = tuple(shape[1:]), tuple(array.shape[1:])
    if getattr(loss, "sparse", False):
        if not (_compatible(got, out[:-1]) or _compatible(got, out[:-1] + (1,))):
            raise KilnValueError(f"Expected {label} to hold integer class labels of shape "
                                 f"{(None, *out[:-1])} for {loss.name} on output {output!r} of "
                                 f"shape {tuple(shape)}. Received: {label}.shape={array.shape}")
        if array.dtype.kind == "f" and not np.all(np.round(array) == array):
            raise KilnValueError(f"Expected {label} to hold integer class labels for "
                                 f"{loss.name}. Received: {label} with non-integer values such "
                                 f"as {array[np.round(array) != array].flat[0]!r}")
        classes = out[-1]
        low, high = (array.min(), array.max()) if array.size else (0, 0)
        if low < 0 or (classes is not None and high >= classes):
            bad = low if low < 0 else high
            raise KilnValueError(f"Expected {label} to hold labels in [0, {classes}) for "
                                 f"{loss.name}: output {output!r} has {classes} classes. "
                                 f"Received: a label value of {bad} which is outside the valid "
                                 f"range of [0, {classes})")
        target_dtype = array.dtype if array.dtype in (np.int32, np.int64) else np.int64
        return np.ascontiguousarray(array, dtype=target_dtype)
    if getattr(loss, "same_shape", False) and not (
            _compatible(got, out) or _compatible(got + (1,), out)
            or _compatible(got, out + (1,))):
        raise KilnValueError(f"Arguments `target` and `output` must have the same shape for "
                             f"{loss.name} on output {output!r}. Received: {label}.shape="
                             f"{array.shape}, output.shape={tuple(shape)}")
    return np.ascontiguousarray(array, dtype=dtype)


def check_sample_weight(raw: Any, label: str) -> np.ndarray:
    array = to_array(raw, label)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise KilnValueError(f"Expected {label} to be a 1D array with one weight per sample. "
                             f"Received: {label}.shape={array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def class_weights(class_weight: Any, y: np.ndarray) -> np.ndarray:
    """Per-sample weights from {class index: weight}; the class of a one-hot (or probability)
    target is its argmax, of a 1-column target its value."""
    if not isinstance(class_weight, dict):
        raise KilnTypeError(f"Expected class_weight to be a dict mapping class indices to "
                            f"weights. Received: class_weight={class_weight!r}")
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y))
    labels = np.round(labels).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(c), 1.0) for c in labels], np.float32)


@dataclass
class Dataset:
    """Arrays ready to feed a step graph, by its input names, all of `size` samples."""

    feed: dict[str, np.ndarray]
    size: int

    def take(self, index: slice | np.ndarray) -> Dataset:
        feed = {k: v[index] for k, v in self.feed.items()}
        return Dataset(feed, len(next(iter(feed.values()))) if feed else 0)

    def split(self, validation_split: float) -> tuple[Dataset, Dataset]:
        """Keras's split: the last `validation_split` of the samples, before shuffling."""
        at = int(np.floor(self.size * (1.0 - validation_split)))
        if at == 0 or at == self.size:
            raise KilnValueError(f"Training data contains {self.size} samples, which is not "
                                 "sufficient to split it into a validation and training set as "
                                 f"specified by `validation_split={validation_split}`. Either "
                                 "provide more data, or a different value for the "
                                 "`validation_split` argument.")
        return self.take(slice(0, at)), self.take(slice(at, self.size))

    def steps(self, batch_size: int) -> int:
        return -(-self.size // batch_size)

    def batches(self, batch_size: int, shuffle: bool | str = False,
                rng: np.random.Generator | None = None,
                ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """(feed, batch size) per step; the last batch may be short.

        In order, a batch is a view of the data (no copy). Shuffled, the samples are drawn
        once per epoch as an index permutation and gathered into buffers allocated once:
        a batch's arrays are overwritten by the next batch's."""
        starts = list(range(0, self.size, batch_size))
        order = None
        if shuffle == "batch" and rng is not None:
            starts = [starts[i] for i in rng.permutation(len(starts))]
        elif shuffle and rng is not None:
            order = rng.permutation(self.size)
        if order is None:
            for start in starts:
                stop = min(start + batch_size, self.size)
                yield {k: v[start:stop] for k, v in self.feed.items()}, stop - start
            return
        # A fresh allocation per batch costs page faults (the buffers are often above
        # malloc's mmap threshold); np.take into a kept buffer does not. The indices are a
        # permutation, so mode="clip" (unbuffered) changes nothing.
        buffers = {k: np.empty((min(batch_size, self.size), *v.shape[1:]), v.dtype)
                   for k, v in self.feed.items()}
        for start in starts:
            stop = min(start + batch_size, self.size)
            index = order[start:stop]
            n = stop - start
            yield {k: np.take(v, index, axis=0, out=buffers[k][:n], mode="clip")
                   for k, v in self.feed.items()}, n
