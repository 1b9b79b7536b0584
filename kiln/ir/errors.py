"""kiln's exception family. Every error a user can cause derives from KilnError.

The classes also subclass the built-in exception a Keras user would catch (ValueError,
TypeError), so `except ValueError` keeps working.
"""

from __future__ import annotations


class KilnError(Exception):
    """Root of every error kiln raises on bad input."""


class KilnTypeError(KilnError, TypeError):
    """A value has the wrong dtype, rank or shape for where it is used."""


class KilnValueError(KilnError, ValueError):
    """An argument or attribute has a value outside what is accepted."""


class VerifyError(KilnError, ValueError):
    """A graph breaks an IR invariant (SSA, types, topological order)."""


class ParseError(KilnError, ValueError):
    """IR text that does not parse; carries the line and column (1-based)."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
