"""The numba Executable: each entry point optimized (-O2), generated as one @njit driver,
imported from the cache, and run on NumPy arrays with the state updated in place.

Intermediates live in one byte arena per (entry point, symbol sizes), allocated at the first
call with those sizes and reused after, so a training loop allocates only its outputs. An
executable is not thread-safe: two concurrent calls of one entry point share its arena.

`run` costs a few microseconds of Python on its fast path (a dict of C-contiguous writeable
arrays of the declared dtypes, the same state arrays as the call before, checked by identity
and kept as flat views, input shapes checked once per tuple of shapes and remembered with the
driver's other arguments); anything else takes the full checks, which also raise the errors.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kiln.compiler.codegen.numba import GeneratedDriver, generate_driver, module_source
from kiln.compiler.codegen.numba.driver import ALIGN
from kiln.compiler.pass_manager import CompileOptions
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph
from kiln.ir.types import numpy_dtype
from kiln.runtimes import ordered_inputs, profiling
from kiln.runtimes.numba import cache
from kiln.runtimes.reference import bind_dims

ARENAS_KEPT = 4  # arenas kept per entry point: a full batch, a last short batch, and more


@dataclass
class Entry:
    """One compiled entry point."""

    graph: Graph  # as given: names, types and order of inputs, state and outputs
    optimized: Graph
    driver: GeneratedDriver
    function: Callable
    module_path: str
    constants: tuple[np.ndarray, ...]
    arenas: OrderedDict = field(default_factory=OrderedDict)
    calls: int = 0
    # The fast path of `run` (see NumbaExecutable.run): per input, its name, dtype and
    # shape; the state arrays last checked (by identity, as (name, array) pairs) with their
    # flat views; and per tuple of input shapes already checked, the driver's arguments
    # after the inputs (state, constants, arena) and the outputs' shapes.
    inputs: tuple[tuple[str, np.dtype, tuple], ...] = ()
    names: tuple[str, ...] = ()  # the inputs' names, in the driver's order
    outputs: tuple[str, ...] = ()
    bound: tuple[tuple[str, np.ndarray], ...] | None = None
    bound_flat: tuple[np.ndarray, ...] = ()
    bound_dims: dict[str, int] = field(default_factory=dict)
    updated: tuple[np.ndarray, ...] = ()  # the bound state arrays written in place
    by_shapes: dict[tuple, tuple[tuple, tuple, tuple]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = tuple((v.name, numpy_dtype(v.type.dtype), v.type.shape)
                            for v in self.graph.inputs)
        self.names = tuple(name for name, _, _ in self.inputs)
        self.outputs = tuple(name for name, _ in self.graph.outputs)

    def arena(self, dims: dict[str, int]) -> tuple:
        """The driver's trailing arguments for these symbol sizes (the arena in each dtype,
        the slot offsets, the sizes), then each output's shape."""
        key = tuple(dims[s] for s in self.driver.symbols)
        found = self.arenas.get(key)
        if found is not None:
            if len(self.arenas) > 1:
                self.arenas.move_to_end(key)
            return found
        offsets, size = self.driver.slot_offsets(dims)
        raw = np.empty(size + ALIGN, np.uint8)  # the arena starts on a cache line
        start = -raw.ctypes.data % ALIGN
        arena = raw[start:start + size]
        shapes = tuple(v.type.resolve(dims) for _, v in self.graph.outputs)
        self.arenas[key] = ((*(arena.view(numpy_dtype(d)) for d in self.driver.arena_dtypes),
                             offsets, *key), shapes)
        while len(self.arenas) > ARENAS_KEPT:
            self.arenas.popitem(last=False)
            self.by_shapes.clear()  # it may hold the arena given back
        return self.arenas[key]

    def shapes_checked(self, shapes: tuple) -> tuple[tuple, tuple, tuple] | None:
        """For inputs of these shapes (already of the right dtypes and ranks) with the bound
        state: the driver's arguments after the inputs, the outputs' shapes and the arena's
        key; None where a shape contradicts the declared ones (the full checks raise)."""
        dims = dict(self.bound_dims)
        for (_, _, declared_shape), shape in zip(self.inputs, shapes):
            for declared, actual in zip(declared_shape, shape):
                if declared.__class__ is int:
                    if declared != actual:
                        return None
                elif dims.setdefault(declared, actual) != actual:
                    return None
        arguments, out_shapes = self.arena(dims)
        key = tuple(dims[s] for s in self.driver.symbols)
        found = ((*self.bound_flat, *self.constants, *arguments), out_shapes, key)
        if len(self.by_shapes) >= 2 * ARENAS_KEPT:
            self.by_shapes.clear()
        self.by_shapes[shapes] = found
        return found


class NumbaExecutable:
    """Runs entry points through generated Numba code; `state` arrays change in place.

    Args:
        graphs: entry point name -> graph (as built; the executable optimizes it).
        state: state name -> array, the arrays every call reads and updates in place.
        options: the pass pipeline's level and IR dumps (default: -O2, no dumps).
    """

    backend = "numba"

    def __init__(self, graphs: Mapping[str, Graph], state: dict[str, np.ndarray],
                 options: CompileOptions | None = None):
        self.graphs = dict(graphs)
        self.state = state
        self.options = options or CompileOptions()
        self.compile_seconds: dict[str, float] = {}  # passes, codegen and import per entry
        self.entries = {name: self._build(name, graph) for name, graph in self.graphs.items()}

    def _build(self, entry: str, graph: Graph) -> Entry:
        start = time.perf_counter()
        optimized, _ = self.options.compile(entry, graph)
        driver = generate_driver(optimized)
        source = module_source([driver], f"kiln: generated Numba driver of @{graph.name} "
                                          f"(entry point {entry!r}).")
        module = cache.load_module(source)
        constants = tuple(np.array(c).reshape(-1) for c in driver.constants)
        self.compile_seconds[entry] = time.perf_counter() - start
        return Entry(graph, optimized, driver, getattr(module, driver.function),
                     str(module.__file__), constants)

    @classmethod
    def _over(cls, entries: dict[str, Entry], state: dict[str, np.ndarray],
              options: CompileOptions) -> NumbaExecutable:
        """An executable running entries already built, over other state (a profile's)."""
        exe = cls.__new__(cls)
        exe.graphs = {name: e.graph for name, e in entries.items()}
        exe.state, exe.options, exe.compile_seconds, exe.entries = state, options, {}, entries
        return exe

    def profile(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                repeats: int = 10, warmup: int = 2) -> profiling.Profile:
        """Per node of the optimized graph, its median time over `repeats` calls (after
        `warmup`) of a timed driver: the same code with the clock read between nodes
        (compiled on first use, then cached like any driver). The calls run on copies of
        the state the entry point updates: the executable's state does not change."""
        from kiln.runtimes.numba.kernels import clock

        profiling.check_repeats(repeats, warmup)
        e = self._entry(entry)
        if not clock.AVAILABLE:
            raise KilnValueError("profile: the numba backend times nodes with POSIX "
                                 "clock_gettime, which this platform lacks")
        state = profiling.state_copy(e.graph, self.state)
        plain = NumbaExecutable._over(
            {entry: Entry(e.graph, e.optimized, e.driver, e.function, e.module_path,
                          e.constants)}, state, self.options)
        driver = generate_driver(e.optimized, timed=True)
        module = cache.load_module(module_source(
            [driver], f"kiln: timed Numba driver of @{e.graph.name} (entry point {entry!r}), "
                      f"for profiles: the clock is read between nodes."))
        ticks = np.array(driver.constants[-1])  # the clock buffer, then the clock itself
        constants = (*(np.array(c).reshape(-1) for c in driver.constants[:-1]), ticks,
                     clock.GETTIME)
        timed = NumbaExecutable._over(
            {entry: Entry(e.graph, e.optimized, driver, getattr(module, driver.function),
                          str(module.__file__), constants)}, state, self.options)
        timed.run(entry, inputs)  # compiles the timed driver
        call_seconds = profiling.time_calls(lambda: plain.run(entry, inputs), repeats, warmup)

        def call() -> np.ndarray:
            timed.run(entry, inputs)
            return np.diff(clock.nanoseconds(ticks)) * 1e-9

        seconds = profiling.timed_rows(call, repeats, warmup)
        nodes = profiling.node_rows(e.optimized.nodes, seconds[:, :-1])
        nodes.append(profiling.NodeTime(-1, "outputs", (), profiling.OUTPUTS_ROW,
                                        float(np.median(seconds[:, -1]))))
        return profiling.Profile(
            self.backend, entry, e.graph.name, "optimized",
            profiling.input_summary(e.graph, inputs), repeats, call_seconds,
            float(np.median(seconds.sum(axis=1))), nodes)

    def optimized(self, entry: str) -> Graph:
        """The entry point's graph after the pass pipeline (what the driver computes)."""
        return self._entry(entry).optimized

    def source(self, entry: str) -> str:
        """The generated source of an entry point's driver (for reading and debugging)."""
        return self._entry(entry).driver.source

    def _entry(self, entry: str) -> Entry:
        if entry not in self.entries:
            raise KilnValueError(f"no entry point {entry!r}; expected one of "
                                 f"{sorted(self.entries)}")
        return self.entries[entry]

    def run(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
            ) -> dict[str, np.ndarray]:
        """Run an entry point on a batch; returns its outputs by name (state changes in
        place).

        The common call (a dict of C-contiguous writeable arrays of the right dtypes, the
        same state arrays as the last call) takes a fast path of a few microseconds; any
        other call, or a check that fails there, goes through the full checks."""
        e = self.entries.get(entry)
        if e is not None and isinstance(inputs, dict) and len(inputs) == len(e.names):
            found = self._fast_arguments(e, inputs)
            if found is not None:
                flat, (tail, shapes, key) = found
                if len(e.arenas) > 1:  # keep the arenas in the order of their last use
                    e.arenas.move_to_end(key)
                results = self._call(e, entry, flat, tail)
                e.calls += 1
                return {name: out.reshape(shape)
                        for name, out, shape in zip(e.outputs, results, shapes)}
        return self._run_checked(entry, inputs)

    def _fast_arguments(self, e: Entry, inputs: dict) -> tuple[list, tuple] | None:
        """The inputs' flat views, and the driver's other arguments and the outputs' shapes,
        or None where the full checks must decide (they raise the errors)."""
        state = self.state
        bound = e.bound
        if bound is None:
            if not self._bind_state(e):
                return None
        else:
            for name, a in bound:
                if state.get(name) is not a:
                    if not self._bind_state(e):
                        return None
                    break
        for a in e.updated:
            if not a.flags.writeable:
                return None
        flat, shapes = [], []
        for name, dtype, declared in e.inputs:
            a = inputs.get(name)
            if type(a) is not np.ndarray or a.dtype != dtype:
                return None
            flags = a.flags
            if not (flags.c_contiguous and flags.writeable) or a.ndim != len(declared):
                return None
            shapes.append(a.shape)
            flat.append(a.reshape(-1))
        shapes = tuple(shapes)
        found = e.by_shapes.get(shapes)
        if found is None:
            found = e.shapes_checked(shapes)
            if found is None:
                return None
        return flat, found

    def _bind_state(self, e: Entry) -> bool:
        """Check the state arrays once (dtypes, shapes, contiguity) and keep their flat
        views; False (the full checks run) where one is missing, strided or wrong."""
        e.bound = None
        e.by_shapes.clear()
        arrays = []
        for v in e.graph.state:
            a = self.state.get(v.name)
            if type(a) is not np.ndarray or not a.flags.c_contiguous:
                return False
            arrays.append(a)
        try:
            dims = bind_dims(e.graph.state, arrays, f"@{e.graph.name}")
        except (KilnValueError, TypeError, ValueError):
            return False
        updated = {name for name, _ in e.graph.updates}
        e.bound = tuple((v.name, a) for v, a in zip(e.graph.state, arrays))
        e.bound_flat = tuple(a.reshape(-1) for a in arrays)
        e.bound_dims = dims
        e.updated = tuple(a for v, a in zip(e.graph.state, arrays) if v.name in updated)
        return True

    @staticmethod
    def _call(e: Entry, entry: str, flat: Sequence[np.ndarray], tail: tuple) -> tuple:
        """The driver on the inputs' flat views and `tail` (state, constants, arena)."""
        try:
            return e.function(*flat, *tail)
        except (IndexError, ValueError) as err:
            raise KilnValueError(f"@{e.graph.name} (entry point {entry!r}): {err}") from None
        except Exception as err:
            err.add_note(f"in the generated driver {e.module_path}")
            raise

    def _run_checked(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                     ) -> dict[str, np.ndarray]:
        """run with every check, and state that is not contiguous run on a copy."""
        e = self._entry(entry)
        graph = e.graph
        args = _input_arrays(graph, inputs)
        missing = [v.name for v in graph.state if v.name not in self.state]
        if missing:
            raise KilnValueError(f"@{graph.name}: no value given for state %{missing[0]}")
        state = [self.state[v.name] for v in graph.state]
        dims = bind_dims((*graph.inputs, *graph.state), (*args, *state), f"@{graph.name}")
        updated = {name for name, _ in graph.updates}
        passed, write_back = [], []
        for v, array in zip(graph.state, state, strict=True):
            if v.name in updated and not array.flags.writeable:
                raise KilnValueError(f"@{graph.name}: state %{v.name} is updated in place, "
                                     f"but its array is read-only")
            if not array.flags.c_contiguous:  # run on a contiguous copy, then write it back
                copy = np.ascontiguousarray(array)
                write_back.append((array, copy))
                array = copy
            passed.append(array.reshape(-1))
        arguments, shapes = e.arena(dims)
        results = self._call(e, entry, [a.reshape(-1) for a in args],
                             (*passed, *e.constants, *arguments))
        for array, copy in write_back:
            array[...] = copy
        e.calls += 1
        return {name: flat.reshape(shape)
                for (name, _), flat, shape in zip(graph.outputs, results, shapes, strict=True)}


def _input_arrays(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                  ) -> list[np.ndarray]:
    """The inputs in the graph's order, as C-contiguous writeable arrays; names checked."""
    arrays = ordered_inputs(graph, inputs)
    result = []
    for a in arrays:
        a = np.asarray(a)
        if not (a.flags.c_contiguous and a.flags.writeable):
            a = np.array(a, order="C")
        result.append(a)
    return result
