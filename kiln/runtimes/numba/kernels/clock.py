"""A monotonic clock readable inside @njit code, for the timed drivers that profiles run.

Numba offers no clock of its own; POSIX clock_gettime, called through ctypes, costs some tens
of nanoseconds (the vDSO) and can be called from compiled code. A function that calls a ctypes
pointer cannot be cached, so only the timed drivers (never cached) call `tick`.
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


_gettime = _clock_gettime()
AVAILABLE = _gettime is not None
CLOCK_ID = _CLOCK if AVAILABLE else 0

if AVAILABLE:
    @njit(cache=False)
    def tick(ticks: np.ndarray, i: int) -> None:
        """The clock's seconds and nanoseconds now into ticks[2 i], ticks[2 i + 1]."""
        _gettime(CLOCK_ID, ticks[2 * i:].ctypes.data)
else:
    def tick(ticks: np.ndarray, i: int) -> None:
        raise RuntimeError("no clock_gettime on this platform")


def nanoseconds(ticks: np.ndarray) -> np.ndarray:
    """Per tick written by `tick` (a flat int64 array of pairs), the clock in nanoseconds."""
    pairs = ticks.reshape(-1, 2)
    return pairs[:, 0] * 10**9 + pairs[:, 1]
