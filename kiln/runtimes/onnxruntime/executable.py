"""The onnxruntime backend: each entry point compiled (-O2), emitted as one ONNX model and run
by one InferenceSession created once; training steps are ordinary models (state in, new state
out), so no onnxruntime-training is needed.

State stays resident through IOBinding. Each state array is bound as an input OrtValue over
the array's own memory (no copy in); each updated state is bound as an output to a second
buffer of its own, which ORT writes in place of allocating; after the run the new values are
copied into the state arrays, which the model's variables own and must keep (the weights ARE
those arrays). Binding the outputs straight onto the state arrays would save that copy but is
unsound: ORT may schedule a node that still reads the old weights after the node writing the
new ones. The copy costs a memcpy of the updated state per step (about 0.07 ms for the 784-512-
10 MLP with RMSprop's slots, 3% of its step), and it makes a step all or nothing: a run that
fails leaves the state as it was.

Session options, measured on 2 cores (medians; MLP 784-512-10 with RMSprop at batch 128, its
inference at batch 1 and 128, and the convnet's train step): intra-op threads = the cores this
process may use, one inter-op thread, sequential execution; ORT_ENABLE_ALL graph optimizations
(EXTENDED measured the same within noise: ALL is the superset, with MatMul+Add -> Gemm and
transposes folded into FusedMatMul either way); spinning worker threads kept on (turning
them off cost 1.5x on the train step and 20 us a call at batch 1). Output copies: every
graph output takes over the name of the value it returns, so no Identity copies remain.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from kiln.compiler.codegen.onnx import EmittedModel, emit_model
from kiln.compiler.pass_manager import CompileOptions
from kiln.ir import Graph
from kiln.ir.errors import KilnValueError
from kiln.ir.types import numpy_dtype
from kiln.runtimes import profiling
from kiln.runtimes.reference import bind_dims

_pybind = ort.capi.onnxruntime_pybind11_state
# What a failing run raises (Python's RuntimeError for errors inside a kernel).
_ORT_ERRORS = (_pybind.Fail, _pybind.InvalidArgument, _pybind.RuntimeException, RuntimeError)


def session_options(threads: int | None = None,
                    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                    ) -> ort.SessionOptions:
    """The options every kiln session uses (see the module docstring for why)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    options.log_severity_level = 4  # fatal only: run errors come back as KilnValueError
    return options


@dataclass
class _Entry:
    """One entry point: its optimized graph, ONNX model, session and bindings."""

    graph: Graph
    emitted: EmittedModel
    session: ort.InferenceSession
    binding: ort.IOBinding
    state_bound: dict[str, np.ndarray] = field(default_factory=dict)  # name -> bound array
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # state -> new-value buffer
    buffer_values: dict[str, ort.OrtValue] = field(default_factory=dict)  # OrtValues over them
    dims: dict[str, int] | None = None  # the symbol sizes the outputs were bound for
    specs: tuple = ()  # per input: (numpy dtype, declared shape), for the per-call check
    outputs: tuple[str, ...] = ()  # IR output names, in the binding's output order


class OnnxRuntimeExecutable:
    """Runs entry points with onnxruntime, updating `state`'s arrays in place after each call.

    Args:
        graphs: entry name -> graph, as written (compiled here with `compile_options`).
        state: state name -> array; the arrays are read and updated in place.
        compile_options: the kiln pass pipeline's level and IR dumps before emission.
        threads: intra-op threads (default: the cores this process may use).
    """

    backend = "onnxruntime"

    def __init__(self, graphs: Mapping[str, Graph], state: dict[str, np.ndarray], *,
                 compile_options: CompileOptions | None = None, threads: int | None = None,
                 options: ort.SessionOptions | None = None):
        self.graphs = dict(graphs)
        self.state = state
        self.options = options or session_options(threads)
        self.compile_options = compile_options or CompileOptions()
        self._entries = {name: self._compile(name, graph) for name, graph in graphs.items()}

    def optimized(self, entry: str) -> Graph:
        """The entry point's graph after kiln's pass pipeline (what the ONNX model computes)."""
        return self._entries[entry].graph

    @property
    def models(self) -> dict[str, onnx.ModelProto]:
        """Entry name -> its onnx.ModelProto (what the artifact stores)."""
        return {name: entry.emitted.model for name, entry in self._entries.items()}

    def _compile(self, name: str, graph: Graph) -> _Entry:
        compiled, _ = self.compile_options.compile(name, graph)
        return self._session(compiled, emit_model(compiled), self.options)

    @staticmethod
    def _session(compiled: Graph, emitted: EmittedModel, options: ort.SessionOptions,
                 ) -> _Entry:
        session = ort.InferenceSession(emitted.model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        entry = _Entry(compiled, emitted, session, session.io_binding())
        for state_name, value in compiled.updates:
            if value.type.is_static:  # a buffer ORT writes into, then copied to the state
                buffer = np.empty(value.type.shape, numpy_dtype(value.type.dtype))
                entry.buffers[state_name] = buffer
                entry.buffer_values[state_name] = ort.OrtValue.ortvalue_from_numpy(buffer)
        entry.outputs = tuple(emitted.outputs)
        entry.specs = tuple((numpy_dtype(v.type.dtype), v.type.shape) for v in compiled.inputs)
        return entry

    def profile(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                repeats: int = 10, warmup: int = 2) -> profiling.Profile:
        """Per node of kiln's optimized graph, the median over `repeats` runs (after
        `warmup`) of the kernel times onnxruntime's own profiler records for the ONNX nodes
        lowered from it (a node ORT fused into another is timed in that one; a node ORT
        inserted itself, such as a layout change, gets a row of its own). The runs use a
        second session with profiling on, over copies of the state the entry point updates:
        the executable's state does not change; timed_seconds is the median of ORT's
        recorded runs."""
        profiling.check_repeats(repeats, warmup)
        graph = profiling.entry_graph(self.graphs, entry)
        e = self._entries[entry]
        state = profiling.state_copy(graph, self.state)
        plain = self._over(entry, graph, self._session(e.graph, e.emitted, self.options), state)
        call_seconds = profiling.time_calls(lambda: plain.run(entry, inputs), repeats, warmup)
        with tempfile.TemporaryDirectory(prefix="kiln-profile-") as folder:
            options = session_options(self.options.intra_op_num_threads,
                                      self.options.graph_optimization_level)
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(folder, "ort")
            timed = self._over(entry, graph, self._session(e.graph, e.emitted, options),
                               state)
            for _ in range(warmup + repeats):
                timed.run(entry, inputs)
            with open(timed._entries[entry].session.end_profiling()) as f:
                events = json.load(f)
        runs, extra, totals = _node_seconds(events, e.emitted.origins, len(e.graph.nodes),
                                            repeats)
        nodes = profiling.node_rows(e.graph.nodes, runs[:, :len(e.graph.nodes)])
        for k, (name, op) in enumerate(extra):
            nodes.append(profiling.NodeTime(-1, op, (), f"(onnxruntime) {name}",
                                            float(np.median(runs[:, len(e.graph.nodes) + k]))))
        return profiling.Profile(self.backend, entry, graph.name, "optimized",
                                 profiling.input_summary(graph, inputs), repeats, call_seconds,
                                 float(np.median(totals)), nodes)

    def _over(self, name: str, graph: Graph, entry: _Entry, state: dict[str, np.ndarray],
              ) -> OnnxRuntimeExecutable:
        """An executable of one entry already built, over other state (a profile's)."""
        exe = type(self).__new__(type(self))
        exe.graphs, exe.state, exe._entries = {name: graph}, state, {name: entry}
        exe.options, exe.compile_options = self.options, self.compile_options
        return exe

    @staticmethod
    def _bind_outputs(entry: _Entry) -> None:
        """Bind the new state to its buffers and let ORT allocate the other outputs. Rebound
        whenever a symbol's size changes: ORT keeps the outputs it allocated for the next run
        and refuses them at another batch size."""
        binding, emitted = entry.binding, entry.emitted
        binding.clear_binding_outputs()
        for state_name, _ in entry.graph.updates:
            name = emitted.updates[state_name]
            if state_name in entry.buffer_values:
                binding.bind_ortvalue_output(name, entry.buffer_values[state_name])
            else:
                binding.bind_output(name)
        for name in entry.outputs:
            binding.bind_output(emitted.outputs[name])

    def _bind_state(self, entry: _Entry) -> None:
        """(Re)bind each state array whose identity changed since the last call."""
        for value in entry.graph.state:
            array = self.state.get(value.name)
            if array is None:
                raise KilnValueError(f"@{entry.graph.name}: no value given for state "
                                     f"%{value.name}")
            if entry.state_bound.get(value.name) is array:
                continue
            bind_dims([value], [array], f"@{entry.graph.name}")
            if not array.flags.c_contiguous:
                raise KilnValueError(f"@{entry.graph.name}: state %{value.name} must be a "
                                     f"C-contiguous array (it is updated in place)")
            entry.binding.bind_ortvalue_input(value.name,
                                              ort.OrtValue.ortvalue_from_numpy(array))
            entry.state_bound[value.name] = array

    def run(self, entry: str, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
            ) -> dict[str, np.ndarray]:
        if entry not in self._entries:
            raise KilnValueError(f"no entry point {entry!r}; expected one of "
                                 f"{sorted(self._entries)}")
        e = self._entries[entry]
        graph = e.graph
        if isinstance(inputs, dict) or isinstance(inputs, Mapping):  # dict: no slow ABC check
            missing = [v.name for v in graph.inputs if v.name not in inputs]
            if missing:
                raise KilnValueError(f"@{graph.name}: no value given for input %{missing[0]}")
            arrays = [np.asarray(inputs[v.name]) for v in graph.inputs]
        else:
            arrays = [np.asarray(a) for a in inputs]
            if len(arrays) != len(graph.inputs):
                raise KilnValueError(f"@{graph.name}: expected {len(graph.inputs)} inputs. "
                                     f"Received: {len(arrays)}")
        dims = _symbol_sizes(e, arrays)
        if dims != e.dims:
            self._bind_outputs(e)
            e.dims = dims
        for value, array in zip(graph.inputs, arrays, strict=True):
            e.binding.bind_cpu_input(value.name, np.require(array, requirements="C"))
        self._bind_state(e)
        try:
            e.session.run_with_iobinding(e.binding)
        except _ORT_ERRORS as err:
            raise KilnValueError(f"@{graph.name}: onnxruntime failed: {err}") from None
        if not graph.updates:  # copies every output at once: the fast path of inference
            return dict(zip(e.outputs, e.binding.copy_outputs_to_cpu(), strict=True))
        results = e.binding.get_outputs()
        n_updates = len(graph.updates)
        for (name, _), result in zip(graph.updates, results[:n_updates], strict=True):
            buffer = e.buffers.get(name)
            np.copyto(self.state[name], buffer if buffer is not None else result.numpy())
        # .numpy() views memory ORT reuses on the next run: the caller gets copies.
        return {name: np.array(result.numpy()) for name, result
                in zip(e.outputs, results[n_updates:], strict=True)}


def _node_seconds(events: list[dict], origins: Mapping[str, int], count: int, repeats: int,
                  ) -> tuple[np.ndarray, list[tuple[str, str]], list[float]]:
    """Seconds per run (the last `repeats` in ORT's trace) and per kiln node (`count`), then
    per ONNX node that no kiln node accounts for (listed as (name, op)), and each run's
    whole duration."""
    runs = sorted((e for e in events if e.get("cat") == "Session"
                   and e.get("name") == "model_run"), key=lambda e: e["ts"])[-repeats:]
    extra: dict[str, int] = {}
    extra_ops: list[tuple[str, str]] = []
    sums = [dict[int, float]() for _ in runs]
    starts = [r["ts"] for r in runs]
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        k = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if k < 0 or event["ts"] > runs[k]["ts"] + runs[k]["dur"]:
            continue  # a warm-up run's
        name = event["name"].removesuffix("_kernel_time")
        index = _origin(name, origins)
        if index == -1:
            continue  # inside a Scan body: its Scan node's time holds it
        if index is None:
            if name not in extra:
                extra[name] = count + len(extra)
                extra_ops.append((name, event.get("args", {}).get("op_name", "?")))
            index = extra[name]
        sums[k][index] = sums[k].get(index, 0.0) + event["dur"] * 1e-6
    table = np.zeros((len(runs), count + len(extra)))
    for k, found in enumerate(sums):
        for index, seconds in found.items():
            table[k, index] = seconds
    return table, extra_ops, [r["dur"] * 1e-6 for r in runs]


def _origin(name: str, origins: Mapping[str, int]) -> int | None:
    """The kiln node an ORT node's name comes from: the ONNX node of that name, or for a
    node ORT rewrote (named after the node it replaced, then "/" or "_": MatMulAddFusion,
    MaxPool_nchwc), the longest ONNX node name it starts with."""
    if name in origins:
        return origins[name]
    best = None
    for known, index in origins.items():
        if (name.startswith(known) and name[len(known)] in "/_"
                and (best is None or len(known) > len(best[0]))):
            best = (known, index)
    return best[1] if best is not None else None


def _symbol_sizes(entry: _Entry, arrays: Sequence[np.ndarray]) -> dict[str, int]:
    """Check the inputs' dtypes and shapes (a fast path of reference.bind_dims, which gives
    the error on a mismatch) and return each symbol's size."""
    dims: dict[str, int] = {}
    for (dtype, shape), array in zip(entry.specs, arrays, strict=True):
        ok = array.dtype == dtype and array.ndim == len(shape)
        for declared, actual in zip(shape, array.shape) if ok else ():
            if declared.__class__ is int:
                ok = declared == actual
            else:
                ok = dims.setdefault(declared, actual) == actual
            if not ok:
                break
        if not ok:
            bind_dims(entry.graph.inputs, arrays, f"@{entry.graph.name}")  # raises the error
            raise AssertionError("bind_dims accepted what the fast check refused")
    return dims
