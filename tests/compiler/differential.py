"""Differential testing of passes: a graph and its rewritten form must compute the same
outputs and the same new state on the reference runtime.

Two sources of graphs: `random_graphs()`, a hypothesis strategy of small graphs mixing
elementwise, reduce, shape and matmul ops over a few inputs (and the patterns each pass looks
for: constant arithmetic, x*1, neg(neg(x)), transpose and reshape chains, duplicates, dead
values, log(softmax)), and `train_step_case(name)`, the train steps of the MLP, convnet and
LSTM of tests/models.py with a batch of data and their initial state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from kiln.ir import Graph, GraphBuilder, TensorType, Value, parse, verify
from kiln.ir.training import RMSprop
from kiln.ir.types import broadcast_shapes
from kiln.runtimes.reference import run_graph
from tests.models import convnet, lstm, mlp

# float32 graphs; the passes are exact but for the stable forms of simplify (log_softmax for
# log(softmax)), which round differently in the last bits.
RTOL = 1e-5
ATOL = 1e-6
BATCH = 2  # the size bound to the symbol N in random graphs


@dataclass
class Case:
    graph: Graph
    inputs: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)


def run(graph: Graph, case: Case) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return run_graph(graph, case.inputs, {k: v.copy() for k, v in case.state.items()})


def assert_same_results(before: Graph, after: Graph, case: Case, rtol: float = RTOL,
                        atol: float = ATOL) -> None:
    """Outputs and new state of `after` match those of `before` (same names, dtypes, shapes,
    values within rtol/atol; NaN matches NaN)."""
    assert after.output_names == before.output_names
    assert [v.name for v in after.state] == [v.name for v in before.state]
    out0, state0 = run(before, case)
    out1, state1 = run(after, case)
    for kind, expected, got in (("output", out0, out1), ("state", state0, state1)):
        assert expected.keys() == got.keys()
        for name in expected:
            a, b = expected[name], got[name]
            assert a.dtype == b.dtype and a.shape == b.shape, f"{kind} {name}"
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True,
                                       err_msg=f"{kind} {name}")


# -- the train steps of the test models ------------------------------------------------------
MODELS: dict[str, Callable] = {"mlp": mlp, "convnet": convnet, "lstm": lstm}


@functools.cache
def train_step_case(name: str, batch: int = 16) -> Case:
    model = MODELS[name]()
    optimizer = RMSprop(0.01)
    graph = model.train_step(optimizer).graph
    return Case(graph, {"x": model.x[:batch], "y": model.y[:batch]},
                model.initial_state(optimizer))


# -- random graphs ---------------------------------------------------------------------------
SHAPES = [(), (3,), (1, 3), (2, 3), ("N", 3), ("N", 1), (2, 1, 3), ("N", 2, 3)]
UNARY = ["neg", "abs", "tanh", "sigmoid", "relu", "square", "exp"]
BINARY = ["add", "sub", "mul", "maximum", "minimum", "div"]


class _Gen:
    """One random graph in the making: a builder and the pool of values made so far."""

    def __init__(self, draw: Callable, b: GraphBuilder):
        self.draw = draw
        self.b = b
        self.pool: list[Value] = []
        self.extra_inputs = 0

    def pick(self, ok: Callable[[Value], bool] = lambda v: True) -> Value | None:
        choices = [v for v in self.pool if ok(v)]
        return self.draw(st.sampled_from(choices)) if choices else None

    def constant(self, like: TensorType, number: float | None = None) -> Value:
        """A constant broadcasting with `like`: a scalar, a filled tensor or an array."""
        form = self.draw(st.sampled_from(["scalar", "filled", "array"]))
        value = number if number is not None else self.draw(st.sampled_from([0.5, 2.0, -1.5]))
        if form == "scalar":
            return self.b.constant(value, "float32")
        if form == "filled" or not like.is_static:
            return self.b.constant(value, "float32", shape=like.shape)
        shape = like.shape
        if number is not None:
            return self.b.constant(np.full(shape, number, np.float32))
        seed = self.draw(st.integers(0, 2**16))
        array = np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(np.float32)
        return self.b.constant(array) if shape else self.b.constant(float(array))


def _broadcasts(x: TensorType, y: TensorType) -> bool:
    return broadcast_shapes(x.shape, y.shape) is not None


def _step(g: _Gen, kind: str) -> Value | None:
    b, draw = g.b, g.draw
    x = g.pick()
    assert x is not None
    t = x.type
    if kind == "unary":
        return b.op(draw(st.sampled_from(UNARY)), x)
    if kind == "binary":
        y = g.pick(lambda v: _broadcasts(t, v.type)) if draw(st.booleans()) else g.constant(t)
        return b.op(draw(st.sampled_from(BINARY)), x, y)
    if kind == "identity":  # x*1, 1*x, x+0, 0+x, x-0, x/1
        op, number, swap = draw(st.sampled_from([("mul", 1.0, False), ("mul", 1.0, True),
                                                 ("add", 0.0, False), ("add", 0.0, True),
                                                 ("sub", 0.0, False), ("div", 1.0, False)]))
        c = g.constant(t, number)
        return b.op(op, c, x) if swap else b.op(op, x, c)
    if kind == "neg_neg":
        return b.neg(b.neg(x))
    if kind == "folding":  # arithmetic on constants alone, then used
        c = b.op(draw(st.sampled_from(["add", "mul", "maximum"])), g.constant(t), g.constant(t))
        return b.mul(x, b.exp(b.neg(c)))
    if kind == "reduce" and t.rank:
        axes = tuple(draw(st.sets(st.integers(0, t.rank - 1), min_size=1)))
        return b.op(draw(st.sampled_from(["sum", "mean", "max"])), x, axes=axes,
                    keepdims=draw(st.booleans()))
    if kind == "mean_by_size" and t.rank:  # sum / size: size folds over static axes
        axis = draw(st.integers(0, t.rank - 1))
        return b.div(b.sum(x, axes=(axis,), keepdims=True), b.size(x, axes=(axis,)))
    if kind == "transpose" and t.rank >= 2:
        perm = tuple(draw(st.permutations(range(t.rank))))
        y = b.transpose(x, perm=perm)
        if draw(st.booleans()):
            y = b.transpose(y, perm=tuple(draw(st.permutations(range(t.rank)))))
        return y
    if kind == "reshape" and t.rank and "N" not in t.shape[1:]:
        target = ("N", -1) if t.shape[0] == "N" else (-1,)
        y = b.reshape(x, shape=target)
        return b.reshape(y, shape=t.shape) if draw(st.booleans()) else y
    if kind == "broadcast":
        y = b.broadcast_to(b.expand_dims(x, axes=(0,)), shape=(2, *t.shape))
        return b.broadcast_to(y, shape=y.type.shape) if draw(st.booleans()) else y
    if kind == "cast":
        return b.cast(x, dtype="float32")
    if kind == "matmul" and t.rank >= 2 and isinstance(t.shape[-1], int):
        w = b.input(f"w{g.extra_inputs}", TensorType((t.shape[-1], 2), "float32"))
        g.extra_inputs += 1
        g.pool.append(w)
        return b.matmul(x, w)
    if kind == "duplicate" and b.nodes:
        node = draw(st.sampled_from(b.nodes))
        if node.body is None and len(node.outputs) == 1:
            return b.op(node.op, *node.inputs, **node.attr)
    if kind == "log_softmax" and t.rank:
        return b.log(b.softmax(b.tanh(x), axis=-1))
    return None


KINDS = ["unary", "binary", "identity", "neg_neg", "folding", "reduce", "mean_by_size",
         "transpose", "reshape", "broadcast", "cast", "matmul", "duplicate", "log_softmax"]


@st.composite
def random_graphs(draw: Callable, max_steps: int = 10) -> Case:
    """A small float32 graph, its inputs (N bound to BATCH) and, sometimes, state updated."""
    b = GraphBuilder("random")
    g = _Gen(draw, b)
    for i in range(draw(st.integers(1, 3))):
        g.pool.append(b.input(f"x{i}", TensorType(draw(st.sampled_from(SHAPES)), "float32")))
    state = None
    if draw(st.booleans()):
        state = b.state("s", TensorType(draw(st.sampled_from(SHAPES)), "float32"))
        g.pool.append(state)
    for _ in range(draw(st.integers(1, max_steps))):
        value = _step(g, draw(st.sampled_from(KINDS)))
        if value is not None:
            g.pool.append(value)
    outputs = [g.pool[-1], *draw(st.lists(st.sampled_from(g.pool), max_size=2))]
    for i, v in enumerate(outputs):
        b.output(v, f"out{i}")
    if state is not None:
        b.update(state, g.pick(lambda v: v.type == state.type))
    graph = b.build()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def array(v: Value) -> np.ndarray:
        return rng.standard_normal(v.type.resolve({"N": BATCH})).astype(np.float32)

    return Case(graph, {v.name: array(v) for v in graph.inputs},
                {v.name: array(v) for v in graph.state})


def check_pass_on_random_graph(run_pass: Callable[[Graph], Graph], case: Case,
                               options: Mapping | None = None) -> Graph:
    """Run the pass, check results are preserved and a second run prints identically."""
    after = run_pass(case.graph, **(options or {}))
    verify(after)
    assert_same_results(case.graph, after, case)
    assert str(run_pass(case.graph, **(options or {}))) == str(after)
    return after


def check_fusion(fuse: Callable[[Graph], Graph], graph: Graph,
                 feed: Mapping[str, np.ndarray]) -> Graph:
    """The fused graph: verified, printing and parsing back equal, left alone by a second
    run of the pass, and computing bit for bit what `graph` computes on the reference
    runtime (a body runs the same NumPy calls); `feed` holds at least graph's inputs."""
    fused = fuse(graph)
    verify(fused)
    assert parse(str(fused)) == fused
    assert fuse(fused) == fused
    inputs = {v.name: feed[v.name] for v in graph.inputs}
    expected, got = run_graph(graph, inputs)[0], run_graph(fused, inputs)[0]
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    return fused


def op_counts(graph: Graph) -> dict[str, int]:
    """How many top-level nodes of each op the graph has."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts
