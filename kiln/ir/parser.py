"""The IR text format, reading side: `parse(text) -> Graph`, the inverse of `str(graph)`.

A hand-written lexer and recursive-descent parser; every error carries line and column.
The parsed graph is verified (types are checked against each op's type rule).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kiln.ir.errors import KilnError, ParseError
from kiln.ir.graph import ArrayAttr, Graph, Node, Value
from kiln.ir.printer import array_from_flat
from kiln.ir.types import SHORT_TO_DTYPE, TensorType

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<newline>\n)
  | (?P<value>%(?:[A-Za-z0-9_./\-]+|"(?:[^"\\]|\\.)*"))
  | (?P<graphname>@(?:[A-Za-z0-9_./\-]+|"(?:[^"\\]|\\.)*"))
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![A-Za-z_]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_./\-]*)
  | (?P<punct>[()\[\]{},:=<>])
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str
    line: int
    column: int


def _tokenize(text: str) -> list[Token]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = match.lastgroup
        assert kind is not None
        if kind == "newline":
            line, line_start = line + 1, match.end()
        elif kind != "ws":
            lexeme = match.group()
            quoted = lexeme.lstrip("%@")
            if quoted.startswith('"'):
                try:
                    json.loads(quoted)
                except ValueError as err:
                    raise ParseError(f"bad string literal {quoted}: {err.msg}", line,
                                     pos - line_start + 1) from None
            tokens.append(Token(kind, lexeme, line, pos - line_start + 1))
        pos = match.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


def _unquote(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.tok
        found = repr(tok.text) if tok.text else "end of input"
        return ParseError(f"{message}; found {found}", tok.line, tok.column)

    def take(self, kind: str, text: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.error(f"expected {text!r}" if text else f"expected a {kind}")
        self.pos += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text == text):
            self.pos += 1
            return tok
        return None

    # -- grammar -------------------------------------------------------------------------
    def graph(self) -> Graph:
        self.take("ident", "graph")
        name = _unquote(self.take("graphname").text[1:])
        scope: dict[str, Value] = {}
        inputs = self.signature(scope)
        state: list[Value] = []
        if self.accept("ident", "state"):
            state = self.signature(scope)
        graph_attrs: list[tuple[str, object]] = []
        if self.accept("ident", "attributes"):
            self.take("punct", "{")
            graph_attrs = self.attr_items()
            keys = [k for k, _ in graph_attrs]
            if len(set(keys)) != len(keys):
                raise self.error(f"a graph attribute is given twice in {keys}")
        self.take("punct", "{")
        nodes, outputs, updates = [], [], []
        while True:
            tok = self.tok
            if tok.kind == "value":
                nodes.append(self.node(scope))
            elif tok.kind == "ident" and tok.text == "return":
                self.pos += 1
                while True:
                    start = self.tok
                    outputs.append(self.output(scope))
                    if outputs[-1][0] in [n for n, _ in outputs[:-1]]:
                        raise self.error(f"two outputs are named {outputs[-1][0]!r}", start)
                    if not self.accept("punct", ","):
                        break
            elif tok.kind == "ident" and tok.text == "update":
                self.pos += 1
                target_tok = self.take("value")
                target = _unquote(target_tok.text[1:])
                self.take("punct", "=")
                value_tok = self.tok
                value = self.use(scope)
                declared = next((v for v in state if v.name == target), None)
                if declared is None:
                    raise self.error(f"update of %{target}, which is not a state value",
                                     target_tok)
                if any(n == target for n, _ in updates):
                    raise self.error(f"%{target} is updated twice", target_tok)
                if value.type != declared.type:
                    raise self.error(f"update of %{target}: {declared.type} expected, "
                                     f"%{value.name} is {value.type}", value_tok)
                updates.append((target, value))
            elif self.accept("punct", "}"):
                break
            else:
                raise self.error("expected a node, 'return', 'update' or '}'")
        return Graph(name, tuple(inputs), tuple(state), tuple(nodes), tuple(outputs),
                     tuple(updates), tuple(sorted(graph_attrs, key=lambda kv: kv[0])))

    def signature(self, scope: dict[str, Value]) -> list[Value]:
        self.take("punct", "(")
        values: list[Value] = []
        if not self.accept("punct", ")"):
            while True:
                tok = self.take("value")
                name = _unquote(tok.text[1:])
                self.take("punct", ":")
                value = Value(name, self.type())
                if name in scope:
                    raise self.error(f"%{name} is defined twice", tok)
                scope[name] = value
                values.append(value)
                if self.accept("punct", ")"):
                    break
                self.take("punct", ",")
        return values

    def type(self) -> TensorType:
        tok = self.take("ident")
        if tok.text not in SHORT_TO_DTYPE:
            raise self.error(f"expected a dtype among {sorted(SHORT_TO_DTYPE)}", tok)
        self.take("punct", "[")
        dims: list[int | str] = []
        if not self.accept("punct", "]"):
            while True:
                dim = self.tok
                if dim.kind == "number" and dim.text.isdigit():
                    dims.append(int(dim.text))
                elif dim.kind == "ident" and not dim.text.startswith("-"):
                    dims.append(dim.text)
                else:
                    raise self.error("expected a dimension (an int or a symbol)")
                self.pos += 1
                if self.accept("punct", "]"):
                    break
                self.take("punct", ",")
        return TensorType(tuple(dims), SHORT_TO_DTYPE[tok.text])

    def use(self, scope: dict[str, Value]) -> Value:
        tok = self.take("value")
        name = _unquote(tok.text[1:])
        if name not in scope:
            raise self.error(f"%{name} is used before it is defined", tok)
        return scope[name]

    def output(self, scope: dict[str, Value]) -> tuple[str, Value]:
        value = self.use(scope)
        if self.accept("ident", "as"):
            tok = self.tok
            if tok.kind not in ("ident", "string", "number"):
                raise self.error("expected an output name")
            self.pos += 1
            return _unquote(tok.text), value
        return value.name, value

    def node(self, scope: dict[str, Value]) -> Node:
        start = self.tok
        names = [_unquote(self.take("value").text[1:])]
        while self.accept("punct", ","):
            names.append(_unquote(self.take("value").text[1:]))
        self.take("punct", "=")
        op = self.take("ident").text
        self.take("punct", "(")
        inputs: list[Value] = []
        if not self.accept("punct", ")"):
            while True:
                inputs.append(self.use(scope))
                if self.accept("punct", ")"):
                    break
                self.take("punct", ",")
        attrs: list[tuple[str, object]] = []
        if self.accept("punct", "{"):
            attrs = self.attr_items()
        self.take("punct", ":")
        types = [self.type()]
        while self.accept("punct", ","):
            types.append(self.type())
        if len(types) != len(names):
            raise self.error(f"{len(names)} results but {len(types)} types", start)
        body = None
        if self.accept("punct", "{"):
            body = self.graph()
            self.take("punct", "}")
        attr_map = self.check_node(start, op, inputs, dict(attrs), types, body)
        outputs = []
        for name, t in zip(names, types):
            if name in scope:
                raise self.error(f"%{name} is defined twice", start)
            scope[name] = Value(name, t)
            outputs.append(scope[name])
        return Node.make(op, inputs, outputs, attr_map, body)

    def check_node(self, start: Token, op: str, inputs: list[Value], attrs: dict,
                   types: list[TensorType], body: Graph | None) -> dict:
        """Type-check a node as it is read, so an error points at its line."""
        from kiln.ir.registry import OPS

        opdef = OPS.get(op)
        if opdef is None:
            raise ParseError(f"unknown op {op!r}", start.line, start.column)
        try:
            opdef.check_arity(len(inputs))
            attrs = opdef.complete_attrs(attrs)
            if opdef.has_body != (body is not None):
                raise ParseError(f"{op} {'needs' if opdef.has_body else 'takes no'} body",
                                 start.line, start.column)
            in_types = [v.type for v in inputs]
            expected = (opdef.infer(in_types, attrs, body) if opdef.has_body
                        else opdef.infer(in_types, attrs))
        except ParseError:
            raise
        except KilnError as err:
            message = str(err) if str(err).startswith(op) else f"{op}: {err}"
            raise ParseError(message, start.line, start.column) from None
        if list(expected) != types:
            raise ParseError(
                f"{op}: declared types {', '.join(map(str, types))} differ from the type "
                f"rule's {', '.join(map(str, expected))}", start.line, start.column)
        return attrs

    def attr_items(self) -> list[tuple[str, object]]:
        """`key=value, ...}` after an opening brace (node and graph attributes)."""
        items: list[tuple[str, object]] = []
        while True:
            key = self.take("ident").text
            self.take("punct", "=")
            items.append((key, self.attr()))
            if self.accept("punct", "}"):
                return items
            self.take("punct", ",")

    def attr(self) -> object:
        tok = self.tok
        self.pos += 1
        if tok.kind == "number":
            return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        if tok.kind == "string":
            return json.loads(tok.text)
        if tok.kind == "ident":
            words = {"none": None, "true": True, "false": False, "nan": float("nan"),
                     "inf": float("inf"), "-inf": float("-inf")}
            if tok.text in words:
                return words[tok.text]
            if tok.text == "array":
                return self.array_attr()
        if tok.kind == "punct" and tok.text == "[":
            items: list[object] = []
            if not self.accept("punct", "]"):
                while True:
                    items.append(self.attr())
                    if self.accept("punct", "]"):
                        break
                    self.take("punct", ",")
            return tuple(items)
        raise self.error("expected an attribute value", tok)

    def array_attr(self) -> ArrayAttr:
        self.take("punct", "<")
        t = self.type()
        if not t.is_static:
            raise self.error("an array attribute needs a static shape")
        self.take("punct", ">")
        start = self.tok
        items = self.attr()
        if not isinstance(items, tuple):
            raise self.error("expected a list of array elements", start)
        try:
            return ArrayAttr(array_from_flat(list(items), t))
        except ValueError as err:
            raise self.error(f"array elements do not fit {t}: {err}", start) from None


def parse(text: str, verify: bool = True) -> Graph:
    """Parse IR text into a Graph; raises ParseError with line and column."""
    parser = _Parser(text)
    graph = parser.graph()
    if parser.tok.kind != "eof":
        raise parser.error("expected end of input after the graph")
    if verify:
        from kiln.ir.verifier import verify as verify_graph

        try:
            verify_graph(graph)
        except KilnError as err:
            raise ParseError(f"the graph does not verify: {err}", 1, 1) from None
    return graph
