"""Keras 3's progress bar: `k/n ━━━━━━━━━━ 2s 3ms/step - accuracy: 0.9120 - loss: 0.2841`.

verbose=1 redraws one line while the steps run (the time shown is the time left, then the
time taken); verbose=2 prints one line when the run ends.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np


def format_time_per_unit(seconds: float, unit: str = "step") -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_value(value: Any) -> str:
    """A log value as Keras shows it: 4 decimals (or 4 significant digits when tiny); an
    array (a metric at several thresholds) as a bracketed list of such numbers."""
    if np.ndim(value):
        return "[" + " ".join(format_value(float(v)) for v in np.ravel(value)) + "]"
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


class Progbar:
    """Shows the progress of `target` steps; `update(current, values)` with the running
    values of the metrics (already averaged by the caller)."""

    def __init__(self, target: int | None, width: int = 20, verbose: int = 1,
                 unit_name: str = "step", stream: TextIO | None = None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.unit_name = unit_name
        self.stream = stream or sys.stdout
        self.dynamic = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.values: dict[str, float | np.ndarray] = {}
        self._last_width = 0
        self._finalized = False

    def update(self, current: int, values: Iterable[tuple[str, Any]] | None = None,
               finalize: bool | None = None) -> None:
        for key, value in values or ():
            # a metric of several thresholds or classes has an array of values
            self.values[key] = float(value) if np.size(value) == 1 else np.asarray(value, float)
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if self.verbose == 1:
            line = self._line(current, finalize)
            if self.dynamic:
                pad = max(self._last_width - len(line), 0)
                self.stream.write("\r" + line + " " * pad)
            elif finalize:  # a log file gets the final line only
                self.stream.write(line)
            self._last_width = len(line)
            if finalize:
                self.stream.write("\n")
                self._finalized = True
            self.stream.flush()
        elif self.verbose == 2 and finalize and not self._finalized:
            elapsed = time.perf_counter() - self.start
            steps = self.target or current
            text = (f"{steps}/{steps} - {elapsed:.0f}s - "
                    f"{format_time_per_unit(elapsed / max(current, 1), self.unit_name)}")
            self.stream.write(text + self._values_text() + "\n")
            self.stream.flush()
            self._finalized = True

    def _line(self, current: int, finalize: bool) -> str:
        elapsed = time.perf_counter() - self.start
        per_unit = elapsed / current if current else 0.0
        if self.target is None:
            head = f"{current}"
            bar = ""
        else:
            digits = int(math.log10(max(self.target, 1))) + 1
            head = f"{current:>{digits}}/{self.target}"
            done = int(self.width * min(current / max(self.target, 1), 1.0))
            if self.dynamic:
                bar = " \x1b[32m" + "━" * done + "\x1b[0m\x1b[37m" + "━" * (self.width - done) \
                      + "\x1b[0m"
            else:
                bar = " " + "━" * done + " " * (self.width - done)
        if finalize or self.target is None:
            clock = f"{elapsed:.0f}s"
        else:
            clock = f"{per_unit * (self.target - current):.0f}s"
        return (f"{head}{bar} {clock} {format_time_per_unit(per_unit, self.unit_name)}"
                + self._values_text())

    def _values_text(self) -> str:
        return "".join(f" - {key}: {format_value(value)}" for key, value in self.values.items())
