"""The frontend's unit tests check Keras semantics (shapes, errors, callbacks, saving), not
backends: they run on the reference runtime, which needs no compile, unless KILN_BACKEND
names another (`KILN_BACKEND=numba pytest tests/frontends` runs them all on numba). The
book's examples train on every compiling backend in tests/e2e."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kiln.runtimes import _default, set_backend


@pytest.fixture(autouse=True)
def _frontend_backend() -> Iterator[None]:
    saved = _default["backend"]
    if "KILN_BACKEND" not in os.environ:
        set_backend("reference")
    yield
    _default["backend"] = saved
