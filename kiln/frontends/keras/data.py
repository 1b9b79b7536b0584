"""The arrays given to fit / evaluate / predict: matched to the model's inputs and outputs by
position or name, checked (shapes, dtypes, finite values, label ranges, sample counts) before
any step runs, cast to the graph's dtypes, and cut into batches.

Every check raises with Keras's wording where Keras has one, naming the argument (x, y,
sample_weight, validation_data) and the shapes involved.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
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
    if array.dtype.kind == "f" and not all_finite(array):
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
                rng: np.random.Generator | None = None, buffers: int = 1,
                ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """(feed, batch size) per step; the last batch may be short.

        In order, a batch is a view of the data (no copy). Shuffled, the samples are drawn
        once per epoch as an index permutation and gathered into `buffers` sets of buffers
        allocated once, in turn: a batch's arrays are overwritten by the one `buffers`
        batches later (2: a caller may hold the next batch while it uses this one)."""
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
        sets = [{k: np.empty((min(batch_size, self.size), *v.shape[1:]), v.dtype)
                 for k, v in self.feed.items()} for _ in range(buffers)]
        for step, start in enumerate(starts):
            stop = min(start + batch_size, self.size)
            index = order[start:stop]
            n = stop - start
            out = sets[step % buffers]
            yield {k: np.take(v, index, axis=0, out=out[k][:n], mode="clip")
                   for k, v in self.feed.items()}, n


# -- the per-call fast path -------------------------------------------------------------
# A repeated call with arrays of the same kind (container, keys, dtypes, shapes past the
# batch axis) needs none of the structure checks again: a FeedPlan, made once after the full
# checks passed, redoes only the checks that depend on the values (sample counts, finite
# values, integer labels and their range) and the casts. Any check failing there makes it
# answer None, and the full checks then run and raise their usual error.

_FINITE_SOURCE = '''"""kiln: whether a flat float array holds only finite values (the Keras
frontend's data checks, repeated on every call of a cached kind)."""

import numba


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def all_finite(a):
    # x - x is 0 for a finite x and NaN for inf or NaN. 'reassoc' alone lets LLVM vectorize
    # the sum; it may still not assume finite values (that would be 'nnan' / 'ninf').
    if a.size == 0:
        return True
    acc = a[0] - a[0]
    for i in range(a.size):
        acc += a[i] - a[i]
    return acc == 0
'''


@functools.cache
def _finite_kernel() -> Callable[[np.ndarray], bool] | None:
    """The compiled check, imported through the numba backend's cache; None (NumPy does it)
    where numba or a writable cache folder is missing."""
    try:
        from kiln.runtimes.numba.cache import load_module

        return load_module(_FINITE_SOURCE).all_finite
    except Exception:  # noqa: BLE001 - any failure only costs speed
        return None


def all_finite(array: np.ndarray) -> bool:
    """np.isfinite(array).all() (for a float array), in one pass without a temporary for
    C-contiguous float32 and float64 arrays: 3-4x faster on a batch of 100k values."""
    if array.flags.c_contiguous and (array.dtype == np.float32 or array.dtype == np.float64):
        kernel = _finite_kernel()
        if kernel is not None:
            return bool(kernel(array.reshape(-1)))
    return bool(np.isfinite(array).all())


def signature(value: Any) -> tuple | None:
    """What a FeedPlan is keyed on: an array's dtype and shape past the batch axis, or a
    dict / list / tuple of arrays with its keys or length; None for anything else (nested
    lists of numbers, scalars), which always takes the full checks."""
    if type(value) is np.ndarray:
        return (value.dtype, value.shape[1:]) if value.ndim else None
    if type(value) is dict:
        parts = []
        for k, v in value.items():
            if type(v) is not np.ndarray or not v.ndim:
                return None
            parts.append((k, v.dtype, v.shape[1:]))
        return (dict, tuple(parts))
    if type(value) is list or type(value) is tuple:
        parts = []
        for v in value:
            if type(v) is not np.ndarray or not v.ndim:
                return None
            parts.append((v.dtype, v.shape[1:]))
        return (type(value), tuple(parts))
    return None


def leaves(value: Any) -> list[tuple[Any, np.ndarray]]:
    """(key or index, array) of each array of a value `signature` accepts (key None: the
    value is the array)."""
    if type(value) is np.ndarray:
        return [(None, value)]
    if type(value) is dict:
        return list(value.items())
    return list(enumerate(value))


def input_converter(given: np.dtype, dtype: np.dtype) -> Callable[[np.ndarray], Any]:
    """check_input's value checks and cast for arrays of dtype `given` (None: a check failed)."""
    fractional = dtype.kind in "iu" and given.kind == "f"

    def convert(array: np.ndarray) -> np.ndarray | None:
        if fractional and not np.all(np.round(array) == array):
            return None
        return np.ascontiguousarray(array, dtype=dtype)
    return convert


def target_converter(loss: Any, shape: tuple, given: np.dtype, dtype: np.dtype,
                     ) -> Callable[[np.ndarray], Any]:
    """check_target's value checks and cast for targets of dtype `given` whose shape passed."""
    if not getattr(loss, "sparse", False):
        return lambda array: np.ascontiguousarray(array, dtype=dtype)
    classes = tuple(shape[1:])[-1]
    fractional = given.kind == "f"
    target_dtype = given if given in (np.int32, np.int64) else np.dtype(np.int64)

    def convert(array: np.ndarray) -> np.ndarray | None:
        if fractional and not np.all(np.round(array) == array):
            return None
        if array.size and (array.min() < 0 or (classes is not None
                                               and array.max() >= classes)):
            return None
        return np.ascontiguousarray(array, dtype=target_dtype)
    return convert


def weight_converter(array: np.ndarray) -> np.ndarray:
    """check_sample_weight's reshape and cast for a weight array whose shape passed."""
    if array.ndim == 2:
        array = array[:, 0]
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass
class FeedPlan:
    """How to make a step's feed from call arguments of one signature, checks included.

    leaves: (argument position, key or None) of every array the arguments hold.
    steps: (feed name, index into leaves, converter) in the feed's order."""

    leaves: tuple[tuple[int, Any], ...]
    steps: tuple[tuple[str, int, Callable[[np.ndarray], Any]], ...]
    finite: tuple[int, ...] = ()  # the leaves of a float dtype (checked for inf and NaN)

    def apply(self, args: Sequence[Any]) -> tuple[dict[str, np.ndarray], int] | None:
        """(feed, samples), or None where a value check fails (the full checks raise)."""
        arrays = [args[i] if key is None else args[i][key] for i, key in self.leaves]
        size = arrays[0].shape[0]
        if not size:
            return None
        for a in arrays:
            if a.shape[0] != size:
                return None
        for i in self.finite:
            if not all_finite(arrays[i]):
                return None
        feed = {}
        for name, i, convert in self.steps:
            array = convert(arrays[i])
            if array is None:
                return None
            feed[name] = array
        return feed, size


def plan_for(args: Sequence[Any], inputs: Sequence[tuple[str, np.dtype]],
             outputs: Sequence[Any], out_names: Sequence[str]) -> FeedPlan | None:
    """The FeedPlan of (x, y, sample_weight) that just passed the full checks, for a model
    with these inputs (name, dtype), outputs (each with its name, loss, shape and dtype;
    none for predict) and output names. None where an argument is not of a kind
    `signature` accepts."""
    if any(a is not None and signature(a) is None for a in args):
        return None
    where, leaf_keys, dtypes = {}, [], []
    for position, value in enumerate(args):
        if value is not None:
            for key, array in leaves(value):
                where[id(array)] = len(leaf_keys)
                leaf_keys.append((position, key))
                dtypes.append(array.dtype)
    x, y, weight = args
    steps = []
    for (_, raw), (name, dtype) in zip(structure(x, [n for n, _ in inputs], "x"), inputs):
        if id(raw) not in where:
            return None
        steps.append((name, where[id(raw)], input_converter(raw.dtype, dtype)))
    if outputs:
        # y matched to the outputs as Trainer._dataset matches it
        needed = [o.name for o in outputs if o.loss is not None]
        if isinstance(y, dict):
            out_names = [n for n in out_names if n in needed or n in y]
        ys = {name: raw for (_, raw), name in zip(structure(y, out_names, "y"), out_names)}
        for out in outputs:
            if out.loss is None:
                continue
            raw = ys.get(out.name)
            if id(raw) not in where:
                return None
            steps.append(("y" if len(outputs) == 1 else f"y.{out.name}", where[id(raw)],
                          target_converter(out.loss, out.shape, raw.dtype, out.dtype)))
        if weight is not None:
            if type(weight) is not np.ndarray:
                return None
            steps.append(("sample_weight", where[id(weight)], weight_converter))
    finite = tuple(i for i, d in enumerate(dtypes) if d.kind == "f")
    return FeedPlan(tuple(leaf_keys), tuple(steps), finite)
