"""A monotonic clock readable inside @njit code, for the timed drivers that profiles run.

Numba offers no clock of its own; POSIX clock_gettime, called through ctypes, costs some tens
of nanoseconds (the vDSO) and can be called from compiled code. The function travels as an
argument (GETTIME), not as a global: a function that calls a ctypes pointer held in a global
cannot be cached, one that is given it can, so the timed drivers load from the cache too.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np
from numba import njit

_CLOCK = getattr(time, "CLOCK_MONOTONIC", None)


def _clock_gettime() -> object | None:
    """libc's clock_gettime as a ctypes function of (clock id, struct timespec *), or None
    where there is none, or where a timespec is not two 64-bit integers."""
    if _CLOCK is None or ctypes.sizeof(ctypes.c_long) != 8:
        return None
    try:
        function = ctypes.CDLL(None).clock_gettime
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    probe = np.zeros(2, np.int64)
    if function(_CLOCK, probe.ctypes.data) != 0:
        return None
    if abs(int(probe[0]) * 10**9 + int(probe[1]) - time.monotonic_ns()) > 10**9:
        return None  # not the clock time.monotonic reads
    return function


GETTIME = _clock_gettime()  # what the timed drivers take as their `clock` argument
AVAILABLE = GETTIME is not None
CLOCK_ID = _CLOCK if AVAILABLE else 0


@njit(cache=True)
def tick(clock, ticks: np.ndarray, i: int) -> None:  # noqa: ANN001 - a ctypes function
    """The clock's seconds and nanoseconds now into ticks[2 i], ticks[2 i + 1]."""
    clock(CLOCK_ID, ticks[2 * i:].ctypes.data)


def nanoseconds(ticks: np.ndarray) -> np.ndarray:
    """Per tick written by `tick` (a flat int64 array of pairs), the clock in nanoseconds."""
    pairs = ticks.reshape(-1, 2)
    return pairs[:, 0] * 10**9 + pairs[:, 1]
