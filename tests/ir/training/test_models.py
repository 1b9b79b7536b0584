"""A 2-layer MLP, a small convnet and an LSTM written with scan train on the reference runtime
(the loss falls by at least half), and their whole-model gradients match finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, grad, parse
from kiln.ir.training import SGD, Adam, RMSprop
from kiln.runtimes.reference import ReferenceExecutable, run_graph
from tests.models import convnet, lstm, mlp

MODELS = {
    "mlp": (mlp, RMSprop(0.01), 40),
    "convnet": (convnet, Adam(0.01), 40),
    "lstm": (lstm, Adam(0.02), 60),
}


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_on_the_reference_runtime(name: str) -> None:
    make, optimizer, steps = MODELS[name]
    model = make()
    step = model.train_step(optimizer)
    assert parse(str(step.graph)) == step.graph
    runtime = ReferenceExecutable({"train_step": step.graph}, model.initial_state(optimizer))
    losses = []
    batch = 32
    for i in range(steps):
        lo = (i * batch) % len(model.x)
        out = runtime.run("train_step", {"x": model.x[lo:lo + batch], "y": model.y[lo:lo + batch]})
        losses.append(float(out["loss"]))
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last <= first / 2, f"{name}: loss went from {first:.4f} to {last:.4f}"
    assert int(runtime.state["optimizer.iterations"]) == steps
    # The last short batch runs through the same graph (symbolic batch).
    out = runtime.run("train_step", {"x": model.x[:5], "y": model.y[:5]})
    assert np.isfinite(out["loss"])


@pytest.mark.parametrize("name", MODELS)
def test_model_gradient_matches_finite_differences(name: str) -> None:
    make = MODELS[name][0]
    model = make(dtype="float64", samples=4)
    step = model.train_step(SGD(0.0))
    b = GraphBuilder("loss")
    env = {v.name: b.input(v.name, v.type) for v in step.graph.inputs}
    env.update({v.name: b.state(v.name, v.type) for v in step.graph.state})
    outs, _ = b.call(step.graph, env, env)
    b.output(outs["loss"], "loss")
    params = sorted(model.params)
    graph = grad(b.build(), "loss", params)
    state = model.initial_state(SGD(0.0))
    feed = {"x": model.x, "y": model.y}
    analytic = run_graph(graph, feed, state)[0]
    rng = np.random.default_rng(0)
    eps = 1e-6
    for p in params:
        flat = state[p].reshape(-1)
        for index in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            saved = flat[index]
            flat[index] = saved + eps
            plus = run_graph(graph, feed, state)[0]["loss"]
            flat[index] = saved - eps
            minus = run_graph(graph, feed, state)[0]["loss"]
            flat[index] = saved
            numeric = (plus - minus) / (2 * eps)
            got = analytic[f"grad.{p}"].reshape(-1)[index]
            np.testing.assert_allclose(got, numeric, rtol=1e-4, atol=1e-7,
                                       err_msg=f"{name}: d loss / d {p}[{index}]")
