"""The numba Executable's fast path remembers the input shapes it has checked (with the
driver's arguments for them): a call with other shapes, or shapes that contradict each other
or the declared ones, is checked again and raises as the first call would."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import Graph, GraphBuilder, KilnError, TensorType
from kiln.runtimes.numba import NumbaExecutable
from kiln.runtimes.numba.executable import ARENAS_KEPT
from kiln.runtimes.reference import ReferenceExecutable


def _graph() -> Graph:
    b = GraphBuilder("shapes")
    ids = b.input("ids", TensorType(("N",), "int64"))
    x = b.input("x", TensorType(("N", 3), "float32"))
    w = b.state("w", TensorType((5, 3), "float32"))
    b.output(b.sum(b.add(b.gather(w, ids, axis=0), x), axes=(1,)), "y")
    b.update(w, b.mul(w, 0.5))
    return b.build()


def _feed(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.default_rng(seed)
    return {"ids": rs.integers(0, 5, n).astype(np.int64),
            "x": rs.standard_normal((n, 3)).astype(np.float32)}


def test_remembered_shapes_still_reject_bad_ones() -> None:
    exe = NumbaExecutable({"e": _graph()}, {"w": np.ones((5, 3), np.float32)})
    ref = ReferenceExecutable({"e": _graph()}, {"w": np.ones((5, 3), np.float32)})
    for n in (2, 2, 3, 2):
        feed = _feed(n, n)
        np.testing.assert_allclose(exe.run("e", feed)["y"], ref.run("e", feed)["y"], rtol=1e-6)
    entry = exe.entries["e"]
    assert ((2,), (2, 3)) in entry.by_shapes
    good = _feed(2)
    with pytest.raises(KilnError):  # a declared dimension (3) contradicted
        exe.run("e", {**good, "x": np.zeros((2, 4), np.float32)})
    with pytest.raises(KilnError):  # N is 3 for ids, 2 for x
        exe.run("e", {**good, "ids": np.zeros(3, np.int64)})
    with pytest.raises(KilnError):  # a rank off
        exe.run("e", {**good, "x": np.zeros((2, 3, 1), np.float32)})
    np.testing.assert_allclose(exe.run("e", good)["y"], ref.run("e", good)["y"], rtol=1e-6)
    np.testing.assert_allclose(exe.state["w"], ref.state["w"])


def test_evicted_arenas_and_replaced_state_drop_the_remembered_arguments() -> None:
    exe = NumbaExecutable({"e": _graph()}, {"w": np.ones((5, 3), np.float32)})
    ref = ReferenceExecutable({"e": _graph()}, {"w": np.ones((5, 3), np.float32)})
    for n in range(1, ARENAS_KEPT + 4):  # more batch sizes than arenas kept
        for _ in range(2):
            feed = _feed(n, n)
            np.testing.assert_allclose(exe.run("e", feed)["y"], ref.run("e", feed)["y"],
                                       rtol=1e-6)
    entry = exe.entries["e"]
    assert len(entry.arenas) == ARENAS_KEPT
    assert len(entry.by_shapes) <= ARENAS_KEPT
    kept = {id(args[0]) for args, _ in entry.arenas.values()}
    for tail, _, _ in entry.by_shapes.values():  # only the arguments of arenas still kept
        assert any(id(a) in kept for a in tail)
    replaced = np.full((5, 3), 3.0, np.float32)
    exe.state["w"], ref.state["w"] = replaced, replaced.copy()
    feed = _feed(2)
    np.testing.assert_allclose(exe.run("e", feed)["y"], ref.run("e", feed)["y"], rtol=1e-6)
    np.testing.assert_allclose(replaced, ref.state["w"])  # the new array updated in place
