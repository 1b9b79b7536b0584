"""fuse_gemm_epilogue: matmul + bias add + activation become one `fused` node of kind "gemm"
with the matmul first in its body; values read outside stay results; convexity, of each
region alone and with the other regions fused too (two regions reading each other's results
make no cycle); results bit-identical on the reference runtime (the body runs the same NumPy
calls)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.compiler.passes.fuse_elementwise import fuse_elementwise
from kiln.compiler.passes.fuse_gemm_epilogue import ACTIVATIONS, fuse_gemm_epilogue
from kiln.ir import Graph, GraphBuilder, f32
from tests.compiler.differential import check_fusion, train_step_case

RNG = np.random.default_rng(3)
FEED = {"x": RNG.standard_normal((4, 5)).astype("f4"),
        "w": RNG.standard_normal((5, 3)).astype("f4"),
        "b": RNG.standard_normal(3).astype("f4")}


def dense(activation: str | None = "relu", bias_first: bool = False,
          bias: bool = True) -> Graph:
    b = GraphBuilder("dense")
    x, w, bias_value = b.input("x", f32["N", 5]), b.input("w", f32[5, 3]), b.input("b", f32[3])
    with b.scope("dense"):
        y = b.matmul(x, w)
        if bias:
            y = b.add(bias_value, y) if bias_first else b.add(y, bias_value)
        if activation:
            y = b.op(activation, y)
    b.output(y, "out")
    return b.build()


def check(graph: Graph) -> Graph:
    return check_fusion(fuse_gemm_epilogue, graph, FEED)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_layer_becomes_one_gemm_kernel(activation: str) -> None:
    fused = check(dense(activation))
    (node,) = fused.nodes
    assert node.op == "fused" and node.attr["kind"] == "gemm"
    assert [n.op for n in node.body.nodes] == ["matmul", "add", activation]
    assert [n.outputs[0].name for n in node.body.nodes] == [
        "dense.matmul", "dense.add", f"dense.{activation}"]
    assert [v.name for v in node.inputs] == ["x", "w", "b"]


@pytest.mark.parametrize("bias_first, bias, activation", [
    (True, True, "relu"),     # add(b, matmul)
    (False, True, None),      # bias only (Dense before a softmax)
    (False, False, "tanh"),   # activation only
])
def test_epilogue_variants(bias_first: bool, bias: bool, activation: str | None) -> None:
    fused = check(dense(activation, bias_first, bias))
    (node,) = fused.nodes
    ops = [n.op for n in node.body.nodes]
    assert ops[0] == "matmul" and len(ops) == 1 + bias + (activation is not None)


def test_matmul_alone_comes_back_equal() -> None:
    graph = dense(None, bias=False)
    assert fuse_gemm_epilogue(graph) == graph


def test_pre_activation_read_elsewhere_stays_a_result() -> None:
    """The MLP's hidden layer: relu's gradient reads the pre-activation, so the kernel
    returns it too; the product itself is read by nothing else and stays inside."""
    fused = fuse_gemm_epilogue(train_step_case("mlp").graph)
    first = fused.nodes[0]
    assert first.attr["kind"] == "gemm"
    assert [o.name for o in first.outputs] == ["dense.add", "dense.relu"]
    assert [n.attr["kind"] for n in fused.nodes if n.op == "fused"] == ["gemm", "gemm"]


def test_a_bias_computed_from_the_product_is_not_fused() -> None:
    """add(m, sum(m)): the sum sits between the matmul and the add, outside; fusing the add
    would make a cycle."""
    b = GraphBuilder("cycle")
    x, w = b.input("x", f32["N", 5]), b.input("w", f32[5, 3])
    m = b.matmul(x, w)
    b.output(b.add(m, b.sum(m, axes=(0,))), "out")
    graph = b.build()
    assert fuse_gemm_epilogue(graph) == graph


def test_an_add_that_broadcasts_the_product_is_not_an_epilogue() -> None:
    b = GraphBuilder("wide")
    x, w = b.input("x", f32["N", 5]), b.input("w", f32[5, 3])
    big = b.input("b", f32[2, "N", 3])
    b.output(b.relu(b.add(b.matmul(x, w), big)), "out")
    graph = b.build()
    assert fuse_gemm_epilogue(graph) == graph


def test_elementwise_fusion_after_gemm_keeps_the_gemm_kernel() -> None:
    """In the pipeline order the epilogue goes to the gemm kernel and stays there."""
    b = GraphBuilder("mlp")
    x, w, bias = b.input("x", f32["N", 5]), b.input("w", f32[5, 3]), b.input("b", f32[3])
    h = b.relu(b.add(b.matmul(x, w), bias))
    b.output(b.mul(b.neg(h), 2.0), "out")
    graph = b.build()
    fused = fuse_elementwise(fuse_gemm_epilogue(graph))
    assert [n.attr["kind"] for n in fused.nodes] == ["gemm", "elementwise"]
    assert [n.op for n in fused.nodes[0].body.nodes] == ["matmul", "add", "relu"]


# -- regions convex together -------------------------------------------------------------------
CROSS_FEED = {name: RNG.standard_normal((4, 4)).astype("f4") for name in ("x", "w", "u", "v")}


def crossed(activations: tuple[str, str] | None = None, through: str = "product") -> Graph:
    """m1 = x @ w, m2 = x @ u; a = add(m1, m2), c = add(m2, m1): each add is the bias add of
    one product and reads the other, so {m1, a} and {m2, c} are each convex but read each
    other's results (A -> B -> A). With `activations`, an activation after each add; with
    through="column_sum", each bias is the other product's column sums (a bias vector)."""
    b = GraphBuilder("crossed")
    x, w, u = b.input("x", f32["N", 4]), b.input("w", f32[4, 4]), b.input("u", f32[4, 4])
    m1, m2 = b.matmul(x, w), b.matmul(x, u)
    bias1, bias2 = m2, m1
    if through == "column_sum":
        bias1, bias2 = b.sum(m2, axes=(0,)), b.sum(m1, axes=(0,))
    a, c = b.add(m1, bias1), b.add(m2, bias2)
    if activations:
        a, c = b.op(activations[0], a), b.op(activations[1], c)
    b.output(a, "a")
    b.output(c, "c")
    return b.build()


def gemm_bodies(graph: Graph) -> list[list[str]]:
    return [[n.op for n in node.body.nodes] for node in graph.nodes if node.op == "fused"]


def test_regions_reading_each_other_are_not_both_fused() -> None:
    """The first matmul takes its add; the second's add reads the first region's product
    and the first region's add reads the second product, so fusing it too makes a cycle."""
    fused = check_fusion(fuse_gemm_epilogue, crossed(), CROSS_FEED)
    assert gemm_bodies(fused) == [["matmul", "add"]]
    assert [n.op for n in fused.nodes] == ["matmul", "fused", "add"]


@pytest.mark.parametrize("activations, through", [
    (("relu", "tanh"), "product"),         # activation epilogues after the crossed adds
    (("sigmoid", "relu"), "column_sum"),   # bias vectors: the other product's column sums
])
def test_crossed_regions_with_epilogues(activations: tuple[str, str], through: str) -> None:
    fused = check_fusion(fuse_gemm_epilogue, crossed(activations, through), CROSS_FEED)
    assert gemm_bodies(fused) == [["matmul", "add", activations[0]]]
    assert [n.op for n in fused.nodes].count("matmul") == 1


def test_crossed_regions_then_elementwise_fusion() -> None:
    """The pipeline order: the adds and activations left over go to elementwise kernels,
    and the whole stays acyclic and computes the same."""
    graph = crossed(("relu", "tanh"), "column_sum")
    fused = check_fusion(lambda g: fuse_elementwise(fuse_gemm_epilogue(g)), graph, CROSS_FEED)
    assert [n.attr.get("kind") for n in fused.nodes if n.op == "fused"].count("gemm") == 1


def test_a_later_region_cannot_close_a_cycle_through_an_earlier_epilogue() -> None:
    """The first matmul's bias add comes after the second's: region A = {m1, a} ends last
    and B = {m2, c} lies between its nodes, so the search for a path back into B must go on
    past B's last node (m2 -> neg -> a, then A's m1 -> neg -> c)."""
    b = GraphBuilder("late")
    x, w, u = b.input("x", f32["N", 4]), b.input("w", f32[4, 4]), b.input("u", f32[4, 4])
    m1, m2 = b.matmul(x, w), b.matmul(x, u)
    c = b.add(m2, b.neg(m1))
    a = b.relu(b.add(m1, b.neg(m2)))
    b.output(a, "a")
    b.output(c, "c")
    fused = check_fusion(fuse_gemm_epilogue, b.build(), CROSS_FEED)
    assert gemm_bodies(fused) == [["matmul", "add", "relu"]]


@st.composite
def gemm_webs(draw: st.DrawFn) -> Graph:
    """Products of x (N, 4) and a few weights, then adds of one value to another (bias adds
    of the products, some reading other products), activations, negations (no epilogue)
    and column sums, in any order: regions of one matmul reading other regions' results."""
    b = GraphBuilder("web")
    x = b.input("x", f32["N", 4])
    pool = [b.matmul(x, b.input(name, f32[4, 4])) for name in ("w", "u", "v")]
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["add", "activation", "neg", "column_sum"]))
        y = draw(st.sampled_from(pool))
        if kind == "add":
            pool.append(b.add(y, draw(st.sampled_from(pool))))
        elif kind == "activation":
            pool.append(b.op(draw(st.sampled_from(sorted(ACTIVATIONS))), y))
        elif kind == "neg":
            pool.append(b.neg(y))
        elif y.type.rank == 2:
            pool.append(b.sum(y, axes=(0,)))
    for i, v in enumerate(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3,
                                        unique_by=lambda v: v.name))):
        b.output(v, f"out{i}")
    return b.build()


@settings(max_examples=60, deadline=None)
@given(gemm_webs())
def test_fusion_of_gemm_webs_makes_no_cycle(graph: Graph) -> None:
    check_fusion(fuse_gemm_epilogue, graph, CROSS_FEED)
    check_fusion(lambda g: fuse_elementwise(fuse_gemm_epilogue(g)), graph, CROSS_FEED)
