"""Writing Python source for Numba: indented lines, unique identifiers, typed literals.

Generated code is code too: every name it uses derives from the IR value it holds, and every
number it writes is typed (np.float32(0.5), not 0.5), because Numba would otherwise widen a
float32 computation to float64 at the first Python float it meets.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence

from kiln.ir.graph import ArrayAttr, Node
from kiln.ir.printer import format_attr, format_node

# IR dtype -> the NumPy scalar type the generated code names
NP_TYPE = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32",
           "int64": "np.int64", "bool": "np.bool_"}


class SourceWriter:
    """Lines of Python with an indentation level."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.level = 0

    def line(self, text: str = "") -> None:
        self.lines.append("    " * self.level + text if text else "")

    def comment(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.line(f"# {part}")

    @contextlib.contextmanager
    def block(self, header: str) -> Iterator[None]:
        """`header:` then an indented block."""
        self.line(header + ":")
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    @contextlib.contextmanager
    def loops(self, indices: Sequence[str], extents: Sequence[str]) -> Iterator[None]:
        """Nested `for index in range(extent)` loops, outermost first."""
        for index, extent in zip(indices, extents, strict=True):
            self.line(f"for {index} in range({extent}):")
            self.level += 1
        try:
            yield
        finally:
            self.level -= len(indices)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class Namer:
    """Unique Python identifiers made from IR names: %dense_1.kernel -> dense_1_kernel."""

    def __init__(self, reserved: Sequence[str] = ()):
        self.used: set[str] = set(reserved)

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint).strip("_") or "v"
        if base[0].isdigit():
            base = "v" + base
        name, k = base, 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def float_literal(value: float) -> str:
    """A float as Python source that reads back bit-exactly (inf and nan included)."""
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


def typed(value: float | int | bool, dtype: str) -> str:
    """A scalar of the given IR dtype as a source expression."""
    if dtype == "bool":
        return "True" if value else "False"
    if dtype in ("int32", "int64"):
        return f"{NP_TYPE[dtype]}({int(value)})"
    return f"{NP_TYPE[dtype]}({float_literal(float(value))})"


def tuple_text(items: Sequence[str]) -> str:
    if len(items) == 1:
        return f"({items[0]},)"
    return "(" + ", ".join(items) + ")"


def product_text(dims: Sequence[str]) -> str:
    """The product of dimension expressions; "1" for none. Literals multiply out."""
    factor, rest = 1, []
    for d in dims:
        if d.isdigit():
            factor *= int(d)
        else:
            rest.append(d)
    if factor == 0:
        return "0"
    if factor != 1 or not rest:
        rest.append(str(factor))
    return " * ".join(rest)


def group(expr: str) -> str:
    """expr parenthesized unless it is a name or a number."""
    return expr if expr.isidentifier() or expr.isdigit() else f"({expr})"


def ir_line(node: Node) -> str:
    """The node's line in the IR text, array attributes shortened to their type: constants
    travel as arguments, so their values stay out of the source and its cache key."""
    text = format_node(node)
    for _, value in node.attrs:
        if isinstance(value, ArrayAttr):
            full = format_attr(value)
            text = text.replace(full, full[:full.index(">") + 1] + "[...]")
    return text
