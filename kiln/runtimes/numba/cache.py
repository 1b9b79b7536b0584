"""The cache of generated Numba modules, so that a second process pays no compile.

Each module's source is written to `<cache>/numba/kiln_<hash>.py`, the hash covering kiln's
version, this cache's format, the kernel library's source and the module's source itself
(which holds every op, attribute, type and scalar constant it computes), and imported from
there; its drivers are `@njit(cache=True)`,
so Numba keeps their machine code next to the file (in `__pycache__`) and a later process
that generates the same source loads it instead of compiling. The cache folder is
`~/.cache/kiln` unless `KILN_CACHE_DIR` names another.

`clear()` empties it; the command line will offer it as `kiln cache clear`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from kiln.ir.errors import KilnError

FORMAT = 1  # bump when the generated code's conventions change


def cache_dir() -> Path:
    """The folder holding generated modules and their compiled code."""
    root = os.environ.get("KILN_CACHE_DIR") or Path.home() / ".cache" / "kiln"
    return Path(root) / "numba"


def _kernels_digest() -> str:
    """A hash of the kernel library's source. Numba's cache entry for a driver embeds the
    machine code of the kernels it calls but checks only the driver's own source, so a
    changed kernel must change the driver's module name."""
    if "digest" not in _KERNELS:
        folder = Path(__file__).parent / "kernels"
        h = hashlib.sha256()
        for path in sorted(folder.glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _KERNELS["digest"] = h.hexdigest()
    return _KERNELS["digest"]


_KERNELS: dict[str, str] = {}


def module_name(source: str) -> str:
    """The module's name: a hash of kiln's version, the cache format, the kernel library
    and the source."""
    from kiln import __version__

    key = f"kiln {__version__} numba-format {FORMAT} kernels {_kernels_digest()}\n{source}"
    return f"kiln_{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def load_module(source: str) -> ModuleType:
    """Import `source` from the cache, writing it there first when it is not."""
    name = module_name(source)
    if name in sys.modules:
        return sys.modules[name]
    folder = cache_dir()
    path = folder / f"{name}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != source:
            # Written to a temporary file then renamed, so no process imports half a file.
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(source)
            os.replace(tmp, path)
    except OSError as err:
        raise KilnError(f"numba backend: expected a writable cache folder for generated "
                        f"code (set KILN_CACHE_DIR to move it). Received: {folder}: {err}"
                        ) from None
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Numba's cache finds the module by name when it loads compiled code: register it first.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def clear() -> int:
    """Delete every generated module and its compiled code; returns how many modules."""
    folder = cache_dir()
    if not folder.exists():
        return 0
    count = sum(1 for _ in folder.glob("kiln_*.py"))
    shutil.rmtree(folder)
    return count
