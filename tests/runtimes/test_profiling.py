"""Profiles of entry points on every CPU backend (kiln/runtimes/profiling.py and each
executable's `profile`): a row for every node of the graph that ran, rows that add up to the
timed calls, the executable's state untouched, a slow node found slow; the numba timed driver
is the plain one with clock reads; onnxruntime's trace mapped back to kiln's nodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kiln.compiler.codegen.numba import generate_driver
from kiln.ir import GraphBuilder, KilnValueError, TensorType
from kiln.ir.training import RMSprop
from kiln.runtimes import create_executable
from kiln.runtimes.numba.kernels import clock
from kiln.runtimes.onnxruntime.executable import _node_seconds, _origin
from kiln.runtimes.profiling import BACKENDS
from tests.models import convnet, lstm, mlp

MODELS = {"mlp": mlp, "convnet": convnet, "lstm": lstm}


def _train(model_name: str, backend: str):  # noqa: ANN202
    model, opt = MODELS[model_name](), RMSprop(0.01)
    state = model.initial_state(opt)
    exe = create_executable(backend, {"train_step": model.train_step(opt).graph,
                                      "predict": model.forward}, state)
    return model, exe, state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_a_profile_has_every_node_and_trains_nothing(model_name: str, backend: str) -> None:
    model, exe, state = _train(model_name, backend)
    feed = {"x": model.x[:16], "y": model.y[:16]}
    exe.run("train_step", feed)
    before = {k: v.copy() for k, v in state.items()}
    arrays = dict(state)
    profile = exe.profile("train_step", feed, repeats=3, warmup=1)
    for k in state:  # the same arrays, with the same values
        assert state[k] is arrays[k]
        np.testing.assert_array_equal(state[k], before[k], err_msg=k)
    graph = (exe.graphs["train_step"] if backend == "reference"
             else exe.optimized("train_step"))
    assert profile.stage == ("input" if backend == "reference" else "optimized")
    node_rows = [row for row in profile.nodes if row.index >= 0]
    assert [row.index for row in node_rows] == list(range(len(graph.nodes)))
    assert [row.outputs for row in node_rows] == [tuple(v.name for v in n.outputs)
                                                  for n in graph.nodes]
    assert all(row.seconds >= 0 for row in profile.nodes)
    assert profile.call_seconds > 0 and profile.timed_seconds > 0
    assert profile.inputs == {"x": (model.x[:16].shape, str(model.x.dtype)),
                              "y": (model.y[:16].shape, str(model.y.dtype))}
    # Each row is a median of its own, so their sum need only be near the timed total.
    assert sum(row.seconds for row in profile.nodes) <= 3 * profile.timed_seconds
    assert sum(n for _, n, _ in profile.by_op()) == len(profile.nodes)
    text = profile.table(top=5)
    assert text.startswith(f"profile of train_step ({backend}, ")
    assert f"({len(profile.nodes) - 5} more rows)" in text
    for op, _, _ in profile.by_op():
        assert op in text
    data = json.loads(json.dumps(profile.as_dict()))
    assert len(data["nodes"]) == len(profile.nodes) and data["repeats"] == 3
    # The executable still trains from the state it had.
    ref = create_executable("reference", {"train_step": exe.graphs["train_step"]},
                            {k: v.copy() for k, v in before.items()})
    want = ref.run("train_step", feed)
    got = exe.run("train_step", feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def _gemm_then_add() -> object:
    b = GraphBuilder("slow_and_fast")
    a = b.input("a", TensorType((512, 512), "float32"))
    c = b.input("c", TensorType((), "float32"))
    big = b.op("matmul", a, a)
    small = b.op("add", c, c)
    b.output(big, "big")
    b.output(small, "small")
    return b.build()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_slow_node_is_the_slow_row(backend: str) -> None:
    graph = _gemm_then_add()
    exe = create_executable(backend, {"f": graph}, {})
    feed = {"a": np.ones((512, 512), np.float32), "c": np.array(1.0, np.float32)}
    profile = exe.profile("f", feed, repeats=5)
    ops = {row.op: row.seconds for row in profile.nodes if row.index >= 0}
    # A 512^3 GEMM against a scalar add: a thousandfold apart at least.
    assert max(ops.items(), key=lambda item: item[1])[0] in ("matmul", "fused:gemm")


def test_the_timed_driver_is_the_plain_one_with_clock_reads() -> None:
    model, opt = lstm(), RMSprop(0.01)
    exe = create_executable("numba", {"train_step": model.train_step(opt).graph}, {})
    graph = exe.optimized("train_step")
    plain, timed = generate_driver(graph), generate_driver(graph, timed=True)
    ticks = timed.constants[-1]
    assert ticks.dtype == np.int64 and ticks.shape == (2 * (len(graph.nodes) + 2),)
    assert len(timed.constants) == len(plain.constants) + 1
    lines = [line for line in timed.source.splitlines() if "K.tick(" not in line]
    assert sum("K.tick(" in line for line in timed.source.splitlines()) == len(graph.nodes) + 2
    stripped = "\n".join(lines).replace(", ticks, clock,", ",")
    assert stripped.splitlines() == plain.source.splitlines()


@pytest.mark.skipif(not clock.AVAILABLE, reason="no clock_gettime")
def test_the_clock_reads_time_monotonic() -> None:
    import time

    from numba import njit

    @njit
    def read(gettime, ticks: np.ndarray) -> None:  # noqa: ANN001
        clock.tick(gettime, ticks, 0)
        clock.tick(gettime, ticks, 1)

    ticks = np.zeros(4, np.int64)
    before = time.monotonic_ns()
    read(clock.GETTIME, ticks)
    after = time.monotonic_ns()
    ns = clock.nanoseconds(ticks)
    assert before <= ns[0] <= ns[1] <= after


def test_bad_arguments_are_refused() -> None:
    model, exe, _ = _train("mlp", "numba")
    feed = {"x": model.x[:4], "y": model.y[:4]}
    with pytest.raises(KilnValueError, match="repeats=0"):
        exe.profile("train_step", feed, repeats=0)
    with pytest.raises(KilnValueError, match="warmup=-1"):
        exe.profile("train_step", feed, warmup=-1)
    with pytest.raises(KilnValueError, match="no entry point 'fit'"):
        exe.profile("fit", feed)
    for backend in ("reference", "onnxruntime"):
        _, other, _ = _train("mlp", backend)
        with pytest.raises(KilnValueError, match="no entry point 'fit'"):
            other.profile("fit", feed)


def test_onnxruntime_names_map_back_to_kiln_nodes() -> None:
    origins = {"dense.matmul/MatMul": 0, "dense.add/Add": 1, "pool/MaxPool": 2,
               "pool/MaxPool.1": 3, "body/Mul": -1}
    assert _origin("dense.add/Add", origins) == 1
    assert _origin("dense.matmul/MatMul/MatMulAddFusion", origins) == 0
    assert _origin("pool/MaxPool_nchwc", origins) == 2
    assert _origin("pool/MaxPool.1", origins) == 3
    assert _origin("ReorderInput", origins) is None
    assert _origin("body/Mul", origins) == -1


def test_onnxruntime_trace_keeps_the_last_runs_and_skips_bodies() -> None:
    def node(name: str, ts: int, dur: int) -> dict:
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": name.split("/")[-1]}}

    def run(ts: int, dur: int) -> dict:
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    origins = {"a/MatMul": 0, "b/Scan": 1, "body/Add": -1}
    events = [run(0, 100), node("a/MatMul", 10, 50),  # a warm-up run
              run(200, 100), node("a/MatMul", 210, 20), node("b/Scan", 240, 30),
              node("body/Add", 245, 10), node("ReorderOutput", 280, 5),
              run(400, 100), node("a/MatMul", 410, 40), node("b/Scan", 460, 10),
              {"cat": "Node", "name": "a/MatMul_fence_before", "ts": 405, "dur": 1}]
    table, extra, totals = _node_seconds(events, origins, 2, repeats=2)
    assert extra == [("ReorderOutput", "ReorderOutput")]
    np.testing.assert_allclose(totals, [100e-6, 100e-6])
    np.testing.assert_allclose(table, [[20e-6, 30e-6, 5e-6], [40e-6, 10e-6, 0.0]])
