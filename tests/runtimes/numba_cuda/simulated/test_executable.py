"""The numba-cuda executable's contract beyond one op: state resident on the device and
exchanged with the host only at sync_state / load_state (small arrays noticed by
themselves), state updates that read other state, scans (nested, reversed, empty), clear
errors for bad inputs, and close()."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import Graph, GraphBuilder, KilnTypeError, KilnValueError, TensorType
from kiln.runtimes import create_executable
from kiln.runtimes.numba_cuda import NumbaCudaExecutable
from kiln.runtimes.reference import ReferenceExecutable, run_graph


def _sgd() -> Graph:
    """y = x @ w * lr; w -= lr * sum(x) (a large state and a small one)."""
    b = GraphBuilder("sgd")
    x = b.input("x", TensorType(("N", 3), "float32"))
    w = b.state("w", TensorType((3, 80), "float32"))
    lr = b.state("lr", TensorType((), "float32"))
    b.output(b.mul(b.matmul(x, w), lr), "y")
    b.update(w, b.sub(w, b.mul(lr, b.sum(x))))
    return b.build()


def _fresh() -> tuple[dict, dict]:
    state = {"w": np.ones((3, 80), np.float32), "lr": np.array(0.5, np.float32)}
    return state, {k: v.copy() for k, v in state.items()}


X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_state_stays_on_the_device_until_sync_state() -> None:
    state, ref_state = _fresh()
    w = state["w"]
    exe = create_executable("numba-cuda", {"sgd": _sgd()}, state)
    assert exe.backend == "numba-cuda"
    ref = ReferenceExecutable({"sgd": _sgd()}, ref_state)
    for _ in range(2):
        np.testing.assert_allclose(exe.run("sgd", {"x": X})["y"], ref.run("sgd", {"x": X})["y"])
    np.testing.assert_array_equal(w, 1.0)  # not brought home yet
    exe.sync_state()
    assert state["w"] is w
    np.testing.assert_allclose(w, ref_state["w"])


def test_host_writes_reach_the_device() -> None:
    state, ref_state = _fresh()
    exe = NumbaCudaExecutable({"sgd": _sgd()}, state)
    ref = ReferenceExecutable({"sgd": _sgd()}, ref_state)
    exe.run("sgd", {"x": X}), ref.run("sgd", {"x": X})
    for s in (state, ref_state):  # a callback's new learning rate: noticed without a call
        s["lr"][...] = 0.25
    np.testing.assert_allclose(exe.run("sgd", {"x": X})["y"], ref.run("sgd", {"x": X})["y"])
    exe.sync_state()
    for s in (state, ref_state):  # set_weights: a large array needs load_state()
        s["w"][...] = 2.0
    exe.load_state()
    np.testing.assert_allclose(exe.run("sgd", {"x": X})["y"], ref.run("sgd", {"x": X})["y"])
    exe.close()
    np.testing.assert_allclose(state["w"], ref_state["w"])  # close() brings the state home
    with pytest.raises(KilnValueError, match="closed"):
        exe.run("sgd", {"x": X})


def test_updates_reading_other_state_and_outputs_of_updated_state() -> None:
    """a' = b, b' = a (a swap no buffer may break), and outputs of the old values."""
    b = GraphBuilder("swap")
    x = b.input("x", TensorType((2,), "float32"))
    s = b.state("a", TensorType((2,), "float32"))
    t = b.state("b", TensorType((2,), "float32"))
    b.output(s, "old_a")
    b.output(b.add(t, x), "b_plus_x")
    b.update(s, t)
    b.update(t, s)
    graph = b.build()
    state = {"a": np.array([1, 2], np.float32), "b": np.array([3, 4], np.float32)}
    exe = NumbaCudaExecutable({"swap": graph}, state)
    out = exe.run("swap", {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(out["old_a"], [1, 2])
    out = exe.run("swap", {"x": np.ones(2, np.float32)})
    np.testing.assert_array_equal(out["old_a"], [3, 4])
    np.testing.assert_array_equal(out["b_plus_x"], [2, 3])
    exe.sync_state()
    np.testing.assert_array_equal(state["a"], [1, 2])
    np.testing.assert_array_equal(state["b"], [3, 4])


def test_nested_and_reversed_scans_match_the_reference() -> None:
    """A scan whose body runs a reverse scan, at several lengths (0 included)."""
    f64 = TensorType((3,), "float64")
    ib = GraphBuilder("inner")
    c, x = ib.input("c", f64), ib.input("x", f64)
    t = ib.add(ib.mul(c, 0.5), ib.tanh(x))
    ib.output(t, "c")
    ib.output(ib.square(t), "y")
    ob = GraphBuilder("outer")
    c, xs = ob.input("c", f64), ob.input("xs", TensorType((2, 3), "float64"))
    last, ys = ob.op("scan", c, xs, num_carry=1, num_seq=1, body=ib.build(), reverse=True)
    ob.output(ob.add(c, last), "c")
    ob.output(ys, "ys")
    b = GraphBuilder("nested")
    c0, seq = b.input("c0", f64), b.input("seq", TensorType(("T", 2, 3), "float64"))
    final, stacked = b.op("scan", c0, seq, num_carry=1, num_seq=1, body=ob.build())
    b.output(final, "final")
    b.output(stacked, "ys")
    graph = b.build()
    exe = NumbaCudaExecutable({"run": graph}, {})
    rng = np.random.default_rng(0)
    for steps in (3, 0):
        feed = {"c0": rng.standard_normal(3), "seq": rng.standard_normal((steps, 2, 3))}
        expected, _ = run_graph(graph, feed)
        got = exe.run("run", feed)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)


def test_a_scan_whose_carries_swap() -> None:
    """New carries read straight from the body's inputs, crossed over."""
    v = TensorType((2,), "float32")
    bb = GraphBuilder("cross")
    p, q, x = bb.input("p", v), bb.input("q", v), bb.input("x", v)
    bb.output(q, "p")
    bb.output(bb.add(p, x), "q")
    bb.output(p, "seen")
    b = GraphBuilder("swap_scan")
    p0, q0 = b.input("p0", v), b.input("q0", v)
    xs = b.input("xs", TensorType((3, 2), "float32"))
    p1, q1, seen = b.op("scan", p0, q0, xs, num_carry=2, num_seq=1, body=bb.build())
    for name, value in (("p", p1), ("q", q1), ("seen", seen)):
        b.output(value, name)
    graph = b.build()
    feed = {"p0": np.array([1, 2], np.float32), "q0": np.array([10, 20], np.float32),
            "xs": np.arange(6, dtype=np.float32).reshape(3, 2)}
    expected, _ = run_graph(graph, feed)
    got = NumbaCudaExecutable({"run": graph}, {}).run("run", feed)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_scan_carries_alternate_between_two_buffers(
        steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step writes the carries a body node computes straight into the other buffer set,
    and the ys it computes straight into their rows of the stacked ys; only carries and ys
    the body passes through, or returns twice, are copied, and an odd number of steps ends
    with one copy back into the outputs."""
    from kiln.runtimes.numba_cuda.ops import control

    copies: list[int] = []
    real = control.copy
    monkeypatch.setattr(control, "copy", lambda ctx, dst, src: (copies.append(1),
                                                              real(ctx, dst, src)))
    v = TensorType((3,), "float64")
    bb = GraphBuilder("mixed")
    a, c, d, x = (bb.input(n, v) for n in ("a", "c", "d", "x"))
    new = bb.tanh(bb.add(bb.mul(a, 0.5), x))
    bb.output(new, "a")  # computed: written in place
    bb.output(new, "c")  # the same value again: copied
    bb.output(a, "d")  # a carry passed across: copied (the old a, not the new one)
    bb.output(bb.mul(new, d), "y")  # reads d, the carry entering the step: in place
    bb.output(new, "y2")  # a new carry, also a y: copied
    bb.output(x, "y3")  # a sequence slice passed through: copied
    b = GraphBuilder("scan_mixed")
    inits = [b.input(n, v) for n in ("a0", "c0", "d0")]
    xs = b.input("xs", TensorType((steps, 3), "float64"))
    results = b.op("scan", *inits, xs, num_carry=3, num_seq=1, body=bb.build())
    for name, value in zip(("a", "c", "d", "ys", "y2s", "y3s"), results, strict=True):
        b.output(value, name)
    graph = b.build()
    rng = np.random.default_rng(steps)
    feed = {"a0": rng.standard_normal(3), "c0": rng.standard_normal(3),
            "d0": rng.standard_normal(3), "xs": rng.standard_normal((steps, 3))}
    expected, _ = run_graph(graph, feed)
    got = NumbaCudaExecutable({"run": graph}, {}).run("run", feed)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)
    # 3 initial copies; per step 2 carries (c, d) and 2 ys (y2, y3); 3 back after an odd count
    assert len(copies) == 3 + 4 * steps + 3 * (steps % 2)


@pytest.fixture(scope="module")
def sgd() -> NumbaCudaExecutable:
    return NumbaCudaExecutable({"sgd": _sgd()}, _fresh()[0])


@pytest.mark.parametrize("inputs, error, message", [
    ({"x": X.astype(np.float64)}, KilnTypeError, r"%x expected dtype float32. Received: float64"),
    ({"x": np.zeros((2, 4), np.float32)}, KilnValueError,
     r"%x expected shape f32\[N,3\] \(with \{'N': 2\}\). Received: shape \(2, 4\)"),
    ({}, KilnValueError, r"no value given for input %x"),
    ({"x": X, "z": X}, KilnValueError, r"unknown input 'z'"),
])
def test_bad_inputs_give_clear_errors(sgd: NumbaCudaExecutable, inputs: dict, error: type,
                                      message: str) -> None:
    with pytest.raises(error, match=message):
        sgd.run("sgd", inputs)


def test_unknown_entry_point(sgd: NumbaCudaExecutable) -> None:
    with pytest.raises(KilnValueError, match=r"no entry point 'predict'; expected one of"):
        sgd.run("predict", {"x": X})


def test_prefetched_batches_give_the_same_results() -> None:
    """prefetch(next) before run(current), as a training loop overlapping copies does; a
    batch that was not prefetched, or two prefetches in a row, still run right."""
    state, ref_state = _fresh()
    exe = NumbaCudaExecutable({"sgd": _sgd()}, state)
    ref = ReferenceExecutable({"sgd": _sgd()}, ref_state)
    batches = [X + k for k in range(4)] + [X[:1]]
    exe.prefetch("sgd", {"x": batches[0]})
    for k, batch in enumerate(batches):
        if k + 1 < len(batches):
            exe.prefetch("sgd", {"x": batches[k + 1]})
        if k == 2:
            exe.prefetch("sgd", {"x": batches[0]})  # a prefetch nobody runs
        got = exe.run("sgd", {"x": batch})["y"]
        np.testing.assert_allclose(got, ref.run("sgd", {"x": batch})["y"], err_msg=str(k))
    unfetched = X * 3
    np.testing.assert_allclose(exe.run("sgd", {"x": unfetched})["y"],
                               ref.run("sgd", {"x": unfetched})["y"])


def test_a_bad_token_is_refused_before_any_state_changes() -> None:
    b = GraphBuilder("tiny")
    ids = b.input("ids", TensorType(("N",), "int64"))
    w = b.state("w", TensorType((5, 3), "float32"))
    with b.scope("embedding"):
        rows = b.gather(w, ids, axis=0)
    b.output(b.sum(rows, axes=(1,)), "y")
    b.update(w, b.mul(w, 0.5))
    state = {"w": np.ones((5, 3), np.float32)}
    exe = NumbaCudaExecutable({"tiny": b.build()}, state)
    with pytest.raises(KilnValueError, match=r"@tiny: gather \(%embedding.gather\): expected "
                                             r"indices in \[0, 5\). Received: indices\[1\]=5"):
        exe.run("tiny", {"ids": np.array([0, 5], np.int64)})
    np.testing.assert_allclose(exe.run("tiny", {"ids": np.array([0, 4], np.int64)})["y"], 3)
    exe.sync_state()
    np.testing.assert_array_equal(state["w"], 0.5)  # one update: the refused call ran nothing


def test_a_bad_token_gathered_time_major_is_refused_before_any_state_changes() -> None:
    """The simplifier gathers an RNN's rows straight into time-major order, transposing the
    indices instead: the host still checks the batch's own indices first."""
    b = GraphBuilder("tiny")
    ids = b.input("ids", TensorType(("N", 2), "int64"))
    w = b.state("w", TensorType((5, 3), "float32"))
    with b.scope("embedding"):
        rows = b.transpose(b.gather(w, ids, axis=0), perm=(1, 0, 2))
    b.output(b.sum(rows, axes=(0, 2)), "y")
    b.update(w, b.mul(w, 0.5))
    state = {"w": np.ones((5, 3), np.float32)}
    exe = NumbaCudaExecutable({"tiny": b.build()}, state)
    moved, gather = exe.entries["tiny"].optimized.nodes[:2]  # the indices are transposed
    assert (moved.op, moved.inputs[0].name, gather.op) == ("transpose", "ids", "gather")
    assert gather.inputs[1] == moved.output
    with pytest.raises(KilnValueError, match=r"@tiny: gather \(%embedding[\w.]*\): expected "
                                             r"indices in \[0, 5\). Received: indices\[1, 0\]=5"):
        exe.run("tiny", {"ids": np.array([[0, 1], [5, 2]], np.int64)})
    np.testing.assert_allclose(exe.run("tiny", {"ids": np.array([[0, 4]], np.int64)})["y"], 6)
    exe.sync_state()
    np.testing.assert_array_equal(state["w"], 0.5)  # one update: the refused call ran nothing


def _lookup_and_scatter() -> Graph:
    """A gather and a scatter_add whose indices the device computes (ids + 2, ids - 1), so
    the host cannot check them before the call: the kernels flag them."""
    b = GraphBuilder("lookup")
    ids = b.input("ids", TensorType(("N",), "int64"))
    w = b.state("w", TensorType((5, 3), "float32"))
    with b.scope("embedding"):
        rows = b.gather(w, b.add(ids, b.constant(2, "int64")), axis=0)
    with b.scope("histogram"):
        counts = b.scatter_add(b.sum(rows, axes=(1,)), b.sub(ids, b.constant(1, "int64")),
                               axis=0, size=4)
    b.output(counts, "counts")
    b.update(w, b.mul(w, 0.5))
    return b.build()


@pytest.mark.parametrize("ids, op, bound", [
    ([1, 3], "gather", 5),  # 3 + 2 = 5
    ([1, 0], "scatter_add", 4),  # 0 - 1 = -1
])
def test_an_index_computed_on_the_device_out_of_range_is_an_error_naming_the_op(
        ids: list[int], op: str, bound: int) -> None:
    graph = _lookup_and_scatter()
    state = {"w": np.arange(15, dtype=np.float32).reshape(5, 3)}
    exe = NumbaCudaExecutable({"lookup": graph}, state)
    assert exe.entries["lookup"].checks_indices
    scope = "embedding" if op == "gather" else "histogram"
    with pytest.raises(KilnValueError, match=rf"@lookup: {op} \(%{scope}\.{op}\): expected "
                                             rf"indices in \[0, {bound}\)\. Received: an "
                                             rf"index out of range"):
        exe.run("lookup", {"ids": np.array(ids, np.int64)})
    # The flag is zero again for the next call, which matches the reference from the
    # state the failed call left (it ran to its end: one update).
    good = {"ids": np.array([1, 2, 1], np.int64)}
    ref_state = {"w": np.arange(15, dtype=np.float32).reshape(5, 3) * 0.5}
    expected = ReferenceExecutable({"lookup": graph}, ref_state).run("lookup", good)
    np.testing.assert_allclose(exe.run("lookup", good)["counts"], expected["counts"])


def test_a_view_whose_storage_a_later_node_overwrites_is_a_copy() -> None:
    """%1 = reshape(%s) cannot be a view: the state's update, written in place by the next
    node, overwrites %s while %1 is alive. (The plan keeps an arena value's slot while a
    reshape of it lives, so a reshape of an intermediate is a view: %4.)"""
    b = GraphBuilder("alias")
    s = b.state("s", TensorType((6,), "float32"))
    r = b.reshape(b.exp(s), shape=(3, 2))
    kept = b.reshape(s, shape=(2, 3))
    b.update(s, b.neg(s))
    b.output(b.add(kept, 1.0), "y")
    b.output(b.add(r, 2.0), "z")
    graph = b.build()
    state = {"s": np.linspace(-1, 1, 6, dtype=np.float32)}
    exe = NumbaCudaExecutable({"alias": graph}, {k: v.copy() for k, v in state.items()})
    e = exe.entries["alias"]
    ops = [n.op for n in e.optimized.nodes]
    assert ops[:4] == ["exp", "reshape", "reshape", "neg"], ops
    assert e.plan.in_place == (("s", e.optimized.nodes[3].output.name),)  # the hazard
    assert 2 not in e.views and e.views.get(1) == "reshape"
    expected, new_state = run_graph(graph, {}, {k: v.copy() for k, v in state.items()})
    got = exe.run("alias", {})
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
    exe.sync_state()
    np.testing.assert_array_equal(exe.state["s"], new_state["s"])
