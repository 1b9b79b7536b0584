"""fuse_elementwise (with fuse_gemm_epilogue before it, as in the pipeline): kernel counts on
the train steps, bit-identical results on the reference runtime, convex regions, reduction
prologues and epilogues, scalar constants moved inside, names kept, determinism.

A *kernel* (kiln.compiler.passes.fuse_elementwise.count_kernels) is a loop over tensor
elements that a backend launches: every `fused` node, plus every other node except
constants, `size` and the view ops (reshape, expand_dims, squeeze, broadcast_to, transpose);
a scan counts the kernels of its body, once.

Tolerance: none. A fused node's reference runs its body, the region's own nodes with the
same NumPy calls in the same order, so outputs and new state are bit-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.compiler.passes import PASSES
from kiln.compiler.passes.fuse_elementwise import count_kernels, fuse_elementwise
from kiln.compiler.passes.fuse_gemm_epilogue import fuse_gemm_epilogue
from kiln.ir import Graph, GraphBuilder, Value, f32, parse, verify
from kiln.ir.types import broadcast_shapes
from kiln.runtimes.reference import run_graph
from tests.compiler.differential import Case, random_graphs, train_step_case

SETTINGS = settings(max_examples=40, deadline=None)
ROOT = Path(__file__).resolve().parents[2]


def fuse(graph: Graph) -> Graph:
    """The fusion part of the pipeline: GEMM epilogues first, then elementwise/reduction."""
    return fuse_elementwise(fuse_gemm_epilogue(graph))


def fused_nodes(graph: Graph) -> list:
    nested = [m for n in graph.nodes if n.body is not None and n.op != "fused"
              for m in fused_nodes(n.body)]
    return [n for n in graph.nodes if n.op == "fused"] + nested


def assert_identical_results(before: Graph, after: Graph, case: Case) -> None:
    out0, state0 = run_graph(before, case.inputs, {k: v.copy() for k, v in case.state.items()})
    out1, state1 = run_graph(after, case.inputs, {k: v.copy() for k, v in case.state.items()})
    assert out0.keys() == out1.keys() and state0.keys() == state1.keys()
    for name in out0:
        np.testing.assert_array_equal(out1[name], out0[name], err_msg=f"output {name}")
        assert out1[name].dtype == out0[name].dtype
    for name in state0:
        np.testing.assert_array_equal(state1[name], state0[name], err_msg=f"state {name}")


def check_fusion(graph: Graph) -> Graph:
    """Fuse, and check what holds for every graph: it verifies, round-trips through text,
    is a fixed point (fusing again changes nothing) and prints the same every run."""
    fused = fuse(graph)
    verify(fused)
    assert parse(str(fused)) == fused
    assert fuse(fused) == fused
    assert str(fuse(graph)) == str(fused)
    return fused


# -- the train steps -----------------------------------------------------------------------------
def test_mlp_train_step_kernel_count() -> None:
    """Dense(32, relu) -> Dense(3, softmax) with RMSprop: 84 kernels become 21.

    The 21: two gemm kernels (matmul+bias+relu, matmul+bias), softmax, one_hot, the sum of
    softmax, argmax, the accuracy (cast, equal, cast, mean), the loss (div, clip, log, mul,
    sum, neg, and the clip's gradient mask), its mean, the mean's gradient scale, one neg,
    four reduction kernels of the backward pass (the bias gradients each fused with their
    RMSprop update), three gradient matmuls, the step counter, and one elementwise RMSprop
    kernel per weight matrix.
    """
    graph = train_step_case("mlp").graph
    fused = check_fusion(graph)
    print(f"\nMLP train step: {count_kernels(graph)} kernels before fusion, "
          f"{count_kernels(fused)} after")
    assert count_kernels(graph) == 84
    assert count_kernels(fused) == 21
    kinds = [n.attr["kind"] for n in fused_nodes(fused)]
    assert kinds.count("gemm") == 2 and kinds.count("elementwise") == 2
    assert kinds.count("reduction") == 6


@pytest.mark.parametrize("name", ["mlp", "convnet", "lstm"])
def test_fusion_preserves_train_step_results(name: str) -> None:
    case = train_step_case(name)
    fused = check_fusion(case.graph)
    before, after = count_kernels(case.graph), count_kernels(fused)
    print(f"\n{name} train step: {before} kernels before fusion, {after} after")
    assert after < before / 2
    assert_identical_results(case.graph, fused, case)


def test_lstm_cell_is_fused_inside_its_scan() -> None:
    fused = fuse(train_step_case("lstm").graph)
    forward_scan = next(n for n in fused.nodes if n.op == "scan")
    kinds = [n.attr["kind"] for n in forward_scan.body.nodes if n.op == "fused"]
    assert kinds == ["gemm", "elementwise"]  # xw + h @ U, then every gate in one loop


def test_names_and_scalar_constants_go_inside() -> None:
    """Body values keep the user's layer names; scalar constants read only by regions move
    into their bodies and leave the top level."""
    graph = train_step_case("mlp").graph
    fused = fuse(graph)
    update = next(n for n in fused.nodes if n.op == "fused"
                  and "rmsprop.dense.kernel.sub" in [o.name for o in n.outputs])
    names = [o.name for n in update.body.nodes for o in n.outputs]
    assert "rmsprop.dense.kernel.sqrt" in names
    assert "rmsprop.dense.kernel.constant" in names  # the 0.9 of rho, now inside
    assert not any(n.op == "constant" and n.outputs[0].name == "rmsprop.dense.kernel.constant"
                   for n in fused.nodes)
    assert [v.name for v in update.inputs] == [
        "rmsprop.velocity/dense.kernel", "dense.matmul.grad.matmul.1",
        "optimizer.learning_rate", "dense.kernel"]


def test_fusion_is_deterministic_across_processes() -> None:
    """Byte-identical dumps under different string hash seeds (no set order leaks)."""
    script = ("from kiln.compiler.passes.fuse_elementwise import fuse_elementwise as e\n"
              "from kiln.compiler.passes.fuse_gemm_epilogue import fuse_gemm_epilogue as g\n"
              "from tests.compiler.differential import train_step_case as c\n"
              "print(e(g(c('lstm').graph)))\n")
    texts = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env=env, cwd=ROOT, check=True)
        texts.add(result.stdout)
    assert texts == {str(fuse(train_step_case("lstm").graph)) + "\n"}


# -- regions ---------------------------------------------------------------------------------------
def test_reduction_with_prologue_and_epilogue_is_one_kernel() -> None:
    b = GraphBuilder("mse")
    x, y = b.input("x", f32["N", 4]), b.input("y", f32["N", 4])
    with b.scope("loss"):
        b.output(b.sqrt(b.mul(b.sum(b.square(b.sub(x, y)), axes=(1,)), 0.25)), "out")
    graph = b.build()
    fused = check_fusion(graph)
    assert [n.op for n in fused.nodes] == ["fused"]
    node = fused.nodes[0]
    assert node.attr["kind"] == "reduction"
    assert [n.op for n in node.body.nodes] == ["sub", "square", "sum", "constant", "mul", "sqrt"]
    assert [o.name for o in node.outputs] == ["loss.sqrt"]
    rng = np.random.default_rng(0)
    case = Case(graph, {"x": rng.standard_normal((5, 4)).astype(np.float32),
                        "y": rng.standard_normal((5, 4)).astype(np.float32)})
    assert_identical_results(graph, fused, case)


def test_softmax_written_out_needs_two_reductions() -> None:
    """exp(x - max(x)) / sum(...): the max and the sum are two passes over x; the exp reads
    the max, so it cannot be the sum's prologue and the max's epilogue at once."""
    b = GraphBuilder("softmax")
    x = b.input("x", f32["N", 5])
    e = b.exp(b.sub(x, b.max(x, axes=(1,), keepdims=True)))
    b.output(b.div(e, b.sum(e, axes=(1,), keepdims=True)), "out")
    graph = b.build()
    fused = check_fusion(graph)
    for node in fused_nodes(fused):
        reductions = [n for n in node.body.nodes if n.op in ("max", "sum")]
        assert len(reductions) <= 1
    case = Case(graph, {"x": np.random.default_rng(1).standard_normal((3, 5)).astype("f4")})
    assert_identical_results(graph, fused, case)


def test_regions_stay_convex() -> None:
    """a = exp(x); m = matmul(a, w); c = a + m: fusing exp with the add would make a cycle
    through the matmul, so they stay apart."""
    b = GraphBuilder("diamond")
    x, w = b.input("x", f32[3, 3]), b.input("w", f32[3, 3])
    a = b.exp(x)
    b.output(b.tanh(b.add(a, b.matmul(a, w))), "out")
    graph = b.build()
    fused = fuse_elementwise(graph)  # (fuse_gemm_epilogue would take the add and tanh)
    verify(fused)
    assert [n.op for n in fused.nodes] == ["exp", "matmul", "fused"]
    assert [n.op for n in fused.nodes[2].body.nodes] == ["add", "tanh"]


def test_fusion_keeps_regions_convex_around_a_reduction() -> None:
    """Found by the random graphs below. n0 = neg(x0) groups with greater(n0, sum) and
    tanh(n0); the sum groups with its prologue w = where(...), tanh(sum) and the last
    where(greater(w, n0), w, tanh(n0)). Each group is convex, but each reads the other, so
    fusing both made a cycle."""
    b = GraphBuilder("random")
    x = b.input("x0", f32["N", 3])
    b.input("x1", f32["N", 3])
    b.input("x2", f32["N", 3])
    v0 = b.neg(x)
    v3 = b.where(b.greater(x, x), x, b.tanh(x))
    b.neg(x)
    v5 = b.sum(v3, axes=(0,), keepdims=False)
    b.neg(x)
    b.neg(x)
    b.where(b.greater(v0, v5), v0, b.tanh(v5))
    b.output(b.where(b.greater(v3, v0), v3, b.tanh(v0)), "out0")
    graph = b.build()
    fused = check_fusion(graph)
    rng = np.random.default_rng(2)
    case = Case(graph, {v.name: rng.standard_normal((2, 3)).astype("f4")
                        for v in graph.inputs})
    assert_identical_results(graph, fused, case)


def test_a_graph_with_nothing_to_fuse_comes_back_equal() -> None:
    b = GraphBuilder("plain")
    x, w = b.input("x", f32["N", 3]), b.input("w", f32[3, 3])
    s = b.sum(x, axes=(1,), keepdims=True)  # [N,1]: its consumer below has another shape
    b.output(b.softmax(b.matmul(b.add(x, s), w)), "out")
    graph = b.build()
    assert fuse_elementwise(graph) == graph
    assert fuse_gemm_epilogue(graph) == graph


def test_values_read_outside_become_results() -> None:
    b = GraphBuilder("outs")
    x = b.input("x", f32[2, 3])
    with b.scope("layer"):
        t = b.tanh(x)
        u = b.mul(t, t)
        b.output(b.softmax(t), "a")  # t is read outside the region
        b.output(b.neg(u), "b")
    graph = b.build()
    fused = check_fusion(graph)
    (node,) = fused_nodes(fused)
    assert [o.name for o in node.outputs] == ["layer.tanh", "layer.neg"]
    assert [n.op for n in fused.nodes] == ["fused", "softmax"]


def test_passes_are_registered() -> None:
    assert PASSES["fuse_elementwise"].run is fuse_elementwise
    assert PASSES["fuse_gemm_epilogue"].run is fuse_gemm_epilogue


# -- random graphs ---------------------------------------------------------------------------------
SHAPES = [("N", 3), ("N", 1), (3,), (1, 3), ()]
UNARY = ["neg", "abs", "tanh", "sigmoid", "relu", "square", "softplus"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def elementwise_graphs(draw: st.DrawFn) -> Case:
    """Chains of elementwise ops over broadcasting shapes, scalar constants, where/compare,
    and some reductions; several values returned."""
    b = GraphBuilder("random")
    shapes = [("N", 3), *draw(st.lists(st.sampled_from(SHAPES), max_size=2))]
    pool: list[Value] = [b.input(f"x{i}", f32[s]) for i, s in enumerate(shapes)]
    for _ in range(draw(st.integers(1, 14))):
        x = draw(st.sampled_from(pool))
        y = draw(st.sampled_from([v for v in pool
                                  if broadcast_shapes(x.type.shape, v.type.shape) is not None]))
        kind = draw(st.sampled_from(["unary", "binary", "constant", "where", "reduce"]))
        if kind == "unary":
            value = b.op(draw(st.sampled_from(UNARY)), x)
        elif kind == "binary":
            value = b.op(draw(st.sampled_from(BINARY)), x, y)
        elif kind == "constant":
            value = b.op(draw(st.sampled_from(BINARY)), x, draw(st.sampled_from([0.5, -2.0])))
        elif kind == "where":
            value = b.where(b.greater(x, y), x, b.tanh(y))
        elif x.type.rank:
            axes = tuple(draw(st.sets(st.integers(0, x.type.rank - 1), min_size=1)))
            value = b.op(draw(st.sampled_from(["sum", "mean", "max"])), x, axes=axes,
                         keepdims=draw(st.booleans()))
        else:
            continue
        pool.append(value)
    outputs = [pool[-1], *draw(st.lists(st.sampled_from(pool), max_size=2))]
    for i, v in enumerate(outputs):
        b.output(v, f"out{i}")
    graph = b.build()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return Case(graph, {v.name: rng.standard_normal(v.type.resolve({"N": 2})).astype("f4")
                        for v in graph.inputs})


@SETTINGS
@given(elementwise_graphs())
def test_fusion_preserves_results_on_random_elementwise_graphs(case: Case) -> None:
    fused = check_fusion(case.graph)
    assert_identical_results(case.graph, fused, case)
    assert count_kernels(fused) <= count_kernels(case.graph)
    for node in fused_nodes(fused):
        assert len([n for n in node.body.nodes if n.op != "constant"]) >= 2


@SETTINGS
@given(random_graphs())
def test_fusion_preserves_results_on_random_mixed_graphs(case: Case) -> None:
    fused = check_fusion(case.graph)
    assert_identical_results(case.graph, fused, case)


def test_kernel_count_of_a_scan_is_its_body() -> None:
    graph = train_step_case("lstm").graph
    scans = [n for n in graph.nodes if n.op == "scan"]
    outside = sum(1 for n in graph.nodes if n.op != "scan" and n.op not in
                  ("constant", "size", "reshape", "expand_dims", "squeeze", "broadcast_to",
                   "transpose"))
    assert count_kernels(graph) == outside + sum(count_kernels(s.body) for s in scans)
