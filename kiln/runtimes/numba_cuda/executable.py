"""The numba-cuda Executable: entry points optimized (-O2) and run node by node on an NVIDIA
GPU through numba-cuda, with the state resident on the device for the executable's life.

Each call copies the batch over, launches every node on the executable's stream into the
buffers of the graph's buffer plan (one device arena per entry point and batch size), and
copies back only the outputs. The first call at given sizes runs the nodes' launchers and
records what they enqueue; later calls replay that record (tape.py). The host `state`
arrays are refreshed from the device lazily, by `sync_state()`; host writes reach the device
by `load_state()`, and are noticed without it for small arrays (the learning rate, the step
counter, the random key), which every call compares with the value last exchanged. Device
memory goes when the executable is closed or dropped.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kiln.compiler.pass_manager import CompileOptions
from kiln.compiler.passes.plan_buffers import BufferPlan, read_buffer_plan
from kiln.compiler.passes.simplify import reordered_from
from kiln.ir.errors import KilnError, KilnValueError
from kiln.ir.graph import Graph
from kiln.ir.types import numpy_dtype
from kiln.runtimes import ordered_inputs, residency
from kiln.runtimes.numba_cuda.tape import Tape, replay_enabled
from kiln.runtimes.reference import bind_dims

ALIGN = 256  # bytes: every arena slot starts on a 256-byte boundary (coalesced access)
ARENAS_KEPT = 4  # arenas kept per entry point: a full batch, a last short batch, and more
WATCHED_SIZE = 64  # state arrays this small are compared with their last known value per call

NO_GPU = ("backend 'numba-cuda' needs an NVIDIA GPU with a working driver; none was found "
          "(numba.cuda.is_available() is False). Use backend='numba' for the CPU, or "
          "NUMBA_ENABLE_CUDASIM=1 to run the CUDA simulator.")


def require_cuda() -> Any:
    """numba.cuda, once it is known to run kernels (a GPU, or the simulator); else KilnError."""
    try:
        from numba import cuda
    except ImportError as err:
        raise KilnError(f"backend 'numba-cuda' needs the numba-cuda package and NVIDIA's CUDA "
                        f"bindings (pip install 'numba-cuda[cu13]'); importing numba.cuda "
                        f"failed: {err}") from None
    from kiln.runtimes.numba_cuda.intrinsics import SIMULATOR

    if not SIMULATOR and not cuda.is_available():
        raise KilnError(NO_GPU)
    return cuda


@dataclass
class Entry:
    """One compiled entry point and its device buffers per batch size."""

    graph: Graph  # as given: names, types and order of inputs, state and outputs
    optimized: Graph
    plan: BufferPlan | None
    # (input position, node, bound: an int or a symbol) of inputs a gather or scatter_add
    # reads as indices, checked on the host before anything runs (a GPU does not check)
    index_inputs: list[tuple[int, Any, Any]] = field(default_factory=list)
    views: dict[int, str] = field(default_factory=dict)  # node index -> view kind (views.py)
    checks_indices: bool = False  # a node (bodies included) may set the error flag
    arenas: OrderedDict = field(default_factory=OrderedDict)
    inputs: OrderedDict = field(default_factory=OrderedDict)  # sizes -> two _Staging
    calls: int = 0


@dataclass
class _Plan:
    """What a call enqueues for one batch's staging buffers: the nodes' launches and the
    update copies as tapes (tape.py), the device arrays holding the outputs, and the error
    sites the launchers registered. Valid while the executable's generation is unchanged."""

    generation: int
    # (output name, value, its device array (1-D), a pinned host buffer it is copied into)
    outputs: list[tuple[str, Any, Any, np.ndarray]]
    error_sites: list[tuple[Any, str]]  # RunContext.error_sites of the recorded call
    nodes: Tape = field(default_factory=Tape)
    updates: Tape = field(default_factory=Tape)


@dataclass
class _Staging:
    """One set of a batch's device buffers, and pinned host buffers to copy it from."""

    device: list[Any]
    pinned: list[np.ndarray]
    event: Any = None  # recorded on the copy stream once a prefetched batch is over
    batch: list[np.ndarray] | None = None  # the host arrays prefetched into it (held)
    plan: _Plan | None = None  # the launches of a call on these buffers, once recorded
    outputs: list[np.ndarray] | None = None  # pinned host buffers the outputs come back in

    def __post_init__(self) -> None:
        self.flat = [_flat(d) for d in self.device]  # 1-D views the copies go through


class NumbaCudaExecutable:
    """Runs entry points on the GPU; the state lives on the device between calls.

    Args:
        graphs: entry point name -> graph (as built; the executable optimizes it).
        state: state name -> host array. The device holds the current values; these very
            arrays receive them at `sync_state()` (and `close()`).
        options: the pass pipeline's level and IR dumps (default: -O2, no dumps).
    """

    backend = "numba-cuda"

    def __init__(self, graphs: Mapping[str, Graph], state: dict[str, np.ndarray],
                 options: CompileOptions | None = None):
        self._cuda = require_cuda()
        from kiln.runtimes.numba_cuda.context import ScratchPool
        from kiln.runtimes.numba_cuda.interpreter import check_launchers
        from kiln.runtimes.numba_cuda.views import plan_views

        self.graphs = dict(graphs)
        self.state = state
        self.options = options or CompileOptions()
        self.memo: dict[Any, Any] = {}  # kernels, uploaded constants, scan buffers
        self.pool = ScratchPool()  # the nodes' temporaries, reused by every call
        # The calls' error flag (context.RunContext.error_flag), made at the first call that
        # needs it; a pinned host word to read it into; whether it may hold a stale code.
        self._error_flag: Any = None
        self._error_word: np.ndarray | None = None
        self._error_dirty = False
        self.entries: dict[str, Entry] = {}
        for name, graph in self.graphs.items():
            optimized, _ = self.options.compile(name, graph)
            check_launchers(optimized, f"@{graph.name} (entry point {name!r})")
            plan = read_buffer_plan(optimized)
            self.entries[name] = Entry(graph, optimized, plan, _index_inputs(graph, optimized),
                                       plan_views(optimized, plan), _checks_indices(optimized))
        self.stream = self._cuda.stream()  # every kernel and copy of a call
        self.copy_stream = self._cuda.stream()  # prefetched batches
        self.device_state: dict[str, Any] = {}
        # Bumped whenever a state's device array is replaced: recorded plans then launch on
        # arrays that are no longer the state's, and are recorded again.
        self._generation = 0
        self._stale: set[str] = set()  # state whose host array is older than the device's
        self._known: dict[str, np.ndarray] = {}  # the value last exchanged, per state
        names = {v.name for g in self.graphs.values() for v in g.state}
        missing = sorted(names - set(state))
        if missing:
            raise KilnValueError(f"backend 'numba-cuda': no value given for state "
                                 f"%{missing[0]}")
        # A host array another executable's device holds a newer value of (a model that
        # gained an entry point, a submodel sharing layers) is brought home before it is
        # copied over, so no executable starts from values older than a device's.
        for name in names:
            holder = residency.holder_of(state[name])
            if holder is not None and holder is not self:
                holder.sync_state()
        self.load_state(sorted(names))

    # -- state -------------------------------------------------------------------------------
    def load_state(self, names: Iterable[str] | None = None) -> None:
        """Copy host state arrays to the device: those named, or (None) every one whose host
        array changed since the device and the host last exchanged it. Call it after writing
        into `state` arrays (set_weights, a restored checkpoint)."""
        if names is None:
            names = [n for n in self.device_state if self._host_wrote(n)]
        for name in list(names):
            host = _contiguous(self.state[name])
            device = self.device_state.get(name)
            if device is None or tuple(device.shape) != host.shape:
                device = self._cuda.device_array(host.shape, host.dtype, stream=self.stream)
                self.device_state[name] = device
                self._generation += 1
            _upload(device, host, self.stream)
            self._known[name] = host.copy()
            self._stale.discard(name)  # the host's value is the current one now
        self.stream.synchronize()

    def sync_state(self) -> None:
        """Copy the device's state into the host `state` arrays (in place) where the device
        has newer values: call it before reading weights (get_weights, save)."""
        if not self._stale:
            return
        pending = [(name, _download(self.device_state[name], self.stream))
                   for name in sorted(self._stale)]
        self.stream.synchronize()
        for name, values in pending:
            host = self.state[name]
            host[...] = values.reshape(host.shape)
            self._known[name] = np.array(host)
            residency.settled(host, self)
        self._stale.clear()

    def _host_wrote(self, name: str) -> bool:
        """Whether the host array differs from the value last exchanged with the device."""
        host, known = self.state[name], self._known.get(name)
        if known is None or host.shape != known.shape or host.dtype != known.dtype:
            return True
        # Bytes, not values: NaN equals itself there, and nothing is copied.
        return not np.array_equal(_contiguous(host).reshape(-1).view(np.uint8),
                                  known.reshape(-1).view(np.uint8))

    def _notice_host_writes(self, graph: Graph) -> None:
        """Upload the small state arrays the host wrote since they were last exchanged (a
        callback setting the learning rate; large ones wait for load_state()), and the
        arrays another executable's device holds newer values of (it trained them since)."""
        changed = []
        for v in graph.state:
            host = self.state[v.name]
            holder = residency.holder_of(host)
            if holder is not None and holder is not self:
                holder.sync_state()
                changed.append(v.name)
            elif host.size <= WATCHED_SIZE and self._host_wrote(v.name):
                changed.append(v.name)
        if changed:
            self.load_state(changed)

    # -- entry points ------------------------------------------------------------------------
    def optimized(self, entry: str) -> Graph:
        """The entry point's graph after the pass pipeline (what the device runs)."""
        return self._entry(entry).optimized

    def _entry(self, entry: str) -> Entry:
        if entry not in self.entries:
            raise KilnValueError(f"no entry point {entry!r}; expected one of "
                                 f"{sorted(self.entries)}")
        return self.entries[entry]

    def prefetch(self, entry: str,
                 inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> None:
        """Start copying the batch of the next call to `entry`, on a second stream, so that
        it crosses over while the device still computes: call it with the next batch before
        `run`ning the current one. The next `run` given these very arrays (unchanged) uses
        the copy; any other batch is copied as usual."""
        e = self._entry(entry)
        args = _input_arrays(e.graph, inputs)
        dims = bind_dims((*e.graph.inputs, *e.graph.state),
                         (*args, *(self.state[v.name] for v in e.graph.state)),
                         f"@{e.graph.name}")
        key = tuple(sorted(dims.items()))
        sets = self._stagings(e, key, dims)
        staging = sets[0] if sets[1].batch is not None else sets[1]
        if staging.event is not None:  # its pinned buffers may still feed an earlier copy
            staging.event.synchronize()
        for host, pinned, device in zip(args, staging.pinned, staging.flat, strict=True):
            np.copyto(pinned, host)
            if host.size:
                device.copy_to_device(pinned.reshape(-1), stream=self.copy_stream)
        staging.event = self._cuda.event()
        staging.event.record(self.copy_stream)
        staging.batch = args

    def run(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
            ) -> dict[str, np.ndarray]:
        """Run `entry` on a batch; returns its outputs as host arrays. The state is updated
        on the device (see sync_state)."""
        if self.device_state is None:
            raise KilnValueError("backend 'numba-cuda': the executable is closed")
        e = self._entry(entry)
        graph = e.graph
        args = _input_arrays(graph, inputs)
        self._notice_host_writes(graph)
        state = [self.state[v.name] for v in graph.state]
        dims = bind_dims((*graph.inputs, *graph.state), (*args, *state), f"@{graph.name}")
        for position, node, bound in e.index_inputs:
            _check_indices(graph, node, args[position], dims.get(bound, bound))
        key = tuple(sorted(dims.items()))
        staging = self._batch_on_device(e, key, dims, args)
        plan = staging.plan
        fresh = plan is None or plan.generation != self._generation or not replay_enabled()
        error_flag = self._flag() if e.checks_indices else None
        completed = False
        try:
            if fresh:
                plan, ctx, env = self._launch_nodes(e, key, dims, staging, error_flag)
            else:
                plan.nodes.replay(self.stream)
            for _, _, device, host in plan.outputs:  # pinned: no wait until synchronize
                if device.size:
                    device.copy_to_host(host, stream=self.stream)
            if fresh:
                self._launch_updates(e, ctx, env)
            else:
                plan.updates.replay(self.stream)
            if error_flag is not None:
                error_flag.copy_to_host(self._error_word, stream=self.stream)
            self.stream.synchronize()
            completed = True
        finally:
            if not completed and error_flag is not None:
                self._error_dirty = True  # kernels may have set it: zero it before the next
        if fresh and replay_enabled():
            staging.plan = plan
        for name, _ in graph.updates:
            if name not in self._stale:  # else registered already (load_state unmarks it)
                self._stale.add(name)
                residency.newer_on_device(self.state[name], self)
        e.calls += 1
        if error_flag is not None and self._error_word[0]:
            self._error_dirty = True
            node, expected = plan.error_sites[int(self._error_word[0]) - 1]
            raise KilnValueError(
                f"@{graph.name}: {node.op} (%{node.outputs[0].name}): expected {expected}. "
                f"Received: an index out of range, computed on the device (the call ran to "
                f"its end: its state updates are applied)")
        # Copies: the pinned buffers are the next call's too.
        return {name: np.array(host).reshape(v.type.resolve(dims))
                for name, v, _, host in plan.outputs}

    def _launch_nodes(self, e: Entry, key: tuple, dims: dict[str, int], staging: _Staging,
                      error_flag: Any) -> tuple[_Plan, Any, dict[str, Any]]:
        """Launch the entry point's nodes by their launchers, recording them on the plan's
        tape; returns the plan, the call's context and its values' device arrays."""
        from kiln.runtimes.numba_cuda.context import RunContext
        from kiln.runtimes.numba_cuda.interpreter import run_nodes

        graph = e.optimized
        env: dict[str, Any] = {}
        for v, device in zip(e.graph.inputs, staging.device, strict=True):
            env[v.name] = device
        for v in e.graph.state:
            env[v.name] = self.device_state[v.name]
        buffers = self._arena(e, key, dims)
        ctx = RunContext(self.stream, dict(dims), memo=self.memo, pool=self.pool,
                         error_flag=error_flag)
        plan = _Plan(self._generation, [], ctx.error_sites)
        ctx.tape = plan.nodes if replay_enabled() else None
        run_nodes(ctx, graph, env, lambda v: buffers[v.name], e.views)
        if staging.outputs is None:  # made once per staging set, whether plans are kept or not
            staging.outputs = [self._pinned((int(env[v.name].size),), np.dtype(env[v.name].dtype))
                               for _, v in graph.outputs]
        plan.outputs = [(name, v, _flat(env[v.name]), host)
                        for (name, v), host in zip(graph.outputs, staging.outputs, strict=True)]
        if ctx.tape is not None:
            ctx.tape = plan.updates
        return plan, ctx, env

    def _launch_updates(self, e: Entry, ctx: Any, env: dict[str, Any]) -> None:
        """Copy the state updates the buffer plan did not write in place (after the outputs
        left: an output may be the old value of a state that is updated), on ctx's tape."""
        updates = [(name, v) for name, v in e.optimized.updates
                   if env[v.name] is not self.device_state[name]]
        sources = {}
        ctx.pool.next_node()
        for name, v in updates:
            source = env[v.name]
            if _reads_state(e, v.name):  # another state's old value: snapshot it first
                source = ctx.empty(tuple(source.shape), np.dtype(source.dtype).name)
                ctx.copy(_flat(source), _flat(env[v.name]))
            sources[name] = source
        for name, source in sources.items():
            ctx.copy(_flat(self.device_state[name]), _flat(source))

    def _flag(self) -> Any:
        """The error flag, zero (made at the first call that needs it)."""
        if self._error_flag is None:
            self._error_flag = self._cuda.to_device(np.zeros(1, np.int32), stream=self.stream)
            self._error_word = self._cuda.pinned_array(1, np.int32)
        elif self._error_dirty:
            self._error_flag.copy_to_device(np.zeros(1, np.int32), stream=self.stream)
        self._error_dirty = False
        return self._error_flag

    def _batch_on_device(self, e: Entry, key: tuple, dims: dict[str, int],
                         args: list[np.ndarray]) -> _Staging:
        """The batch's device buffers: the prefetched ones when `args` were prefetched (the
        compute stream waits for their copy), else buffers it is copied into now."""
        sets = self._stagings(e, key, dims)
        for staging in sets:
            if staging.batch is not None and all(
                    a is b for a, b in zip(staging.batch, args, strict=True)):
                staging.event.wait(self.stream)
                staging.batch = None
                return staging
        staging = sets[0] if sets[0].batch is None else sets[1]
        if staging.event is not None:  # a prefetch nobody ran may still read the pinned
            staging.event.synchronize()  # buffers: let its copy land first
            staging.batch = None
        # Through the pinned buffers: the copy is asynchronous (a pageable one makes the
        # host wait for it), and the host-side copy into them is the one a pageable copy
        # would make in the driver anyway.
        for host, pinned, device in zip(args, staging.pinned, staging.flat, strict=True):
            if host.size:
                np.copyto(pinned, host)
                device.copy_to_device(pinned.reshape(-1), stream=self.stream)
        return staging

    def _stagings(self, e: Entry, key: tuple, dims: dict[str, int]) -> list[_Staging]:
        if key not in e.inputs:
            types = [(v.type.resolve(dims), numpy_dtype(v.type.dtype)) for v in e.graph.inputs]
            e.inputs[key] = [_Staging([self._cuda.device_array(s, d) for s, d in types],
                                      [self._pinned(s, d) for s, d in types])
                             for _ in range(2)]
            while len(e.inputs) > ARENAS_KEPT:
                e.inputs.popitem(last=False)
        e.inputs.move_to_end(key)
        return e.inputs[key]

    def _pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A pinned host array, or a plain one when it holds no element: CUDA refuses to pin
        zero bytes (cuMemHostAlloc(0) is an invalid value), and nothing is copied then."""
        if math.prod(shape) == 0:
            return np.empty(shape, dtype)
        return self._cuda.pinned_array(shape, dtype)

    def _arena(self, e: Entry, key: tuple, dims: dict[str, int]) -> dict[str, Any]:
        """Device buffers of every node output for these sizes: views into one arena laid
        out by the buffer plan, or the state's own array for in-place updates."""
        if key in e.arenas:
            e.arenas.move_to_end(key)
            return e.arenas[key]
        graph = e.optimized
        types = {v.name: v.type for v in graph.values()}
        plan = e.plan
        if plan is None:  # no plan: a slot per value
            slots = tuple((o.name,) for n in graph.nodes for o in n.outputs)
            in_place: tuple = ()
        else:
            slots, in_place = plan.slots, plan.in_place
        sizes = [max((_nbytes(types[n], dims) for n in names), default=0) for names in slots]
        offsets, total = [], 0
        for size in sizes:
            offsets.append(total)
            total += -(-size // ALIGN) * ALIGN
        arena = self._cuda.device_array(max(total, ALIGN), np.uint8)
        views: dict[str, Any] = {}
        for names, offset in zip(slots, offsets, strict=True):
            for name in names:
                t = types[name]
                nbytes = _nbytes(t, dims)
                raw = arena[offset:offset + nbytes] if nbytes else arena[offset:offset]
                views[name] = raw.view(numpy_dtype(t.dtype)).reshape(t.resolve(dims))
        for state, value in in_place:
            views[value] = self.device_state[state]
        e.arenas[key] = views
        while len(e.arenas) > ARENAS_KEPT:
            e.arenas.popitem(last=False)
        return views

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Bring the state home (sync_state) and release every device buffer."""
        if self.device_state is None:
            return
        try:
            self.sync_state()
        finally:
            self.device_state = None  # type: ignore[assignment]
            for e in self.entries.values():
                e.arenas.clear()
                e.inputs.clear()
            self.memo.clear()
            self.pool.arrays.clear()
            self._error_flag = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - an interpreter shutting down may lack CUDA already
            pass


def _checks_indices(graph: Graph) -> bool:
    """Whether a node of `graph` or of a body in it checks indices on the device."""
    return any(n.op in ("gather", "scatter_add")
               or (n.body is not None and n.op != "fused" and _checks_indices(n.body))
               for n in graph.nodes)


def _reads_state(e: Entry, value: str) -> bool:
    """Whether `value` is, or is a view of, a state array (its old value, which another
    update may overwrite before this one is copied)."""
    names = {v.name for v in e.optimized.state}
    if value in names:
        return True
    for i, _ in e.views.items():
        node = e.optimized.nodes[i]
        if node.output.name == value:
            return _reads_state(e, node.inputs[0].name)
    return False


def _index_inputs(graph: Graph, optimized: Graph) -> list[tuple[int, Any, Any]]:
    """(input position, node, bound) for each gather / scatter_add whose indices are an input
    of the entry point, or a transpose of one (the simplifier moves indices, not rows)."""
    positions = {v.name: k for k, v in enumerate(graph.inputs)}
    found = []
    for node in optimized.nodes:
        if node.op not in ("gather", "scatter_add"):
            continue
        name = reordered_from(optimized, node.inputs[1]).name
        if name not in positions:
            continue
        if node.op == "gather":
            x = node.inputs[0].type
            bound = x.shape[node.attr["axis"] % x.rank]
        else:
            bound = node.attr["size"]
        found.append((positions[name], node, bound))
    return found


def _check_indices(graph: Graph, node: Any, indices: np.ndarray, size: int) -> None:
    """The reference runtime's error for an index outside [0, size), before any kernel runs,
    so that a bad batch changes no state."""
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise KilnValueError(
            f"@{graph.name}: {node.op} (%{node.outputs[0].name}): expected indices in "
            f"[0, {size}). Received: indices{list(position)}={int(indices[position])}")


def _nbytes(t: Any, dims: Mapping[str, int]) -> int:
    return math.prod(t.resolve(dict(dims))) * numpy_dtype(t.dtype).itemsize


def _flat(array: Any) -> Any:
    return array if array.ndim == 1 else array.reshape((array.size,))


def _contiguous(array: np.ndarray) -> np.ndarray:
    """array itself when C-contiguous, else a C-contiguous copy (np.ascontiguousarray would
    turn a 0-d array into a 1-d one)."""
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _upload(device: Any, host: np.ndarray, stream: Any) -> None:
    if host.size:
        _flat(device).copy_to_device(_contiguous(host).reshape(-1), stream=stream)


def _download(device: Any, stream: Any) -> np.ndarray:
    """A host copy of a device array (valid once the stream is synchronized)."""
    if not device.size:
        return np.empty(tuple(device.shape), device.dtype)
    return _flat(device).copy_to_host(stream=stream)


def _input_arrays(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                  ) -> list[np.ndarray]:
    """The inputs in the graph's order, names checked."""
    arrays = ordered_inputs(graph, inputs)
    return [np.asarray(a) for a in arrays]
