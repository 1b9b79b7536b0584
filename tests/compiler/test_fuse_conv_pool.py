"""fuse_conv_pool: a conv2d that only a max_pool2d reads becomes, with that pooling and the
bias add and relu after it, one `fused` node of kind "conv"; train steps (whose gradients
read the convolution's result) are left alone; the fused op refuses bodies that do not start
with the convolution and its one pooling; results bit-identical on the reference runtime."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.compiler import compile_graph
from kiln.compiler.passes.fuse_conv_pool import fuse_conv_pool
from kiln.compiler.passes.simplify import simplify
from kiln.ir import Graph, GraphBuilder, KilnTypeError, f32
from kiln.runtimes.reference import run_graph
from tests.compiler.differential import check_fusion, train_step_case
from tests.models import convnet

RNG = np.random.default_rng(5)
FEED = {"x": RNG.standard_normal((3, 8, 8, 2)).astype("f4"),
        "w": RNG.standard_normal((3, 3, 2, 4)).astype("f4"),
        "b": RNG.standard_normal(4).astype("f4")}


def conv_layer(pool: bool = True, epilogue: bool = True, conv_out: bool = False) -> Graph:
    """Conv2D + (bias, relu after the pooling, as pool_activation leaves a predict graph)."""
    b = GraphBuilder("layer")
    x, w, bias = b.input("x", f32["N", 8, 8, 2]), b.input("w", f32[3, 3, 2, 4]), \
        b.input("b", f32[4])
    with b.scope("conv"):
        y = b.conv2d(x, w, padding="same")
    if conv_out:
        b.output(y, "conv")
    with b.scope("pool"):
        if pool:
            y = b.max_pool2d(y, pool_size=(2, 2))
        if epilogue:
            y = b.relu(b.add(y, bias))
    b.output(b.reshape(y, shape=("N", -1)), "out")
    return b.build()


def check(graph: Graph) -> Graph:
    return check_fusion(fuse_conv_pool, graph, FEED)


@pytest.mark.parametrize("epilogue", [True, False])
def test_conv_pool_and_epilogue_become_one_kernel(epilogue: bool) -> None:
    fused = check(conv_layer(epilogue=epilogue))
    node = fused.nodes[0]
    assert node.op == "fused" and node.attr["kind"] == "conv"
    ops = ["conv2d", "max_pool2d", *(["add", "relu"] if epilogue else [])]
    assert [n.op for n in node.body.nodes] == ops
    assert [v.name for v in node.inputs] == ["x", "w", *(["b"] if epilogue else [])]
    assert [n.op for n in fused.nodes] == ["fused", "reshape"]


@pytest.mark.parametrize("variant", ["no_pool", "conv_read_elsewhere"])
def test_a_convolution_not_read_by_one_pooling_alone_stays(variant: str) -> None:
    graph = conv_layer(pool=False) if variant == "no_pool" else conv_layer(conv_out=True)
    assert fuse_conv_pool(graph) == graph


def test_the_predict_pipeline_fuses_a_keras_conv_layer_and_its_pooling() -> None:
    """Conv2D(relu) -> MaxPooling2D: pool_activation moves bias and relu after the pooling,
    then one conv kernel takes all four; the planned arena no longer holds the
    convolution's full output."""
    model = convnet()
    optimized, stats = compile_graph(model.forward)
    kinds = [n.attr["kind"] for n in optimized.nodes if n.op == "fused"]
    assert kinds[0] == "conv"
    conv = optimized.nodes[0]
    assert [n.op for n in conv.body.nodes] == ["conv2d", "max_pool2d", "add", "relu"]
    unfused, _ = compile_graph(model.forward, options={"simplify": {
        "disable": ["pool_activation"]}})
    assert "conv" not in [n.attr["kind"] for n in unfused.nodes if n.op == "fused"]
    feed = {"x": model.x[:5]}
    np.testing.assert_array_equal(run_graph(optimized, feed, model.params)[0]["out"],
                                  run_graph(model.forward, feed, model.params)[0]["out"])


def test_a_train_step_keeps_its_convolution_output() -> None:
    graph = simplify(train_step_case("convnet").graph)
    assert fuse_conv_pool(graph) == graph


def _body(ops: str) -> Graph:
    b = GraphBuilder("body")
    x, w = b.input("x", f32[1, 6, 6, 1]), b.input("w", f32[3, 3, 1, 2])
    y = b.conv2d(x, w)
    if ops == "relu_first":
        b.output(b.max_pool2d(b.relu(y)), "y")
    elif ops == "pool_of_the_input":
        b.output(b.add(b.max_pool2d(x), b.sum(y)), "y")
    elif ops == "conv_is_a_result":
        b.output(b.max_pool2d(y), "y")
        b.output(y, "c")
    elif ops == "no_pool":
        b.output(b.relu(y), "y")
    else:
        b.output(b.max_pool2d(b.max_pool2d(y, pool_size=(1, 1))), "y")
    return b.build()


@pytest.mark.parametrize("ops, message", [
    ("relu_first", "expected a conv body to start with its one conv2d then max_pool2d"),
    ("pool_of_the_input", "expected the max_pool2d of a conv body to be the only reader"),
    ("conv_is_a_result", "expected the max_pool2d of a conv body to be the only reader"),
    ("no_pool", "expected a conv body to start with its one conv2d then max_pool2d"),
    ("two_pools", "expected a conv body to start with its one conv2d then max_pool2d"),
])
def test_fused_conv_refuses_other_bodies(ops: str, message: str) -> None:
    b = GraphBuilder("g")
    x, w = b.input("x", f32[1, 6, 6, 1]), b.input("w", f32[3, 3, 1, 2])
    with pytest.raises(KilnTypeError, match=message):
        b.op("fused", x, w, kind="conv", body=_body(ops))


def test_crossed_conv_regions_are_not_both_fused() -> None:
    """Two conv + pooling heads whose bias adds read each other's pooled results: each region
    convex alone, both fused a cycle; the first takes its add, the second stays short."""
    b = GraphBuilder("crossed")
    x, w = b.input("x", f32["N", 8, 8, 2]), b.input("w", f32[3, 3, 2, 4])
    p1 = b.max_pool2d(b.conv2d(x, w, padding="same"), pool_size=(2, 2))
    p2 = b.max_pool2d(b.conv2d(b.neg(x), w, padding="same"), pool_size=(2, 2))
    b.output(b.relu(b.add(p1, p2)), "a")
    b.output(b.relu(b.add(p2, p1)), "c")
    fused = check(b.build())
    bodies = [[n.op for n in node.body.nodes] for node in fused.nodes if node.op == "fused"]
    assert sorted(bodies, key=len) == [["conv2d", "max_pool2d"],
                                       ["conv2d", "max_pool2d", "add", "relu"]]
