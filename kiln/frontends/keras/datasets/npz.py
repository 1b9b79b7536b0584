""".npz reading that never runs code from the file.

Keras's imdb.npz and reuters.npz hold object arrays of Python lists, which NumPy stores as a
pickle; `np.load(allow_pickle=True)` would run whatever that pickle names. Here the pickle goes
through an unpickler that resolves only the names NumPy uses to rebuild an array (lists and ints
need none) and refuses every other name, so a hostile file fails before any of its code runs.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np

from kiln.ir.errors import KilnError, KilnValueError

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray as _multiarray


class UnsafePickleError(KilnError, pickle.UnpicklingError):
    """An object array's pickle names something other than NumPy's array reconstruction."""


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Stands in for _codecs.encode, which protocol-2 pickles (NumPy < 1.17 under Python 3)
    use to spell bytes; only the latin1 form pickle writes is accepted."""
    if not isinstance(text, str) or encoding.lower() not in ("latin1", "latin-1"):
        raise UnsafePickleError(
            f"Expected _codecs.encode(str, 'latin1') in an array pickle. "
            f"Received: encoding={encoding!r}"
        )
    return text.encode("latin1")


# The only globals an object array's pickle may name, mapped to fixed objects: nothing is
# imported by name. Both spellings of NumPy's core module appear in real files (NumPy 1 wrote
# numpy.core, NumPy 2 writes numpy._core).
_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        # latin1 reads the byte strings of arrays pickled under Python 2 unchanged.
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"Refusing to load {self._source}: its pickle names {module}.{name}, and only "
                "NumPy arrays of lists and numbers are accepted. Expected one of "
                f"{sorted(f'{m}.{n}' for m, n in _ALLOWED)}. Received: global={module}.{name}"
            )
        return found

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError(
            f"Refusing to load {self._source}: its pickle holds a persistent id. "
            f"Received: pid={pid!r}"
        )


def _read_header(fp: io.BufferedIOBase) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    return np.lib.format.read_array_header_2_0(fp)


def read_npy(fp: io.BufferedIOBase, source: str = "<array>") -> np.ndarray:
    """Read one .npy stream; object arrays go through the restricted unpickler."""
    start = fp.tell()
    shape, fortran_order, dtype = _read_header(fp)
    if not dtype.hasobject:
        fp.seek(start)
        return np.lib.format.read_array(fp, allow_pickle=False)
    try:
        array = _ArrayUnpickler(fp, source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:
        raise UnsafePickleError(f"Could not read the object array {source}: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape) or array.dtype != dtype:
        got = (type(array).__name__, getattr(array, "shape", None), getattr(array, "dtype", None))
        raise UnsafePickleError(
            f"Expected {source} to unpickle to an array of shape {tuple(shape)} and dtype "
            f"{dtype}, as its header says. Received: {got}"
        )
    return array


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz file by name (the name without '.npy'), read safely."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise KilnValueError(
            f"Expected an .npz file (a zip of .npy arrays). Received: path={path!r}"
        ) from exc
    arrays = {}
    with archive:
        for member in archive.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            with archive.open(member) as raw:
                # The header parser seeks, so read the member into memory first.
                arrays[key] = read_npy(io.BytesIO(raw.read()), f"{path}[{key}]")
    return arrays


def require_keys(arrays: dict[str, np.ndarray], keys: tuple[str, ...], path: str) -> None:
    """Raise unless the loaded .npz has every array Keras's file of that name holds."""
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise KilnValueError(
            f"Expected {path} to hold the arrays {list(keys)}. Received: keys={sorted(arrays)}"
        )
