"""Where Keras's dataset files live, and fetching one when it is missing.

Files are looked up in Keras's own cache ($KERAS_HOME/datasets, else ~/.keras/datasets), so a
file Keras downloaded once serves kiln too. A download happens only when the file is absent and
downloads are allowed (KILN_OFFLINE unset); it is checked against Keras's published hash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request

from kiln.ir.errors import KilnError

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DOWNLOAD_TIMEOUT_S = 15.0


class DatasetNotFoundError(KilnError, FileNotFoundError):
    """A dataset file is not on disk and could not be downloaded."""


def keras_home() -> str:
    """Keras's base folder: $KERAS_HOME, else ~/.keras (read at each call, not at import)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return os.path.expanduser(home)
    return os.path.join(os.path.expanduser("~"), ".keras")


def datasets_dir() -> str:
    """The folder Keras caches datasets in: <keras_home>/datasets."""
    return os.path.join(keras_home(), "datasets")


def downloads_disabled() -> bool:
    """True when the environment variable KILN_OFFLINE is set to anything but 0/false/no."""
    value = os.environ.get("KILN_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no")


def _fallback_dir() -> str:
    # Keras writes to /tmp/.keras when the home folder is not writable; read from there too.
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return os.path.join(base, ".keras", "datasets")


def _writable(folder: str) -> bool:
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    return os.access(folder, os.W_OK)


def _candidates(fname: str) -> list[str]:
    if os.path.isabs(fname):
        return [fname]
    found = [os.path.join(datasets_dir(), fname)]
    if not _writable(keras_home()):
        found.append(os.path.join(_fallback_dir(), fname))
    # A relative path to an existing file (from the working directory) is accepted too, so
    # `load_data(path="data/imdb.npz")` reads a local copy instead of downloading.
    found.append(os.path.abspath(fname))
    return found


def get_file(fname: str | os.PathLike, origin: str, file_hash: str | None = None) -> str:
    """The path of a dataset file, downloading it from `origin` only if it is nowhere on disk.

    Args:
        fname: a file name or path. An absolute path is used as is; a relative one is looked up
            in Keras's cache folder (as Keras does; /tmp/.keras/datasets when that folder is
            not writable), then in the working directory.
        origin: the URL to download from when the file is missing.
        file_hash: sha256 (64 hex digits) or md5 (32) of the published file; a download that
            does not match is discarded. Files already on disk are trusted as they are, so a
            subset or a re-packed copy placed by hand loads.

    Returns:
        The absolute path of the file on disk.

    Raises:
        DatasetNotFoundError: the file is missing and downloads are disabled or failed; the
            message names the URL and where to place the file.
    """
    fname = os.path.expanduser(os.fspath(fname))
    for candidate in _candidates(fname):
        if os.path.isfile(candidate):
            return candidate
    target = fname if os.path.isabs(fname) else os.path.join(datasets_dir(), fname)
    if downloads_disabled():
        raise _not_found(target, origin, "downloads are turned off (KILN_OFFLINE is set)")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    except OSError:
        if os.path.isabs(fname):
            raise
        target = os.path.join(_fallback_dir(), fname)
        os.makedirs(os.path.dirname(target), exist_ok=True)
    download(origin, target, file_hash)
    return target


def _not_found(target: str, origin: str, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Dataset file not found: {target} ({reason}). Download {origin} and place it at "
        f"{target}, or pass its location to load_data as path=."
    )


def download(origin: str, target: str, file_hash: str | None = None) -> None:
    """Fetch `origin` into `target` through a temporary file; nothing is left on failure."""
    partial = target + ".part"
    try:
        with urllib.request.urlopen(origin, timeout=DOWNLOAD_TIMEOUT_S) as response:
            with open(partial, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        if file_hash is not None and not hash_matches(partial, file_hash):
            raise _not_found(target, origin, "the downloaded file does not match its hash")
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        if isinstance(exc, DatasetNotFoundError):
            raise
        raise _not_found(target, origin, f"download failed: {exc}") from exc
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def hash_matches(path: str, file_hash: str) -> bool:
    """Whether the file's sha256 (64 hex digits) or md5 (32) equals `file_hash`."""
    algorithm = hashlib.md5 if len(file_hash) == 32 else hashlib.sha256
    digest = algorithm()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == file_hash.lower()
