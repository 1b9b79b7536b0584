"""GraphBuilder (names, scalar coercion, attribute errors, updates, inlining) and the verifier
on hand-made broken graphs."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import (
    ArrayAttr,
    Graph,
    GraphBuilder,
    KilnTypeError,
    KilnValueError,
    Node,
    Value,
    VerifyError,
    f32,
    f64,
    i32,
    i64,
    verify,
)
from kiln.runtimes.reference import run_graph


# -- names -----------------------------------------------------------------------------------
def test_scopes_prefix_names_and_repeated_names_get_suffixes() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with b.scope("dense"):
        first = b.relu(x)
        second = b.relu(first)
        named = b.neg(second, name="out")
        with b.scope("inner"):
            deep = b.tanh(named)
    after = b.neg(deep, name="out")
    assert [first.name, second.name, named.name, deep.name, after.name] == [
        "dense.relu", "dense.relu.1", "dense.out", "dense.inner.tanh", "out"]


def test_unscoped_values_are_numbered_around_taken_names() -> None:
    b = GraphBuilder()
    x = b.input("0", f32[2])
    b.input("2", f32[2])
    names = [b.neg(x).name for _ in range(3)]
    assert names == ["1", "3", "4"]
    assert b.neg(x, name="y").name == "y"
    assert b.neg(x, name="y").name == "y.1"


def test_scope_is_popped_when_the_block_raises() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with pytest.raises(KilnTypeError), b.scope("layer"):
        b.log(b.cast(x, dtype="int32"))
    assert not b.neg(x).name.startswith("layer")


def test_every_value_name_is_unique() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    v = x
    for k in range(30):
        with b.scope(["a", "b", "a.b"][k % 3]):
            v = b.add(v, b.neg(v, name=["n", None, "x"][k % 3]))
    b.output(v, "y")
    graph = b.build()
    names = [value.name for value in graph.values()]
    assert len(names) == len(set(names))


def test_duplicate_signature_and_output_names_are_rejected() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[2])
    with pytest.raises(KilnValueError, match=r"graph @g: the name %x is already used"):
        b.input("x", f32[2])
    with pytest.raises(KilnValueError, match=r"%x is already used"):
        b.state("x", f32[2])
    b.output(x, "y")
    with pytest.raises(KilnValueError, match=r"two outputs are named 'y'"):
        b.output(b.neg(x), "y")


# -- operands and attributes -----------------------------------------------------------------
@pytest.mark.parametrize("t, scalar, value", [
    (f64[3], 2, 2.0), (f32[3], True, 1.0), (i32[3], 4, 4), (i64[3], np.int8(-2), -2),
    (f32[3], np.float64(0.5), 0.5), (i64[3], 3.0, 3),
])
@pytest.mark.parametrize("scalar_first", [False, True])
def test_python_scalars_become_constants_of_the_other_dtype(t, scalar, value,  # noqa: ANN001
                                                            scalar_first: bool) -> None:
    b = GraphBuilder()
    x = b.input("x", t)
    y = b.sub(scalar, x) if scalar_first else b.sub(x, scalar)
    const = b.nodes[-2]
    assert const.op == "constant"
    assert const.output.type == t.with_shape(())
    assert const.attr["dtype"] == t.dtype
    assert type(const.attr["value"]) is type(value) and const.attr["value"] == value
    assert y.type == t


def test_array_operands_become_array_constants_of_the_other_dtype() -> None:
    b = GraphBuilder()
    x = b.input("x", f64[2, 3])
    y = b.add(x, np.arange(3))
    const = b.nodes[-2].attr["value"]
    assert isinstance(const, ArrayAttr) and const.array.dtype == np.float64
    assert y.type == f64[2, 3]


def test_two_scalars_default_to_float32() -> None:
    b = GraphBuilder()
    assert b.add(1, 2.5).type == f32[()]


def test_scalar_branch_of_where_takes_the_other_branch_dtype() -> None:
    b = GraphBuilder()
    cond = b.input("c", f32[3].with_dtype("bool"))
    x = b.input("x", f64[3])
    assert b.where(cond, x, 0.0).type == f64[3]
    assert b.where(cond, 1.0, x).type == f64[3]


def test_non_integral_float_with_an_int_operand_is_an_error() -> None:
    b = GraphBuilder()
    x = b.input("x", i32[3])
    with pytest.raises(KilnTypeError):
        b.add(x, 1.7)


def test_operands_that_are_not_values_or_numbers_are_rejected() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with pytest.raises(KilnTypeError, match=r"add: expected operand 1 to be a Value or a number"):
        b.add(x, "one")


def test_wrong_operand_count() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with pytest.raises(KilnTypeError, match=r"add: expected 2 operands \(x, y\). Received: 1"):
        b.add(x)


def test_unknown_op_in_the_builder() -> None:
    b = GraphBuilder()
    with pytest.raises(KilnValueError, match="Unknown op 'frobnicate'"):
        b.frobnicate(1.0)
    with pytest.raises(KilnValueError, match="Unknown op 'frobnicate'"):
        b.op("frobnicate")


def test_unknown_attribute_names_the_op_and_the_allowed_ones() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with pytest.raises(KilnValueError, match=r"sum: unknown attribute 'axis'; expected one of "
                                             r"\['axes', 'keepdims'\]. Received: axis=1"):
        b.sum(x, axis=1)


def test_missing_required_attribute() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    with pytest.raises(KilnValueError, match="reshape: attribute 'shape' is required"):
        b.reshape(x)
    with pytest.raises(KilnValueError, match="constant: attribute 'value' is required"):
        b.op("constant")


def test_type_errors_name_the_scope() -> None:
    b = GraphBuilder()
    x = b.input("x", i32[2])
    with pytest.raises(KilnTypeError, match=r"^log in encoder.dense \(x=%x: i32\[2\]\)"), \
            b.scope("encoder"), b.scope("dense"):
        b.log(x)


def test_attributes_are_frozen() -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2, 3])
    b.sum(x, axes=[0, np.int64(1)], keepdims=np.bool_(True))
    attrs = b.nodes[-1].attr
    assert attrs["axes"] == (0, 1) and type(attrs["axes"][1]) is int
    assert attrs["keepdims"] is True


# -- updates ---------------------------------------------------------------------------------
def test_update_checks_target_and_type() -> None:
    b = GraphBuilder("step")
    x = b.input("x", f32[3])
    s = b.state("s", f32[3])
    b.update(s, b.add(s, x))
    b.update("s", b.mul(s, x))  # by name; the last update wins
    with pytest.raises(KilnTypeError, match=r"update of state %s expected type f32\[3\]. "
                                            r"Received: %c: f64\[3\]"):
        b.update(s, b.cast(x, dtype="float64", name="c"))
    with pytest.raises(KilnValueError, match=r"graph @step: %x is not a state value"):
        b.update(x, x)
    with pytest.raises(KilnValueError, match=r"%nope is not a state value"):
        b.update("nope", x)
    b.output(x, "y")
    graph = b.build()
    assert [(name, v.name) for name, v in graph.updates] == [("s", "1")]


# -- call ------------------------------------------------------------------------------------
def callee() -> Graph:
    b = GraphBuilder("layer")
    x = b.input("x", f32["N", 2])
    w = b.state("w", f32[2])
    y = b.mul(x, w)
    b.output(b.add(y, 1.0), "out")
    b.update(w, b.add(w, 1.0))
    return b.build()


def test_call_inlines_with_fresh_names_and_binds_state() -> None:
    inner = callee()
    b = GraphBuilder("outer")
    x = b.input("x", f32["N", 2])
    w = b.state("w0", f32[2])
    b.neg(x)  # takes the name "0", which the callee's first value also has
    outs1, ups1 = b.call(inner, {"x": x}, {"w": w})
    with b.scope("second"):
        outs2, _ = b.call(inner, [outs1["out"]], {"w": w})
    assert set(outs1) == {"out"} and set(ups1) == {"w"}
    b.output(outs2["out"], "y")
    b.update(w, ups1["w"])
    graph = b.build()
    names = [v.name for v in graph.values()]
    assert len(names) == len(set(names))
    assert any(n.startswith("second.") for n in names)
    assert {v.name for v in inner.values()} - {"x", "w"} <= set(names)

    xs = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    ws = np.array([0.5, 2.0], np.float32)
    outputs, state = run_graph(graph, {"x": xs}, {"w0": ws})
    np.testing.assert_allclose(outputs["y"], (xs * ws + 1) * ws + 1)
    np.testing.assert_allclose(state["w0"], ws + 1)


def test_call_checks_bindings() -> None:
    inner = callee()
    b = GraphBuilder()
    x = b.input("x", f32["N", 2])
    x3 = b.input("x3", f32["N", 3])
    w = b.state("w", f32[2])
    w64 = b.state("w64", f64[2])
    with pytest.raises(KilnTypeError, match=r"inlining @layer: %x expected type f32\[N,2\]. "
                                            r"Received: %x3: f32\[N,3\]"):
        b.call(inner, {"x": x3}, {"w": w})
    with pytest.raises(KilnTypeError, match=r"inlining @layer: %w expected type f32\[2\]. "
                                            r"Received: %w64: f64\[2\]"):
        b.call(inner, [x], {"w": w64})
    with pytest.raises(KilnValueError, match=r"inlining @layer: no value given for %w"):
        b.call(inner, [x])
    with pytest.raises(KilnValueError, match=r"no value given for %x"):
        b.call(inner, {"y": x}, {"w": w})


def test_call_with_the_wrong_number_of_positional_inputs() -> None:
    b = GraphBuilder()
    x = b.input("x", f32["N", 2])
    with pytest.raises(KilnValueError, match="@layer"):
        b.call(callee(), [x, x], {"w": b.state("w", f32[2])})


# -- verifier --------------------------------------------------------------------------------
X = Value("x", f32[3])
S = Value("s", f32[3])


def neg(src: Value, name: str, t=None) -> Node:  # noqa: ANN001
    return Node.make("neg", [src], [Value(name, t or src.type)])


def test_a_good_hand_made_graph_verifies() -> None:
    a = neg(X, "a")
    verify(Graph("g", (X,), (S,), (a,), (("y", a.output),), (("s", a.output),)))


def test_use_before_definition() -> None:
    b_val = Value("b", f32[3])
    nodes = (Node.make("neg", [b_val], [Value("a", f32[3])]), neg(X, "b"))
    with pytest.raises(VerifyError, match=r"@g node 0 \(neg -> %a\): uses %b before it is "
                                          r"defined"):
        verify(Graph("g", (X,), (), nodes, (("y", nodes[1].output),)))


@pytest.mark.parametrize("case", ["two nodes", "input and node", "input and state"])
def test_duplicate_names(case: str) -> None:
    if case == "two nodes":
        graph = Graph("g", (X,), (), (neg(X, "a"), neg(X, "a")))
    elif case == "input and node":
        graph = Graph("g", (X,), (), (neg(X, "x"),))
    else:
        graph = Graph("g", (X,), (Value("x", f32[3]),))
    with pytest.raises(VerifyError, match=r"%(a|x) is defined twice"):
        verify(graph)


def test_wrong_node_output_type() -> None:
    node = neg(X, "a", f32[4])
    with pytest.raises(VerifyError, match=r"node 0 \(neg -> %a\): output types f32\[4\] do not "
                                          r"match the type rule's f32\[3\]"):
        verify(Graph("g", (X,), (), (node,)))


def test_use_with_a_type_other_than_the_definition() -> None:
    node = Node.make("neg", [Value("x", f64[3])], [Value("a", f64[3])])
    with pytest.raises(VerifyError, match=r"%x is used as f64\[3\] but defined as f32\[3\]"):
        verify(Graph("g", (X,), (), (node,)))


def test_wrong_graph_output_type() -> None:
    node = neg(X, "a")
    with pytest.raises(VerifyError, match=r"@g: output y refers to unknown %a"):
        verify(Graph("g", (X,), (), (node,), (("y", Value("a", f64[3])),)))
    with pytest.raises(VerifyError, match=r"output y refers to unknown %zz"):
        verify(Graph("g", (X,), (), (node,), (("y", Value("zz", f32[3])),)))


def test_duplicate_output_names() -> None:
    node = neg(X, "a")
    with pytest.raises(VerifyError, match=r"two outputs are named 'y'"):
        verify(Graph("g", (X,), (), (node,), (("y", X), ("y", node.output))))


def test_wrong_update_type() -> None:
    wide = Node.make("cast", [X], [Value("a", f64[3])], {"dtype": "float64"})
    with pytest.raises(VerifyError, match=r"@g: update of %s has type f64\[3\], state is "
                                          r"f32\[3\]"):
        verify(Graph("g", (X,), (S,), (wide,), (), (("s", wide.output),)))


def test_update_of_something_that_is_not_state() -> None:
    with pytest.raises(VerifyError, match=r"update of %x, which is not a state value"):
        verify(Graph("g", (X,), (S,), (), (), (("x", X),)))
    with pytest.raises(VerifyError, match=r"update of %s refers to unknown %ghost"):
        verify(Graph("g", (X,), (S,), (), (), (("s", Value("ghost", f32[3])),)))


def test_two_updates_of_one_state_value() -> None:
    a = neg(X, "a")
    with pytest.raises(VerifyError, match="%s"):
        verify(Graph("g", (X,), (S,), (a,), (), (("s", a.output), ("s", X))))


def test_verifier_rejects_an_unknown_op() -> None:
    node = Node.make("frobnicate", [X], [Value("a", f32[3])])
    with pytest.raises(VerifyError, match=r"node 0 \(frobnicate -> %a\): Unknown op "
                                          r"'frobnicate'"):
        verify(Graph("g", (X,), (), (node,)))


def test_attribute_errors_are_verify_errors() -> None:
    missing = Node.make("reshape", [X], [Value("a", f32[3])])
    with pytest.raises(VerifyError, match=r"node 0 \(reshape -> %a\): .*'shape' is required"):
        verify(Graph("g", (X,), (), (missing,)))
    unknown = Node.make("neg", [X], [Value("a", f32[3])], {"alpha": 1.0})
    with pytest.raises(VerifyError, match=r"unknown attribute 'alpha'"):
        verify(Graph("g", (X,), (), (unknown,)))
    partial = Node.make("sum", [X], [Value("a", f32[()])], {"axes": None})
    with pytest.raises(VerifyError, match=r"attributes \['axes'\] expected \['axes', "
                                          r"'keepdims'\]"):
        verify(Graph("g", (X,), (), (partial,)))


def test_wrong_arity_and_type_rule_failures_are_verify_errors() -> None:
    arity = Node.make("add", [X], [Value("a", f32[3])])
    with pytest.raises(VerifyError, match=r"node 0 \(add -> %a\): add: expected 2 operands"):
        verify(Graph("g", (X,), (), (arity,)))
    ints = Value("i", i32[3])
    rule = Node.make("add", [X, ints], [Value("a", f32[3])])
    with pytest.raises(VerifyError, match=r"node 0 \(add -> %a\): expected operands of one "
                                          r"dtype"):
        verify(Graph("g", (X, ints), (), (rule,)))


def test_build_verifies_and_can_skip_it() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[3])
    b.nodes.append(Node.make("neg", [x], [Value("bad", f32[4])]))
    b.output(x, "y")
    with pytest.raises(VerifyError, match="%bad"):
        b.build()
    assert b.build(verify=False).nodes[0].output.name == "bad"
