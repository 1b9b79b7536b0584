"""The GPU side of launch tapes, without a GPU: what tape._prepared relies on in numba-cuda
(its _Kernel packs arguments with _prepare_args and launches through cuda.core's `launch`),
and how it turns a launch into a prepared one, or declines (then the tape replays the
configured dispatcher). The replay itself is tested under the simulator (simulated/)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest

dispatcher = pytest.importorskip("numba.cuda.dispatcher")
cuda_core = pytest.importorskip("cuda.core")


def test_numba_cuda_launches_as_the_tape_assumes() -> None:
    """If a numba-cuda release changes this, tape._prepared must follow (or decline)."""
    kernel = dispatcher._Kernel
    assert callable(kernel._prepare_args)
    assert isinstance(inspect.getattr_static(kernel, "argument_types"), property)
    source = inspect.getsource(kernel.launch)
    assert "self._prepare_args(t, v, stream, retr, kernelargs)" in source
    assert "launch(stream, config, kernel, *kernelargs)" in source
    assert "cufunc = self._codelibrary.get_cufunc()" in source


class _Overload:
    """Stands in for a compiled numba-cuda _Kernel: packs each argument into two words."""

    def __init__(self, writeback: bool = False, debug: bool = False) -> None:
        self.argument_types = ("array", "int64")
        self.debug, self.extensions, self.cooperative = debug, [], False
        self.writeback = writeback
        self._codelibrary = SimpleNamespace(
            get_cufunc=lambda: SimpleNamespace(kernel="the CUfunction"))

    def _prepare_args(self, ty: str, val: Any, stream: Any, retr: list, packed: list) -> None:
        packed.extend((ty, val))
        if self.writeback:
            retr.append(lambda: None)


class _Dispatcher:
    def __init__(self, overload: _Overload) -> None:
        self.overloads = {(("typed", "a"), ("typed", 3)): overload}

    def typeof_pyval(self, value: Any) -> Any:
        return "typed", value


def _configured() -> Any:
    return SimpleNamespace(stream="core stream", griddim=(4, 1, 1), blockdim=(256, 1, 1),
                           sharedmem=0, pre_launch_callbacks=[])


def test_a_prepared_launch_hands_numbas_packing_to_cuda_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kiln.runtimes.numba_cuda.tape import _prepared

    launched = []
    monkeypatch.setattr(cuda_core, "launch", lambda *args: launched.append(args))
    step = _prepared(_Dispatcher(_Overload()), _configured(), ("a", 3))
    assert step is not None
    step()
    step()
    assert len(launched) == 2 and launched[0] == launched[1]
    stream, config, function, *packed = launched[0]
    assert (stream, function, packed) == ("core stream", "the CUfunction",
                                         ["array", "a", "int64", 3])
    assert (tuple(config.grid), tuple(config.block), config.shmem_size) == (
        (4, 1, 1), (256, 1, 1), 0)


@pytest.mark.parametrize("overload, args", [
    (_Overload(writeback=True), ("a", 3)),  # a host array numba would copy per launch
    (_Overload(debug=True), ("a", 3)),  # debug kernels read an error code after each launch
    (_Overload(), ("b", 3)),  # no overload of these types (numba converted an argument)
])
def test_a_launch_it_cannot_prepare_is_declined(overload: _Overload, args: tuple) -> None:
    from kiln.runtimes.numba_cuda.tape import _prepared

    assert _prepared(_Dispatcher(overload), _configured(), args) is None


class _FakeDriver:
    """cuda.bindings.driver's graph calls, logged; `refuse` names the one that fails."""

    class CUresult:
        CUDA_SUCCESS = 0

    class CUstreamCaptureMode:
        CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1

    def __init__(self, refuse: str = "") -> None:
        self.log: list[str] = []
        self.refuse = refuse

    def _answer(self, name: str, *extra: Any) -> tuple:
        self.log.append(name)
        return (999 if name == self.refuse else 0, *extra)

    def cuStreamBeginCapture(self, handle: int, mode: int) -> tuple:  # noqa: N802
        return self._answer("begin")

    def cuStreamEndCapture(self, handle: int) -> tuple:  # noqa: N802
        return self._answer("end", "graph")

    def cuGraphInstantiate(self, graph: str, flags: int) -> tuple:  # noqa: N802
        return self._answer("instantiate", "exec")

    def cuGraphLaunch(self, graph_exec: str, handle: int) -> tuple:  # noqa: N802
        return self._answer("launch")

    def cuGraphExecDestroy(self, graph_exec: str) -> None:  # noqa: N802
        self.log.append("destroy exec")

    def cuGraphDestroy(self, graph: str) -> None:  # noqa: N802
        self.log.append("destroy graph")


@pytest.mark.parametrize("refuse", ["", "begin", "end", "instantiate"])
def test_a_tape_replayed_twice_becomes_a_cuda_graph_unless_the_driver_refuses(
        refuse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import cuda.bindings

    from kiln.runtimes.numba_cuda.tape import Tape

    fake = _FakeDriver(refuse)
    monkeypatch.setattr(cuda.bindings, "driver", fake)
    monkeypatch.setenv("KILN_CUDA_GRAPHS", "1")
    ran: list[int] = []
    tape = Tape()
    tape.call(lambda: ran.append(0))
    tape.calls = 0  # as if it were a kernel launch (a tape with library calls is not captured)
    stream = SimpleNamespace(handle=7)
    for _ in range(4):
        tape.replay(stream)
    if not refuse:
        # recorded 1, replays 1 and 2 step by step, the capture runs the step once more
        # (captured, not executed on a GPU), replays 3 and 4 are graph launches
        assert len(ran) == 4 and tape.graph is not None and tape.capture_failed is None
        assert fake.log == ["begin", "end", "instantiate", "launch", "launch"]
        tape.graph = None
        assert fake.log[-2:] == ["destroy exec", "destroy graph"]
    else:
        assert tape.graph is None and refuse in tape.capture_failed
        assert len(ran) == 1 + 4 + (refuse != "begin")  # every replay ran its steps
        assert "launch" not in fake.log


def test_a_tape_with_library_calls_is_never_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    import cuda.bindings

    from kiln.runtimes.numba_cuda.tape import Tape

    fake = _FakeDriver()
    monkeypatch.setattr(cuda.bindings, "driver", fake)
    monkeypatch.setenv("KILN_CUDA_GRAPHS", "1")
    tape = Tape()
    tape.call(lambda: None)
    for _ in range(4):
        tape.replay(SimpleNamespace(handle=7))
    assert tape.graph is None and fake.log == []


class _Kernel:
    """Stands in for a dispatcher: kernel[grid, block, stream](*args) logs a configured launch."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __getitem__(self, config: tuple) -> Any:
        return lambda *args: self.log.append(("configured", args))


@pytest.mark.parametrize("fails", [False, True])
def test_a_prepared_launch_that_raises_on_its_first_replay_gives_way_to_the_configured_one(
        fails: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from kiln.runtimes.numba_cuda import tape as tape_module

    log: list = []

    def prepared_launch() -> None:
        if fails:
            raise TypeError("cuda.core wants another argument")
        log.append(("prepared",))

    monkeypatch.setattr(tape_module, "_prepared", lambda *_: prepared_launch)
    tape = tape_module.Tape()
    tape.launch(_Kernel(log), 1, 32, "stream", ("a",))
    tape.call(lambda: log.append(("library",)))
    tape.launch(_Kernel(log), 1, 32, "stream", ("b",))
    assert tape.prepared == 2 and len(log) == 3
    for _ in range(2):
        tape.replay("stream")
    replays = log[3:]
    if fails:  # each launch swapped for its configured launch, in order, nothing run twice
        assert replays == 2 * [("configured", ("a",)), ("library",), ("configured", ("b",))]
        assert tape.prepared == 0 and "TypeError: cuda.core wants" in tape.declined
    else:
        assert replays == 2 * [("prepared",), ("library",), ("prepared",)]
        assert tape.prepared == 2 and tape.declined is None
    assert tape.fallbacks == {}


def test_a_step_without_a_fallback_raises_from_the_first_replay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kiln.runtimes.numba_cuda import tape as tape_module

    monkeypatch.setattr(tape_module, "_prepared", lambda *_: lambda: None)
    tape = tape_module.Tape()
    tape.launch(_Kernel([]), 1, 32, "stream", ())
    recorded: list[int] = []

    def library_call() -> None:  # fine while recorded, fails when replayed
        if recorded:
            raise ZeroDivisionError("a library's own error")
        recorded.append(1)

    tape.call(library_call)
    with pytest.raises(ZeroDivisionError):  # a library call's own error is not swallowed
        tape.replay("stream")
