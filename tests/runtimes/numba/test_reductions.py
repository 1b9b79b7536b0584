"""Reductions over leading axes in blocks (kiln/compiler/codegen/numba/loops.py,
REDUCTION_BLOCK): fused at -O2 with the prologues that make them (a stored relu gradient, an
intermediate only the sum reads, a broadcast bias, a plain input, a value in the arena
beside a result that may take its slot), at any rank, kept extent,
keepdims and a symbolic batch, against the reference runtime; the shapes that take the
blocks and the ones that keep one loop nest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiln.compiler.codegen.numba.loops import REDUCTION_BLOCK_MAX_C, _block_start
from kiln.ir import GraphBuilder, TensorType
from kiln.runtimes.numba import NumbaExecutable
from kiln.runtimes.reference import run_graph

PROLOGUES = ("relu_grad", "intermediate", "bias", "input", "arena")


def _graph(shape: tuple, symbolic: bool, reduced: int, keepdims: bool, prologue: str,
           op: str) -> object:
    b = GraphBuilder("block")
    space = ("N", *shape[1:]) if symbolic else shape
    x = b.input("x", TensorType(space, "float32"))
    g = b.input("g", TensorType(space, "float32"))
    bias = b.input("bias", TensorType(shape[-1:], "float32"))
    axes = tuple(range(reduced))
    if prologue == "relu_grad":  # the bias gradient: where(x > 0, g, 0), stored and summed
        value = b.where(b.greater(x, 0.0), g, 0.0)
        b.output(value, "grad")
    elif prologue == "intermediate":  # read by the reduction only: scratch in each block
        value = b.mul(b.sub(x, g), g)
    elif prologue == "bias":  # a broadcast operand, and a stored result beside the sum
        value = b.add(x, bias)
        b.output(b.relu(value), "relu")
    elif prologue == "arena":  # a value in the arena, which a stored result may overwrite
        value = b.concat(x, g, axis=0)
        b.output(b.relu(b.add(value, bias)), "relu")
    else:
        value = x
    reduced_value = getattr(b, op)(value, axes=axes, keepdims=keepdims)
    b.output(reduced_value, "reduced")
    b.output(b.add(b.mul(reduced_value, 0.5), bias), "epilogue")  # reads a parameter
    return b.build()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_blocked_reductions_equal_the_reference(data: st.DataObject) -> None:
    rank = data.draw(st.integers(2, 4), label="rank")
    reduced = data.draw(st.integers(1, rank - 1), label="reduced axes")
    outer = data.draw(st.lists(st.integers(1, 9), min_size=rank - 1, max_size=rank - 1),
                      label="outer extents")
    shape = (*outer, data.draw(st.integers(1, 18), label="last extent"))
    symbolic = data.draw(st.booleans(), label="symbolic")
    keepdims = data.draw(st.booleans(), label="keepdims")
    prologue = data.draw(st.sampled_from(PROLOGUES), label="prologue")
    assume(not (symbolic and prologue == "arena"))  # concat needs a static axis 0
    op = data.draw(st.sampled_from(("sum", "mean", "max", "min")), label="op")
    graph = _graph(shape, symbolic, reduced, keepdims, prologue, op)
    rng = np.random.default_rng(len(shape) * 7 + reduced)
    feed = {"x": rng.standard_normal(shape).astype(np.float32),
            "g": rng.standard_normal(shape).astype(np.float32),
            "bias": rng.standard_normal(shape[-1:]).astype(np.float32)}
    if op == "max" and prologue == "input" and feed["x"].size > 3:
        feed["x"].reshape(-1)[3] = np.nan  # NaN sticks in max, as in NumPy
    want, _ = run_graph(graph, feed)
    got = NumbaExecutable({"f": graph}, {}).run("f", feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("space, axes, start", [
    ((32, 62, 62, 16), (0, 1, 2), 2),  # the augmented convnet's conv1: rows of 62x16
    ((8, 3), (0,), 0),  # all of it in one block
    ((5, 4, 4096), (0, 1), None),  # 4096 channels: one nest
    ((64, 26, 26, 32), (0, 1, 2), None),  # 32 channels: one nest (it vectorizes)
    (("N", 7, 7, 8), (0, 1, 2), 1),  # a symbolic batch stays an outer loop
    ((4, 5, 6), (1, 2), None),  # trailing axes: scalar accumulators
    ((4, 5, 6), (0, 2), None),  # not leading
    ((4, 5, 6), (0, 1, 2), None),  # everything
    ((4, 5, "C"), (0, 1), None),  # a symbolic kept axis
])
def test_which_reductions_take_blocks(space: tuple, axes: tuple, start: int | None) -> None:
    assert _block_start(space, axes) == start
    if start is not None:
        assert space[-1] <= REDUCTION_BLOCK_MAX_C


@pytest.mark.parametrize("shape", [(6, 5, 16), (40, 30, 3)])
def test_a_sum_of_a_state_updated_in_place_reads_the_old_values(shape: tuple) -> None:
    """A fused kernel (written by hand: the fusion pass makes none such) whose prologue writes
    a state's update into the state's own buffer while its sum reads the old state: each
    block keeps the old values in scratch before the prologue loop overwrites them."""
    body = GraphBuilder("body")
    bv = body.input("v", TensorType(shape, "float32"))
    bg = body.input("g", TensorType(shape, "float32"))
    body.output(body.add(body.mul(bv, 0.9), bg), "new_v")
    body.output(body.sum(bv, axes=(0, 1)), "s")
    b = GraphBuilder("update")
    g = b.input("g", TensorType(shape, "float32"))
    v = b.state("v", TensorType(shape, "float32"))
    new_v, total = b.op("fused", v, g, body=body.build(), kind="reduction")
    b.output(total, "s")
    b.update(v, new_v)
    graph = b.build()
    rng = np.random.default_rng(1)
    start = rng.standard_normal(shape).astype(np.float32)
    feed = {"g": rng.standard_normal(shape).astype(np.float32)}
    want, new_state = run_graph(graph, feed, {"v": start})
    state = {"v": start.copy()}
    exe = NumbaExecutable({"f": graph}, state)
    assert "v[np.uint64(" in exe.source("f")  # the update is written in place
    got = exe.run("f", feed)
    np.testing.assert_allclose(got["s"], want["s"], rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(state["v"], new_state["v"], rtol=1e-6)
