"""The model a `kiln compile` SOURCE stands for: a user's .py script (run as their own code,
under the module name `__kiln_source__`, so an `if __name__ == "__main__":` block does not run)
that defines `model` or `build_model()`; or a .kiln artifact, loaded (never executed).
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from kiln.ir.errors import KilnError
from kiln.tools.errors import CommandError

RUN_NAME = "__kiln_source__"


def model_from_script(path: str) -> Any:
    """Run the script `path` and return its `model` (or what its `build_model()` returns).

    An exception in the script becomes one CommandError naming the script's own line that
    raised it; kiln's own errors keep their message.
    """
    script = Path(path)
    folder = str(script.resolve().parent)
    # As `python script.py` would: the script's folder first on the path, for its own imports.
    sys.path.insert(0, folder)
    try:
        namespace = runpy.run_path(str(script), run_name=RUN_NAME)
        if "model" in namespace and namespace["model"] is not None:
            model, origin = namespace["model"], "its `model`"
        elif callable(namespace.get("build_model")):
            model, origin = namespace["build_model"](), "its `build_model()`"
        else:
            raise CommandError(f"{path}: expected the script to define `model` or "
                               "`build_model()`. Received: a script defining neither")
    except CommandError:
        raise
    except SyntaxError as err:
        raise CommandError(f"{err.filename or path}:{err.lineno}: {err.msg}") from None
    except KilnError as err:
        raise CommandError(f"{path}{_user_line(err, script)}: {_one_line(err)}") from None
    except SystemExit as err:
        raise CommandError(f"{path}: the script exited (status {err.code}) before defining "
                           "a model") from None
    except Exception as err:  # the user's own code failed: say where, in one line
        raise CommandError(f"{path}{_user_line(err, script)}: {type(err).__name__}: "
                           f"{_one_line(err)}") from None
    finally:
        if sys.path and sys.path[0] == folder:
            del sys.path[0]
    if not (hasattr(model, "save") and hasattr(model, "forward_graph")):
        raise CommandError(f"{path}: expected {origin} to be a kiln model "
                           f"(kiln.models.Sequential or Model). Received: "
                           f"{type(model).__module__}.{type(model).__name__}")
    return model


def _user_line(err: BaseException, script: Path) -> str:
    """":LINE" of the deepest frame in the script itself, or "" when none is."""
    target = script.resolve()
    line = ""
    for frame in traceback.extract_tb(err.__traceback__):
        try:
            if Path(frame.filename).resolve() == target:
                line = f":{frame.lineno}"
        except OSError:
            continue
    return line


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split("\n")).strip() or type(err).__name__
