"""Every loss and metric of kiln.ir.training on every CPU backend against the reference
runtime: one train step with a head per loss and every metric (tests/models.py), over
several steps and two batch sizes (the numba-cuda backend runs it under the simulator,
tests/runtimes/numba_cuda/simulated/test_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir.training import METRICS
from kiln.ir.training import summed_metrics as sm
from kiln.runtimes import create_executable
from kiln.runtimes.reference import ReferenceExecutable
from tests.models import METRIC_TARGETS, SUMMED_TARGETS, losses_and_metrics


def test_the_step_covers_every_metric() -> None:
    assert set(METRIC_TARGETS) == set(METRICS)
    builders = {getattr(sm, name) for name in dir(sm) if name.endswith("_statistics")}
    assert {fn for _, fn, _, _ in SUMMED_TARGETS.values()} == builders


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_every_loss_and_metric_matches_the_reference(backend: str) -> None:
    step, state, feed = losses_and_metrics()
    ref_state = {k: v.copy() for k, v in state.items()}
    ref = ReferenceExecutable({"train_step": step.graph}, ref_state)
    ex = create_executable(backend, {"train_step": step.graph}, state)
    start = 0
    for size in (8, 8, 5):  # a short batch: N is symbolic
        batch = {k: v[start:start + size] for k, v in feed.items()}
        start += size
        got, want = ex.run("train_step", batch), ref.run("train_step", batch)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{backend} output {name}")
        for name in ref_state:
            np.testing.assert_allclose(state[name], ref_state[name], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{backend} state {name}")
