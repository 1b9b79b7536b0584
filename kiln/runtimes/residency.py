"""Where the newest value of a state array lives, for executables that keep state on a device
(numba-cuda): they register the host arrays whose device copy is newer, and whoever reads such
an array on the host `fetch`es it first. Host code that hands out state arrays for writing
calls `touch()`, so a frontend knows when it must look for host writes (`epoch`).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

# id(host state array) -> the executable whose device holds a newer value of it.
_HOLDERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_epoch = [0]


def newer_on_device(array: np.ndarray, holder: Any) -> None:
    """`holder` (an executable with `sync_state()`) has a newer value of `array`."""
    _HOLDERS[id(array)] = holder


def holder_of(array: np.ndarray) -> Any:
    """The executable holding a newer value of `array`, or None (the host's is current)."""
    return _HOLDERS.get(id(array))


def settled(array: np.ndarray, holder: Any) -> None:
    """`holder` brought `array` up to date (or no longer holds it)."""
    if _HOLDERS.get(id(array)) is holder:
        del _HOLDERS[id(array)]


def fetch(array: np.ndarray) -> np.ndarray:
    """`array`, brought up to date from the device that holds a newer value, if any."""
    holder = _HOLDERS.get(id(array))
    if holder is not None:
        holder.sync_state()
    return array


def touch() -> None:
    """A state array was handed out for the host to write (Variable.value, set_weights)."""
    _epoch[0] += 1


def epoch() -> int:
    """Changes whenever `touch()` is called: unchanged, no state array was written on the
    host through the frontend since it was last read."""
    return _epoch[0]
