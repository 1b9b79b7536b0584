"""Arrays for `kiln run` and `kiln train`: read from .npy / .npz files without pickle, matched
to an entry point's named inputs, and checked (shape, dtype, sample count) before anything runs.

Dtypes: an array of the input's exact dtype is taken as is; otherwise only a conversion that
keeps every value is accepted: any float to a float input (as Keras does with float64 data),
an integer dtype that casts safely to it (uint8 images to float32), and integers, or floats
holding whole numbers, within range for an integer input (token ids). Anything else is refused
with the expected and the given dtype.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kiln.tools.errors import CommandError


def load_npy(path: str, label: str) -> np.ndarray:
    """The array in the .npy file `path` (never unpickled); `label` names it in errors."""
    _require_file(path, label)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise CommandError(f"{label}: expected a .npy file holding an array of numbers. "
                           f"Received: {path} ({_first_line(err)})") from None
    except EOFError:
        raise CommandError(f"{label}: expected a .npy file. Received: {path}, which is "
                           "empty or truncated") from None
    if not isinstance(array, np.ndarray):  # an .npz given where a .npy was expected
        array.close()
        raise CommandError(f"{label}: expected a .npy file holding one array. Received: "
                           f"{path}, an .npz archive (give one of its arrays as .npy)")
    return array


def load_npz(path: str, label: str) -> dict[str, np.ndarray]:
    """Every array of the .npz file `path` by key (never unpickled)."""
    _require_file(path, label)
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.ndarray):
            single = True
        else:
            single = False
            with archive:
                arrays = {key: archive[key] for key in archive.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CommandError(f"{label}: expected an .npz archive of arrays of numbers. "
                           f"Received: {path} ({_first_line(err)})") from None
    if single:
        raise CommandError(f"{label}: expected an .npz archive of named arrays. "
                           f"Received: {path}, a single .npy array")
    return arrays


def _require_file(path: str, label: str) -> None:
    p = Path(path)
    if not p.exists():
        raise CommandError(f"{label}: no such file: {path}")
    if p.is_dir():
        raise CommandError(f"{label}: expected a file. Received: {path}, a directory")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def parse_assignments(items: Sequence[str], option: str) -> tuple[str | None, dict[str, str]]:
    """`--opt VALUE` (once) or `--opt NAME=VALUE` (repeated) as (VALUE, {}) or (None, {NAME:
    VALUE}). A file path holding '=' can be given as `NAME=PATH` to avoid the ambiguity."""
    bare = [item for item in items if "=" not in item]
    named: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            continue
        name, value = item.split("=", 1)
        if not name or not value:
            raise CommandError(f"{option}: expected NAME=VALUE with both parts. "
                               f"Received: {option} {item!r}")
        if name in named:
            raise CommandError(f"{option}: the name {name!r} is given twice")
        named[name] = value
    if bare and (named or len(bare) > 1):
        raise CommandError(f"{option}: name every value (NAME=VALUE) when giving several. "
                           f"Received: {' '.join(f'{option} {i}' for i in items)}")
    return (bare[0] if bare else None), named


def match_names(bare: Any, named: Mapping[str, Any], expected: Sequence[str], option: str,
                what: str, where: str) -> dict[str, Any]:
    """Values by expected name: one bare value for a single expected name, else one named
    value for each. `what` names the things ("input"), `where` their owner ("predict of
    model.kiln"), in errors."""
    listed = ", ".join(map(repr, expected))
    if bare is not None:
        if len(expected) != 1:
            raise CommandError(f"{option}: {where} has the {what}s {listed}; expected "
                               f"NAME=VALUE for each. Received: one unnamed value {bare!r}")
        return {expected[0]: bare}
    unknown = [name for name in named if name not in expected]
    if unknown:
        raise CommandError(f"{option}: expected {what} names of {where} among {listed}. "
                           f"Received: {', '.join(map(repr, unknown))}")
    missing = [name for name in expected if name not in named]
    if missing:
        raise CommandError(f"{option}: no value for the {what} {', '.join(map(repr, missing))} "
                           f"of {where}. Expected one for each of {listed}")
    return {name: named[name] for name in expected}


def format_shape(shape: Sequence[int | None]) -> str:
    """(None, 4) for a shape with a free batch axis, as Keras prints it."""
    return str(tuple(shape))


def convert(array: np.ndarray, shape: Sequence[int | None], dtype: Any, label: str,
            where: str) -> np.ndarray:
    """`array` checked against `shape` (None: any size) and converted to `dtype` under the
    rules of this module's docstring. `label` is what the user gave (a file, a key), `where`
    what it was given for (an input of an artifact)."""
    expected = np.dtype(dtype)
    shape = tuple(shape)
    if array.ndim != len(shape) or any(e is not None and a != e
                                       for a, e in zip(array.shape, shape)):
        raise CommandError(f"{where}: expected shape {format_shape(shape)} {expected}. "
                           f"Received: {label} with shape {array.shape}")
    if array.ndim and array.shape[0] == 0:
        raise CommandError(f"{where}: expected at least one sample. Received: {label} with "
                           f"shape {array.shape}")
    if array.dtype == expected:
        return np.ascontiguousarray(array)
    problem = _conversion_problem(array, expected)
    if problem is not None:
        raise CommandError(f"{where}: expected dtype {expected} ({_accepted(expected)}). "
                           f"Received: {label} with dtype {array.dtype}{problem}")
    return np.ascontiguousarray(array, dtype=expected)


def _conversion_problem(array: np.ndarray, expected: np.dtype) -> str | None:
    """None when `array` converts to `expected` keeping its values, else why not (may be "")."""
    given = array.dtype
    if expected.kind == "f":
        if given.kind == "f" or (given.kind in "iu" and np.can_cast(given, expected, "safe")):
            return None
        return ""
    if expected.kind in "iu":
        if given.kind not in "iuf":
            return ""
        if given.kind == "f" and array.size and not np.all(np.round(array) == array):
            return ", with fractional values"
        if array.size:
            info = np.iinfo(expected)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                return f", with values in [{low}, {high}] outside {expected}'s range"
        return None
    return ""  # bool inputs take bool arrays only


def _accepted(expected: np.dtype) -> str:
    if expected.kind == "f":
        return "or any float, or an integer dtype that converts exactly such as uint8"
    if expected.kind in "iu":
        return "or any integer or whole-number float array within its range"
    return "exactly"


def check_batch(arrays: Mapping[str, np.ndarray], labels: Mapping[str, str], where: str) -> int:
    """The common number of samples of `arrays` (name -> array); differing counts are an
    error listing each."""
    sizes = {name: a.shape[0] for name, a in arrays.items() if a.ndim}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{labels[name]}: {size}" for name, size in sizes.items())
        raise CommandError(f"{where}: expected the same number of samples in every input. "
                           f"Received: {listed}")
    return next(iter(sizes.values()), 1)
