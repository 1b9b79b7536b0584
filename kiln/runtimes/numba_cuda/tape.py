"""Launch tapes: the first call of an entry point at given sizes records every kernel launch,
device-to-device copy and library call its launchers make; later calls replay the tape
instead of running the launchers again.

What a call of the numba-cuda backend enqueues depends only on the sizes of its arrays (no
launcher reads device values on the host), and every array it touches — arena views, scratch,
state, scan buffers, uploaded constants, the batch's staging buffers — is the same device
memory on every call with those sizes. So the recorded launches, with their arguments, are
the call; replaying them skips the launchers' Python (views, grids, strides) and numba's
per-launch dispatch (typing each argument, choosing the overload, packing the arguments).

On a GPU a recorded kernel launch is prepared once: the overload numba chose, its arguments
packed by numba's own packing, the launch configuration; replay hands them straight to
cuda.core's `launch`. Anything numba-cuda does not offer in the expected shape (another
version) falls back to the configured dispatcher, which is what the simulator always uses;
so does a prepared launch that raises the first time it is replayed (a launch that raises
enqueued nothing, so the configured one takes its place and the replay goes on).
The tape holds a reference to every array it launches on, so replay never reads freed memory.

KILN_CUDA_REPLAY=0 turns replay off (every call runs the launchers), to compare.

KILN_CUDA_GRAPHS=1 (experimental, off by default: not yet run on a GPU) goes one step
further: a tape replayed twice is captured into a CUDA graph (stream capture through
cuda.bindings), and later replays launch the graph, one driver call for the whole tape.
Tapes holding library calls (cuBLAS through CuPy, which may allocate) are never captured; a
capture the driver refuses leaves the tape replaying step by step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from kiln.runtimes.numba_cuda.intrinsics import SIMULATOR


def replay_enabled() -> bool:
    return os.environ.get("KILN_CUDA_REPLAY", "1") != "0"


def graphs_enabled() -> bool:
    return not SIMULATOR and os.environ.get("KILN_CUDA_GRAPHS", "0") == "1"


class Tape:
    """Launches recorded while they run (`launch`, `copy`, `call`), replayed by `replay`."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], Any]] = []
        self.prepared = 0  # launches replayed through cuda.core directly (gpu_steps reports it)
        self.calls = 0  # library calls recorded (a tape with any is never captured)
        self.replays = 0
        self.graph: CudaGraph | None = None
        self.capture_failed: str | None = None  # why the driver refused a capture
        # Until the first replay gets through: per prepared step, the configured launch that
        # replaces it if it raises; and why one was replaced (gpu_steps reports it).
        self.fallbacks: dict[int, Callable[[], Any]] = {}
        self.declined: str | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def launch(self, kernel: Any, griddim: Any, blockdim: Any, stream: Any,
               args: Sequence[Any]) -> None:
        """Launch kernel[griddim, blockdim, stream](*args) now, and record it."""
        configured = kernel[griddim, blockdim, stream]
        configured(*args)
        # configured anew each time: the simulator's is the kernel itself
        fallback = partial(_configured_launch, kernel, griddim, blockdim, stream, args)
        step = None if SIMULATOR else _prepared(kernel, configured, args)
        if step is not None:
            self.fallbacks[len(self.steps)] = fallback
            self.prepared += 1
        self.steps.append(step or fallback)

    def copy(self, dst: Any, src: Any, stream: Any) -> None:
        """Copy the C-contiguous device array `src` into `dst` (same size, not empty) now, and
        record it."""
        dst.copy_to_device(src, stream=stream)
        step = None if SIMULATOR else _prepared_copy(dst, src, stream)
        self.steps.append(step or partial(dst.copy_to_device, src, stream=stream))

    def call(self, function: Callable[[], Any]) -> None:
        """Run `function` (it enqueues work on the call's stream) now, and record it."""
        function()
        self.steps.append(function)
        self.calls += 1

    def replay(self, stream: Any) -> None:
        """Enqueue the recorded launches again on `stream` (the recording's)."""
        graphs = graphs_enabled()
        if self.graph is not None and graphs:
            self.graph.launch(stream)
            return
        if self.fallbacks:
            self._first_replay()
        else:
            for step in self.steps:
                step()
        self.replays += 1
        if (self.replays >= 2 and graphs and self.graph is None and not self.calls
                and self.capture_failed is None and self.steps):
            try:
                self.graph = CudaGraph(self.steps, stream)
            except Exception as err:  # noqa: BLE001 - any refusal: replay step by step
                self.capture_failed = f"{type(err).__name__}: {err}"

    def _first_replay(self) -> None:
        """Replay, swapping a prepared launch that raises for its configured launch."""
        steps, start = self.steps, 0
        while True:
            try:
                for i in range(start, len(steps)):
                    start = i
                    steps[i]()
                break
            except Exception as err:
                fallback = self.fallbacks.pop(start, None)
                if fallback is None:
                    raise
                steps[start] = fallback
                self.prepared -= 1
                self.declined = f"{type(err).__name__}: {err}"
        self.fallbacks = {}


class CaptureError(RuntimeError):
    pass


class CudaGraph:
    """The steps of a tape captured from `stream` into an instantiated CUDA graph."""

    def __init__(self, steps: Sequence[Callable[[], Any]], stream: Any) -> None:
        from cuda.bindings import driver as cu

        self._cu = cu
        handle = int(stream.handle)
        self._check(cu.cuStreamBeginCapture(
            handle, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "begin")
        try:
            for step in steps:
                step()
        finally:
            err, graph = cu.cuStreamEndCapture(handle)
        self._check((err,), "end")
        self.graph = graph
        err, self.exec = cu.cuGraphInstantiate(graph, 0)
        self._check((err,), "instantiate")

    def _check(self, result: tuple, what: str) -> None:
        if result[0] != self._cu.CUresult.CUDA_SUCCESS:
            raise CaptureError(f"CUDA graph {what}: {result[0]!r}")

    def launch(self, stream: Any) -> None:
        self._check(self._cu.cuGraphLaunch(self.exec, int(stream.handle)), "launch")

    def __del__(self) -> None:
        try:
            self._cu.cuGraphExecDestroy(self.exec)
            self._cu.cuGraphDestroy(self.graph)
        except Exception:  # noqa: BLE001 - half made, or the driver already shut down
            pass


def _configured_launch(kernel: Any, griddim: Any, blockdim: Any, stream: Any,
                       args: Sequence[Any]) -> None:
    kernel[griddim, blockdim, stream](*args)


def _prepared(kernel: Any, configured: Any, args: Sequence[Any]) -> Callable[[], Any] | None:
    """A zero-argument launch of the overload `configured(*args)` just ran, with its
    arguments packed once, as numba-cuda's _Kernel.launch packs them; None where this
    numba-cuda does not have the pieces (the caller then replays the configured call)."""
    try:
        from cuda.core import LaunchConfig, launch
        from numba.cuda._compat import CUDA_CORE_GE_1_0

        overload = kernel.overloads.get(tuple(kernel.typeof_pyval(a) for a in args))
        if overload is None or overload.debug or overload.extensions \
                or getattr(configured, "pre_launch_callbacks", None):
            return None
        stream = configured.stream
        packed: list[Any] = []
        writebacks: list[Any] = []
        for t, v in zip(overload.argument_types, args, strict=True):
            overload._prepare_args(t, v, stream, writebacks, packed)
        if writebacks:  # a host array was passed: numba copies it per launch
            return None
        cooperative = ({"is_cooperative": overload.cooperative} if CUDA_CORE_GE_1_0
                       else {"cooperative_launch": overload.cooperative})
        config = LaunchConfig(grid=configured.griddim, block=configured.blockdim,
                              shmem_size=configured.sharedmem, **cooperative)
        function = overload._codelibrary.get_cufunc().kernel
    except (ImportError, AttributeError, TypeError, KeyError):
        return None
    return partial(launch, stream, config, function, *packed)


def _prepared_copy(dst: Any, src: Any, stream: Any) -> Callable[[], Any] | None:
    """The driver's device-to-device copy of `src` into `dst`, without copy_to_device's
    per-call checks (done once, by the recorded copy)."""
    try:
        from numba.cuda.cudadrv import driver

        return partial(driver.device_to_device, dst, src, dst.alloc_size, stream=stream)
    except (ImportError, AttributeError):
        return None
