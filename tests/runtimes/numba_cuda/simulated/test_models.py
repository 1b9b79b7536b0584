"""The train steps of the test models (tests/models.py: MLP, convnet, LSTM with scan) on the
numba-cuda backend against the reference runtime, at tiny sizes (the simulator runs a few
thousand GPU threads a second), over several steps and two batch sizes; a step in steady
state allocates no device memory, and the transposes the GEMMs read are views; and the
convnet's forward, whose convolution, pooling, bias and relu are one fused conv; and every loss
and metric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kiln.ir.training import RMSprop
from kiln.runtimes.numba_cuda import NumbaCudaExecutable
from kiln.runtimes.reference import ReferenceExecutable
from tests.models import convnet, losses_and_metrics, lstm, mlp

# float32 state after several steps: the per-step differences of reductions compound through
# the optimizer, hence a looser tolerance than one op's (as the numba backend's tests).
STEP_TOL = {"rtol": 1e-4, "atol": 1e-5}
TINY = {
    "mlp": lambda: mlp(samples=16, features=6, hidden=8),
    "convnet": lambda: convnet(samples=16, size=6),
    "lstm": lambda: lstm(samples=16, steps=3, units=4),
}


# node kind -> how many of the optimized train step's nodes run as views (views.py): the
# transposes of the backward GEMMs and every reshape (the buffer plan keeps their operands
# alive while they are read): the convnet's flatten and its gradient, the expand_dims of
# the loss gradients.
VIEWS = {"mlp": {"transpose": 3, "reshape": 2}, "convnet": {"transpose": 2, "reshape": 4},
         "lstm": {"transpose": 4, "reshape": 2}}


def _count_device_allocations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every device (or pinned) array made from now on, by the name of the call."""
    from numba import cuda

    made: list[str] = []

    def counting(name: str, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return real(*args, **kwargs)

        return counted

    for name in ("device_array", "device_array_like", "to_device", "pinned_array"):
        monkeypatch.setattr(cuda, name, counting(name, getattr(cuda, name)))
    return made


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_steps_match_the_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = TINY[name]()
    optimizer = RMSprop(0.01)
    graph = model.train_step(optimizer).graph
    state = model.initial_state(optimizer)
    ref_state = {k: v.copy() for k, v in state.items()}
    gpu_state = {k: v.copy() for k, v in state.items()}
    arrays = dict(gpu_state)  # the very arrays sync_state must write into
    ref = ReferenceExecutable({"train_step": graph}, ref_state)
    exe = NumbaCudaExecutable({"train_step": graph}, gpu_state)
    views = exe.entries["train_step"].views
    assert {k: list(views.values()).count(k) for k in set(views.values())} == VIEWS[name]
    start = 0
    # A full batch, a short one (a second arena), then the short size again: that step
    # finds every buffer made already.
    for step, size in enumerate((4, 3, 3)):
        batch = {"x": model.x[start:start + size], "y": model.y[start:start + size]}
        start += size
        if step == 2:
            made, pooled = _count_device_allocations(monkeypatch), exe.pool.allocations
        expected, got = ref.run("train_step", batch), exe.run("train_step", batch)
        if step == 2:
            assert made == [] and exe.pool.allocations == pooled, made
            monkeypatch.undo()
        assert sorted(got) == sorted(expected)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], err_msg=f"step {step}: {key}",
                                       **STEP_TOL)
    for key in ref_state:  # lazy: the host arrays still hold the initial values
        np.testing.assert_array_equal(gpu_state[key], state[key], err_msg=key)
    exe.sync_state()
    for key in ref_state:
        assert gpu_state[key] is arrays[key]
        np.testing.assert_allclose(gpu_state[key], ref_state[key], err_msg=f"state {key}",
                                   **STEP_TOL)
    assert gpu_state["optimizer.iterations"] == 3
    assert len(exe.entries["train_step"].arenas) == 2


def test_the_convnet_forward_runs_its_fused_conv_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forward graph (what predict runs) optimizes to a fused conv (convolution,
    pooling, bias and relu), which runs as its parts' launches and matches the reference at
    two batch sizes; the second call at a size allocates no device memory."""
    model = TINY["convnet"]()
    exe = NumbaCudaExecutable({"predict": model.forward}, dict(model.params))
    fused = [n for n in exe.entries["predict"].optimized.nodes if n.op == "fused"]
    assert fused[0].attr["kind"] == "conv"
    ref = ReferenceExecutable({"predict": model.forward}, dict(model.params))
    made: list[str] = []
    for step, size in enumerate((5, 3, 3)):
        batch = {"x": model.x[:size]}
        if step == 2:
            made = _count_device_allocations(monkeypatch)
        expected, got = ref.run("predict", batch), exe.run("predict", batch)
        np.testing.assert_allclose(got["out"], expected["out"], rtol=1e-5, atol=1e-6)
    assert made == [], made


def test_every_loss_and_metric_matches_the_reference() -> None:
    """tests/models.py's step with a head per loss and every metric (the CPU backends run it
    in tests/runtimes/test_losses_metrics.py), at a full and a short batch."""
    step, state, feed = losses_and_metrics(samples=7, features=3)
    ref_state = {k: v.copy() for k, v in state.items()}
    ref = ReferenceExecutable({"train_step": step.graph}, ref_state)
    exe = NumbaCudaExecutable({"train_step": step.graph}, state)
    start = 0
    for size in (4, 3):
        batch = {k: v[start:start + size] for k, v in feed.items()}
        start += size
        got, want = exe.run("train_step", batch), ref.run("train_step", batch)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], **STEP_TOL, err_msg=name)
    exe.sync_state()
    for name in ref_state:
        np.testing.assert_allclose(state[name], ref_state[name], **STEP_TOL, err_msg=name)
