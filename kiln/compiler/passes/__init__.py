"""The pass registry: every compiler pass, a named `Graph -> Graph` function, by name.

A pass module registers itself with `register`; the pass manager (kiln.compiler.pass_manager)
looks passes up here, runs them in a pipeline, verifies, times and dumps between them. Every
module of this package is imported below, so a new pass only needs its own file.

    @register("dce")
    def dce(graph: Graph) -> Graph:
        '''Remove nodes ... (what it rewrites and why that is sound)'''
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, overload

from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph

PassFn = Callable[..., Graph]  # run(graph, **options) -> graph


@dataclass(frozen=True)
class Pass:
    """A registered pass: its name (pipelines, dumps), its function, one line on what it does."""

    name: str
    run: PassFn
    description: str

    def __call__(self, graph: Graph, **options: Any) -> Graph:
        return self.run(graph, **options)


PASSES: dict[str, Pass] = {}


@overload
def register(name: str, run: None = None, description: str | None = None,
             ) -> Callable[[PassFn], PassFn]: ...
@overload
def register(name: str, run: PassFn, description: str | None = None) -> PassFn: ...


def register(name: str, run: PassFn | None = None,
             description: str | None = None) -> PassFn | Callable[[PassFn], PassFn]:
    """Register `run` as the pass `name`; used as `@register("name")` or called directly.

    The description defaults to the first line of the function's docstring.
    """

    def add(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        text = description or (fn.__doc__ or "").strip().split("\n")[0]
        PASSES[name] = Pass(name, fn, text)
        return fn

    return add if run is None else add(run)


def get_pass(name: str) -> Pass:
    try:
        return PASSES[name]
    except KeyError:
        raise KilnValueError(
            f"Expected a pass among {', '.join(sorted(PASSES))}. Received: {name!r}"
        ) from None


# -- figures a pass reports to the pass manager ----------------------------------------------
_NOTES: ContextVar[dict[str, Any] | None] = ContextVar("kiln_pass_notes", default=None)


def note(key: str, value: Any) -> None:
    """Record a figure about the current run of a pass, shown in the pass manager's stats.

    plan_buffers records "peak_bytes" (the planned peak memory). Outside a pass manager run
    the figure is dropped.
    """
    notes = _NOTES.get()
    if notes is not None:
        notes[key] = value


@contextlib.contextmanager
def collecting_notes() -> Iterator[dict[str, Any]]:
    """Collect what `note` records while the block runs (the pass manager wraps each pass)."""
    notes: dict[str, Any] = {}
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


# Import every pass module so each registers itself; a module that fails to import for a
# reason other than its own absence is a bug and raises.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["PASSES", "Pass", "collecting_notes", "get_pass", "note", "register"]
