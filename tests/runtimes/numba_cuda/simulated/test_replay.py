"""Launch tapes (kiln/runtimes/numba_cuda/tape.py): the first call at given sizes records its
launches, later calls replay them without running a launcher, and give exactly what running
the launchers every call gives (KILN_CUDA_REPLAY=0), for the test models (scan included),
with prefetched batches, several batch sizes, host writes to the state, and device-side
index errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnValueError, TensorType
from kiln.ir.training import RMSprop
from kiln.runtimes.numba_cuda import NumbaCudaExecutable
from kiln.runtimes.reference import ReferenceExecutable
from tests.models import convnet, lstm, mlp
from tests.runtimes.numba_cuda.simulated.test_executable import _lookup_and_scatter

TINY = {
    "mlp": lambda: mlp(samples=16, features=6, hidden=8),
    "convnet": lambda: convnet(samples=16, size=6),
    "lstm": lambda: lstm(samples=16, steps=3, units=4),
}


def _count_launcher_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The op of every launcher run from now on (bodies of scans included)."""
    from kiln.runtimes.numba_cuda.ops import LAUNCHERS

    ran: list[str] = []

    def counting(op: str, real: Any) -> Any:
        def counted(*args: Any) -> None:
            ran.append(op)
            real(*args)

        return counted

    for op, launcher in list(LAUNCHERS.items()):
        monkeypatch.setitem(LAUNCHERS, op, counting(op, launcher))
    return ran


def _train(name: str, replay: bool, monkeypatch: pytest.MonkeyPatch,
           ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray], NumbaCudaExecutable]:
    """Six train steps: sizes 4, 4, 3, 4, 3, 3 (two arenas, each replayed), the batches of
    steps 1 to 3 prefetched (the other staging buffers, with plans of their own)."""
    monkeypatch.setenv("KILN_CUDA_REPLAY", "1" if replay else "0")
    model = TINY[name]()
    optimizer = RMSprop(0.01)
    state = model.initial_state(optimizer)
    exe = NumbaCudaExecutable({"train_step": model.train_step(optimizer).graph}, state)
    batches, start = [], 0
    for size in (4, 4, 3, 4, 3, 3):
        batches.append({"x": model.x[start:start + size], "y": model.y[start:start + size]})
        start = (start + size) % (len(model.x) - 4)
    outputs = []
    for k, batch in enumerate(batches):
        if k < 3:  # prefetch the batches of steps 1 to 3
            exe.prefetch("train_step", batches[k + 1])
        outputs.append(exe.run("train_step", batch))
    exe.sync_state()
    return outputs, state, exe


@pytest.mark.parametrize("name", sorted(TINY))
def test_replay_gives_exactly_what_launching_every_call_gives(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    replayed, state, exe = _train(name, True, monkeypatch)
    launched, state_launched, plain = _train(name, False, monkeypatch)
    plans = [s.plan for sets in exe.entries["train_step"].inputs.values() for s in sets]
    assert sum(p is not None for p in plans) == 4  # 2 sizes x 2 staging buffers
    assert all(s.plan is None for sets in plain.entries["train_step"].inputs.values()
               for s in sets)
    for k, (got, expected) in enumerate(zip(replayed, launched, strict=True)):
        assert sorted(got) == sorted(expected)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"step {k}: {key}")
    for key in state:
        np.testing.assert_array_equal(state[key], state_launched[key], err_msg=key)


def test_a_replayed_call_runs_no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    model = TINY["lstm"]()
    optimizer = RMSprop(0.01)
    state = model.initial_state(optimizer)
    ref_state = {k: v.copy() for k, v in state.items()}
    graph = model.train_step(optimizer).graph
    exe = NumbaCudaExecutable({"train_step": graph}, state)
    ref = ReferenceExecutable({"train_step": graph}, ref_state)
    batch = {"x": model.x[:4], "y": model.y[:4]}
    ran = _count_launcher_calls(monkeypatch)
    first = exe.run("train_step", batch)
    ref.run("train_step", batch)
    assert "scan" in ran and len(ran) > 20  # the body's nodes too, once per scan step
    ran.clear()
    for _ in range(2):
        got, expected = exe.run("train_step", batch), ref.run("train_step", batch)
        assert ran == []
        np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-4, atol=1e-5)
    (plan,) = [s.plan for s in exe.entries["train_step"].inputs[(("N", 4),)] if s.plan]
    assert len(plan.nodes) > 20
    assert first["loss"] != got["loss"]  # the state moved: the replays trained


def test_host_writes_to_the_state_reach_replayed_calls() -> None:
    """A replayed call reads the state's device arrays: values written by load_state (or
    noticed small ones, a learning rate) are what it computes with."""
    b = GraphBuilder("scale")
    x = b.input("x", TensorType(("N", 3), "float32"))
    w = b.state("w", TensorType((3, 3), "float32"))
    lr = b.state("lr", TensorType((), "float32"))
    b.output(b.matmul(x, w), "y")
    b.update(w, b.sub(w, b.mul(lr, b.matmul(b.transpose(x, perm=(1, 0)), x))))
    graph = b.build()
    state = {"w": np.eye(3, dtype=np.float32), "lr": np.array(0.01, np.float32)}
    exe = NumbaCudaExecutable({"scale": graph}, state)
    feed = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    for _ in range(2):
        exe.run("scale", feed)
    exe.sync_state()
    state["w"][...] = 2 * np.eye(3, dtype=np.float32)
    state["lr"][...] = 0.5  # small: noticed without load_state
    exe.load_state(["w"])
    ref_state = {k: v.copy() for k, v in state.items()}
    ref = ReferenceExecutable({"scale": graph}, ref_state)
    for _ in range(2):
        np.testing.assert_allclose(exe.run("scale", feed)["y"], ref.run("scale", feed)["y"],
                                   rtol=1e-6)
    exe.sync_state()
    np.testing.assert_allclose(state["w"], ref_state["w"], rtol=1e-6)


def test_a_replayed_call_flags_an_index_the_device_computed_out_of_range() -> None:
    graph = _lookup_and_scatter()
    state = {"w": np.arange(15, dtype=np.float32).reshape(5, 3)}
    exe = NumbaCudaExecutable({"lookup": graph}, state)
    good, bad = np.array([1, 2], np.int64), np.array([1, 3], np.int64)  # 3 + 2 = 5
    exe.run("lookup", {"ids": good})
    exe.run("lookup", {"ids": good})  # replayed
    with pytest.raises(KilnValueError, match=r"@lookup: gather \(%embedding\.gather\): "
                                             r"expected indices in \[0, 5\)"):
        exe.run("lookup", {"ids": bad})
    w = np.arange(15, dtype=np.float32).reshape(5, 3) * 0.5 ** 3  # three calls ran
    expected = ReferenceExecutable({"lookup": graph}, {"w": w}).run("lookup", {"ids": good})
    np.testing.assert_allclose(exe.run("lookup", {"ids": good})["counts"], expected["counts"])


def test_outputs_of_a_call_are_its_own_arrays() -> None:
    """Outputs come back through pinned buffers kept per batch size: each call returns
    copies, which the next call does not overwrite."""
    b = GraphBuilder("double")
    x = b.input("x", TensorType(("N", 3), "float32"))
    b.output(b.mul(x, 2.0), "y")
    exe = NumbaCudaExecutable({"double": b.build()}, {})
    ones = np.ones((2, 3), np.float32)
    first = exe.run("double", {"x": ones})["y"]
    second = exe.run("double", {"x": 3 * ones})["y"]
    np.testing.assert_array_equal(first, 2 * ones)
    np.testing.assert_array_equal(second, 6 * ones)
    assert not np.shares_memory(first, second)
