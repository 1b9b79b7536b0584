"""The reference runtime: symbol binding, input checks, state updates, calls by name and
by position, and ReferenceExecutable keeping state across calls."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import Graph, GraphBuilder, KilnError, KilnTypeError, KilnValueError, f32, f64, i64
from kiln.runtimes.reference import ReferenceExecutable, evaluate, run_graph


def pair_graph() -> Graph:
    b = GraphBuilder("pair")
    a = b.input("a", f32["N", 3])
    c = b.input("c", f32["N", 3])
    b.output(b.add(a, c), "sum")
    b.output(b.sum(a, axes=0), "col")
    return b.build()


def zeros(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


# -- binding symbols -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7])
def test_symbols_bind_from_the_inputs(n: int) -> None:
    a = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    outputs, state = run_graph(pair_graph(), {"a": a, "c": a})
    assert state == {}
    np.testing.assert_array_equal(outputs["sum"], 2 * a)
    np.testing.assert_array_equal(outputs["col"], a.sum(axis=0))


def test_a_constant_shaped_by_a_symbol_takes_the_bound_size() -> None:
    b = GraphBuilder()
    x = b.input("x", f32["N", 2])
    b.output(b.constant(1.5, "float32", shape=("N", 2)), "ones")
    b.output(x, "x")
    outputs, _ = run_graph(b.build(), {"x": zeros(4, 2)})
    np.testing.assert_array_equal(outputs["ones"], np.full((4, 2), 1.5, np.float32))


def test_mismatched_symbol_between_inputs_names_the_value() -> None:
    with pytest.raises(KilnValueError, match=r"@pair: %c expected shape f32\[N,3\] "
                                             r"\(with \{'N': 2\}\). Received: shape \(3, 3\)"):
        run_graph(pair_graph(), {"a": zeros(2, 3), "c": zeros(3, 3)})


def test_a_symbol_bound_by_an_input_also_constrains_state() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32["N"])
    s = b.state("s", f32["N"])
    b.output(b.add(x, s), "y")
    with pytest.raises(KilnValueError, match=r"%s expected shape f32\[N\]"):
        run_graph(b.build(), {"x": zeros(2)}, {"s": zeros(5)})


def test_wrong_static_dim() -> None:
    with pytest.raises(KilnValueError, match=r"%a expected shape f32\[N,3\].*Received: shape "
                                             r"\(2, 4\)"):
        run_graph(pair_graph(), {"a": zeros(2, 4), "c": zeros(2, 3)})


@pytest.mark.parametrize("bad", [zeros(2, 3, dtype=np.float64), zeros(2, 3, dtype=np.int32),
                                 np.array([[1.0, 2.0, 3.0]])])
def test_wrong_dtype_is_a_type_error_naming_the_value(bad: np.ndarray) -> None:
    with pytest.raises(KilnTypeError, match=rf"@pair: %a expected dtype float32. Received: "
                                            rf"{bad.dtype}"):
        run_graph(pair_graph(), {"a": bad, "c": zeros(len(bad), 3)})


@pytest.mark.parametrize("shape", [(2,), (2, 3, 1), ()])
def test_wrong_rank_names_the_value_and_its_type(shape: tuple) -> None:
    with pytest.raises(KilnError, match=r"@pair: %a expected shape f32\[N,3\]. Received: "
                                        r"shape \(") as info:
        run_graph(pair_graph(), {"a": np.zeros(shape, np.float32), "c": zeros(2, 3)})
    assert isinstance(info.value, (KilnTypeError, KilnValueError))


# -- calling conventions ---------------------------------------------------------------------
def test_run_graph_by_name_and_by_position_agree() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.ones((2, 3), np.float32)
    by_name, _ = run_graph(pair_graph(), {"c": c, "a": a})
    by_position, _ = run_graph(pair_graph(), [a, c])
    assert list(by_name) == list(by_position) == ["sum", "col"]
    for key in by_name:
        np.testing.assert_array_equal(by_name[key], by_position[key])
    outputs, _ = evaluate(pair_graph(), [a, c])
    np.testing.assert_array_equal(outputs[0], by_name["sum"])


def test_missing_inputs_and_state_are_named() -> None:
    with pytest.raises(KilnValueError, match=r"@pair: no value given for input %c"):
        run_graph(pair_graph(), {"a": zeros(2, 3)})
    with pytest.raises(KilnValueError, match=r"expected 2 inputs and 0 state values. "
                                             r"Received: 1 and 0"):
        run_graph(pair_graph(), [zeros(2, 3)])
    with pytest.raises(KilnValueError, match=r"@counter: no value given for state %count"):
        run_graph(counter(), {"step": np.array(1.0)})


# -- state -----------------------------------------------------------------------------------
def counter() -> Graph:
    """Outputs the count before and after the call, adds `step`, and counts calls in an int."""
    b = GraphBuilder("counter")
    step = b.input("step", f64[()])
    count = b.state("count", f64[()])
    calls = b.state("calls", i64[()])
    b.state("frozen", f64[2])
    after = b.add(count, step)
    b.output(count, "before")
    b.output(after, "after")
    b.update(count, after)
    b.update(calls, b.add(calls, 1))
    return b.build()


def start() -> dict[str, np.ndarray]:
    return {"count": np.array(10.0), "calls": np.array(0, np.int64),
            "frozen": np.array([1.0, 2.0])}


def test_run_graph_returns_new_state_and_leaves_the_given_state_alone() -> None:
    given = start()
    outputs, state = run_graph(counter(), {"step": np.array(2.5)}, given)
    assert outputs["before"] == 10.0 and outputs["after"] == 12.5
    assert state["count"] == 12.5 and state["calls"] == 1
    np.testing.assert_array_equal(state["frozen"], [1.0, 2.0])  # no update: unchanged
    for key, value in start().items():
        np.testing.assert_array_equal(given[key], value)


def test_executable_keeps_state_across_calls() -> None:
    exe = ReferenceExecutable({"tick": counter()}, start())
    seen = [float(exe.run("tick", {"step": np.array(1.5)})["after"]) for _ in range(3)]
    seen.append(float(exe.run("tick", [np.array(-4.5)])["after"]))
    assert seen == [11.5, 13.0, 14.5, 10.0]
    assert exe.state["count"] == 10.0 and exe.state["calls"] == 4
    assert exe.state["calls"].dtype == np.int64
    np.testing.assert_array_equal(exe.state["frozen"], [1.0, 2.0])


def test_an_output_that_is_state_keeps_its_value_from_the_call() -> None:
    exe = ReferenceExecutable({"tick": counter()}, start())
    first = exe.run("tick", {"step": np.array(1.5)})
    second = exe.run("tick", {"step": np.array(1.5)})
    assert float(first["before"]) == 10.0 and float(second["before"]) == 11.5


def test_executable_shares_state_between_entry_points() -> None:
    b = GraphBuilder("read")
    b.input("unused", f64[()])
    b.output(b.state("count", f64[()]), "count")
    exe = ReferenceExecutable({"tick": counter(), "read": b.build()}, start())
    exe.run("tick", {"step": np.array(5.0)})
    assert exe.run("read", {"unused": np.array(0.0)})["count"] == 15.0


def test_state_is_checked_like_inputs() -> None:
    exe = ReferenceExecutable({"tick": counter()},
                              {**start(), "count": np.array(1.0, np.float32)})
    with pytest.raises(KilnTypeError, match=r"@counter: %count expected dtype float64"):
        exe.run("tick", {"step": np.array(1.0)})


def test_executable_without_a_state_value_names_it() -> None:
    exe = ReferenceExecutable({"tick": counter()}, {"count": np.array(0.0)})
    with pytest.raises(KilnValueError, match="%calls"):
        exe.run("tick", {"step": np.array(1.0)})


def test_outputs_have_exactly_the_declared_dtype() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[4])
    b.output(b.mean(x), "m")
    b.output(b.argmax(x), "i")
    outputs, _ = run_graph(b.build(), {"x": np.arange(4, dtype=np.float32)})
    assert outputs["m"].dtype == np.float32 and outputs["m"].shape == ()
    assert outputs["i"].dtype == np.int64 and outputs["i"] == 3
