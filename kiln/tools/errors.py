"""The command line's own user errors: one line, naming the file or option at fault.

The `kiln` entry point turns every KilnError (this one included) into `kiln: error: <message>`
on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

from kiln.ir.errors import KilnValueError


class CommandError(KilnValueError):
    """A command-line argument, file or value that the command cannot use."""
