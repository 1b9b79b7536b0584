"""The IR text format: print/parse round trips (names, outputs, state, every attribute kind),
bit-exact floats, deterministic printing, and ParseErrors that point at the right place."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import (
    OPS,
    ArrayAttr,
    Graph,
    GraphBuilder,
    Node,
    ParseError,
    Value,
    f32,
    f64,
    parse,
    print_graph,
)
from kiln.ir.registry import define

SETTINGS = settings(max_examples=50, deadline=None)
CARRIER = "test.attrs"  # an op whose attribute `a` accepts any value; registered per module


@pytest.fixture(scope="module", autouse=True)
def attribute_carrier() -> Iterator[None]:
    """Every real op checks its attributes; this test-only op carries any value as `a`."""
    define(CARRIER, family="test", inputs=("x",), infer=lambda types, attrs: [types[0]],
           reference=lambda ctx, x, a: x, differentiable=False, attrs={"a": None})
    try:
        yield
    finally:
        del OPS[CARRIER]


def carrier_graph(value: Any) -> Graph:
    b = GraphBuilder("attrs")
    x = b.input("x", f32[2])
    b.output(b.op(CARRIER, x, a=value), "y")
    return b.build()


def round_trip(graph: Graph) -> Graph:
    text = str(graph)
    parsed = parse(text)
    assert str(parsed) == text
    return parsed


def parsed_attr(value: Any) -> Any:
    return round_trip(carrier_graph(value)).nodes[0].attr["a"]


def same(a: Any, b: Any) -> bool:
    """Equal with types (True is not 1, 1.0 is not 1) and float bits (nan, -0.0) compared."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- graphs ----------------------------------------------------------------------------------
def test_a_documented_graph_round_trips() -> None:
    b = GraphBuilder("predict")
    x = b.input("x", f32["N", 4])
    w = b.state("dense.kernel", f32["N", 4])
    with b.scope("dense"):
        h = b.relu(b.mul(x, w))
    b.output(h, "y")
    graph = b.build()
    text = str(graph)
    assert text == "\n".join([
        "graph @predict(%x: f32[N,4]) state(%dense.kernel: f32[N,4]) {",
        "  %dense.mul = mul(%x, %dense.kernel) : f32[N,4]",
        "  %dense.relu = relu(%dense.mul) : f32[N,4]",
        "  return %dense.relu as y",
        "}",
    ])
    assert text == print_graph(graph)
    assert round_trip(graph) == graph


def test_state_updates_and_output_renaming_round_trip() -> None:
    b = GraphBuilder("train.step")
    x = b.input("x", f32[3])
    s = b.state("opt.m", f32[3])
    t = b.state("opt.t", f32[()])
    m = b.add(s, x, name="m.new")
    b.output(m)                       # same name: printed without `as`
    b.output(m, "m.copy")             # renamed
    b.output(x, "passthrough")        # an input as an output
    b.update(s, m)
    b.update(t, b.add(t, 1.0))
    graph = b.build()
    text = str(graph)
    assert "return %m.new, %m.new as m.copy, %x as passthrough" in text
    assert "  update %opt.m = %m.new" in text
    parsed = round_trip(graph)
    assert parsed == graph
    assert parsed.output_names == ("m.new", "m.copy", "passthrough")
    assert [name for name, _ in parsed.updates] == ["opt.m", "opt.t"]


QUOTED = ["a b", "with\"quote", "back\\slash", "naïve", "日本", "line\nbreak", "", "x:y",
          "%pct", "@at", "{brace}", "a,b", "#hash", "0\n", "y\n"]  # a trailing newline too


@pytest.mark.parametrize("name", ["a.b.c", "0", "7.5", "x-y", "a/b", ".lead", "-", *QUOTED])
def test_value_graph_and_state_names_round_trip(name: str) -> None:
    b = GraphBuilder(name)
    x = b.input(name, f32[2])
    s = b.state(name + "!s", f32[2])
    y = b.neg(x, name=name + ".neg")
    b.output(y, "out")
    b.update(s, y)
    graph = b.build()
    parsed = round_trip(graph)
    assert parsed == graph
    assert parsed.name == name and parsed.inputs[0].name == name


@SETTINGS
@given(st.text(min_size=1, max_size=12))
def test_any_value_name_round_trips(name: str) -> None:
    b = GraphBuilder(name)
    x = b.input(name, f32[2])
    b.output(b.neg(x, name=name + ".n"), "y")
    graph = b.build()
    assert round_trip(graph) == graph


@pytest.mark.parametrize("name", ["y", "a.b", "as", "return", "none", "-inf", "x-y", "007",
                                  "1e5", *[q for q in QUOTED if q]])
def test_output_names_round_trip(name: str) -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    b.output(b.neg(x), name)
    graph = b.build()
    assert round_trip(graph).output_names == (name,)


@pytest.mark.parametrize("name", ["12abc", ".hidden", "/x", "-", "1.2.3", "1.5e"])
def test_output_names_that_are_not_tokens_round_trip(name: str) -> None:
    b = GraphBuilder()
    x = b.input("x", f32[2])
    b.output(b.neg(x), name)
    assert round_trip(b.build()).output_names == (name,)


def test_comments_and_whitespace_are_ignored() -> None:
    text = """
    # a comment before the graph
    graph @g(%x: f32[N, 3])   {   # trailing comment
        %y=neg( %x ):f32[N,3]
      return %y as out
    }
    """
    graph = parse(text)
    assert graph.output_names == ("out",)
    assert graph.inputs[0].type == f32["N", 3]


# -- attributes ------------------------------------------------------------------------------
ATTRIBUTES = [
    None, True, False, 0, 7, -3, 2**70, -(2**70), 0.5, -2.25, 1e-07, -1e-07, 1e16, 1e300,
    5e-324, 0.1, 1.0, -0.0, 0.0, math.inf, -math.inf, "", "plain", 'say "hi"', "back\\slash",
    "unicode: ✓ é 日本 🙂", "new\nline\ttab", "none", "true", "nan", "inf",
    (), (1, 2, 3), (-1, 0.5, "s", None, True), ((1, 2), (), ((3,), (-4.5, math.inf))),
]


@pytest.mark.parametrize("value", ATTRIBUTES, ids=repr)
def test_attribute_kinds_round_trip_exactly(value: Any) -> None:
    graph = carrier_graph(value)
    assert same(parsed_attr(value), value)
    if not (isinstance(value, float) and value == 0.0):  # 0.0 == -0.0; `same` checked bits
        assert round_trip(graph) == graph


def test_lists_become_tuples() -> None:
    assert same(parsed_attr([1, [2, 3]]), (1, (2, 3)))
    assert same(carrier_graph([1, [2.0]]).nodes[0].attr["a"], (1, (2.0,)))


def test_nan_attribute_round_trips_by_text_and_bits() -> None:
    graph = carrier_graph(math.nan)
    assert "{a=nan}" in str(graph)
    value = parsed_attr(math.nan)
    assert isinstance(value, float) and math.isnan(value)
    nested = parsed_attr((math.nan, [math.nan]))
    assert math.isnan(nested[0]) and math.isnan(nested[1][0])


def test_float_attributes_print_as_shortest_repr() -> None:
    text = str(carrier_graph((1e-07, -0.0, 3.0, 0.1, math.inf, -math.inf)))
    assert "{a=[1e-07, -0.0, 3.0, 0.1, inf, -inf]}" in text


@SETTINGS
@given(st.floats(allow_nan=False))
def test_every_float_attribute_survives_bit_exactly(value: float) -> None:
    assert same(parsed_attr(value), value)


@SETTINGS
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4).map(tuple), max_leaves=12))
def test_nested_attributes_survive_exactly(value: Any) -> None:
    assert same(parsed_attr(value), value)


ARRAYS = [
    np.array([[1.5, -0.0, np.inf], [-np.inf, 1e-45, 3.4028235e38]], np.float32),
    np.array([0.1, -2.5e-308, 5e-324, np.nan], np.float64),
    np.array([[-(2**31), 0], [7, 2**31 - 1]], np.int32),
    np.array([-(2**63), 2**63 - 1, 0], np.int64),
    np.array([[True, False, True]]),
    np.zeros((2, 0), np.float32),
    np.array(2.5, np.float64),
    np.array(np.nan, np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_array_attributes_round_trip_bit_exactly(array: np.ndarray) -> None:
    b = GraphBuilder("arrays")
    attr = ArrayAttr(array)
    c = b.op("constant", value=attr, dtype=str(array.dtype), shape=array.shape)
    b.output(c, "c")
    graph = b.build()
    assert "array<" in str(graph)
    parsed = round_trip(graph)
    assert parsed == graph
    got = parsed.nodes[0].attr["value"]
    assert isinstance(got, ArrayAttr)
    assert got.array.dtype == array.dtype and got.array.shape == array.shape
    assert got.array.tobytes() == array.tobytes()


@SETTINGS
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=6))
def test_float32_array_attributes_survive_bit_exactly(items: list[float]) -> None:
    array = np.array(items, np.float32)
    b = GraphBuilder()
    b.output(b.constant(array), "c")
    assert round_trip(b.build()).nodes[0].attr["value"].array.tobytes() == array.tobytes()


# -- determinism -----------------------------------------------------------------------------
def build_sample(order: int) -> Graph:
    b = GraphBuilder("det")
    x = b.input("x", f32["N", 3])
    attrs = {"axes": (1,), "keepdims": True}
    if order:
        attrs = dict(reversed(list(attrs.items())))
    y = b.sum(b.mul(x, 2.0), **attrs)
    b.output(b.op(CARRIER, y, a=(3, "z")), "y")
    return b.build()


def test_printing_is_deterministic() -> None:
    first, second = build_sample(0), build_sample(1)
    assert first == second
    assert str(first) == str(second) == str(first)
    assert "{axes=[1], keepdims=true}" in str(first)
    assert str(parse(str(first))) == str(first)


# -- errors ----------------------------------------------------------------------------------
BASE = """graph @g(%x: f32[N,3]) state(%s: f32[3]) {
  %y = neg(%x) : f32[N,3]
  %w = cast(%x) {dtype="float64"} : f64[N,3]
  %z = add(%y, %x) : f32[N,3]
  return %z
  update %s = %s
}"""


def test_the_error_base_parses() -> None:
    parse(BASE)


@pytest.mark.parametrize(
    "old, new, line, column, words",
    [
        ("neg(%x)", "negate(%x)", 2, 3, "unknown op 'negate'"),
        ("add(%y, %x)", "add(%v, %x)", 4, 12, "%v is used before it is defined"),
        ("return %z", "return %q", 5, 10, "%q is used before it is defined"),
        ("%z = add", "%y = add", 4, 3, "%y is defined twice"),
        ("state(%s: f32[3])", "state(%x: f32[3])", 1, 30, "%x is defined twice"),
        ("add(%y, %x) :", "add(%y, %x)", 4, 20, "expected ':'"),
        ("neg(%x) : f32", "neg(%x) : f16", 2, 18, "expected a dtype"),
        ("@g(%x: f32", "@g(%x: x32", 1, 14, "expected a dtype"),
        ("add(%y, %x) : f32[N,3]", "add(%y, %x) : f32[N,4]", 4, 3,
         "declared types f32[N,4] differ from the type rule's f32[N,3]"),
        ("add(%y, %x)", "add(%y, %w)", 4, 3, "expected operands of one dtype"),
        ("return %z\n  update", "return %z\n  nonsense\n  update", 6, 3, "expected a node"),
        ("\n}", "\n} trailing", 7, 3, "expected end of input"),
        ('{dtype="float64"}', '{dtype="float64}', 3, 24, "unexpected character"),
        ('{dtype="float64"}', '{dtype=float64}', 3, 24, "expected an attribute value"),
        ('{dtype="float64"}', '{dtype="float64", bogus=1}', 3, 3, "unknown attribute 'bogus'"),
        ("f32[N,3]) state", "f32[N,-3]) state", 1, 20, "expected a dimension"),
    ],
)
def test_parse_errors_point_at_line_and_column(old: str, new: str, line: int, column: int,
                                               words: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(ParseError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert words in str(err)
    assert str(err).startswith(f"line {line}, column {column}: ")


def test_the_type_rule_checks_every_line() -> None:
    """A mismatch on line k is reported on line k, for every k."""
    lines = ["graph @chain(%x: f32[4]) {"]
    for k in range(5):
        lines.append(f"  %v{k + 1} = neg(%v{k}) : f32[4]" if k else "  %v1 = neg(%x) : f32[4]")
    lines += ["  return %v5", "}"]
    for k in range(1, 6):
        broken = list(lines)
        broken[k] = broken[k].replace("f32[4]", "f32[5]")
        with pytest.raises(ParseError, match="differ from the type rule") as info:
            parse("\n".join(broken))
        assert (info.value.line, info.value.column) == (k + 1, 3)


def test_unexpected_end_of_input() -> None:
    with pytest.raises(ParseError, match="end of input") as info:
        parse("graph @g(%x: f32[3]) {\n  %y = neg(%x)")
    assert info.value.line == 2


def test_parse_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse("graph")


@pytest.mark.parametrize("old, new", [("update %s = %s", "update %s = %y"),
                                      ("return %z", "return %z, %y as z")])
def test_signature_level_errors_point_at_their_line(old: str, new: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(BASE.replace(old, new))
    assert info.value.line == (6 if "update" in old else 5)


def test_verifier_errors_surface_as_parse_errors() -> None:
    with pytest.raises(ParseError, match="line 6, column 15: update of %s: f32\\[3\\] expected"):
        parse(BASE.replace("update %s = %s", "update %s = %y"))


def test_hand_made_graph_with_a_nested_tuple_attribute_round_trips() -> None:
    x = Value("x", f64[2])
    y = Value("y", f64[2])
    node = Node.make(CARRIER, [x], [y], {"a": [[1, -2], [3.5, "q"], []]})
    graph = Graph("hand", (x,), (), (node,), (("y", y),))
    assert round_trip(graph) == graph


@pytest.mark.parametrize("literal", ['"a\nb"', '"\\q"'])
def test_malformed_string_literals_raise_parse_error(literal: str) -> None:
    text = BASE.replace('"float64"', literal)
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (3, 24)
