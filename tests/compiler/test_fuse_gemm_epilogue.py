"""fuse_gemm_epilogue: matmul + bias add + activation become one `fused` node of kind "gemm"
with the matmul first in its body; values read outside stay results; convexity; results
bit-identical on the reference runtime (the body runs the same NumPy calls)."""

from __future__ import annotations

import numpy as np
import pytest

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
