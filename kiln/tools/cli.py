"""The `kiln` command line: compile a model to a .kiln artifact, run and train it, read its IR,
describe it, and manage the kernel cache. docs/cli.md documents every command.

Every user error (a bad option, a missing or damaged file, data of the wrong shape) ends the
command with one line on stderr, `kiln: error: ...`, and exit status 1 (2 for a malformed
command line); only a fault inside kiln itself shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from kiln.ir.errors import KilnError

PROG = "kiln"
EXIT_USER_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _backend(name: str) -> str:
    from kiln.runtimes import check_backend

    try:
        return check_backend(name)
    except KilnError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _level(text: str) -> int:
    from kiln.compiler.pass_manager import PIPELINES

    levels = ", ".join(str(k) for k in sorted(PIPELINES))
    try:
        level = int(text)
    except ValueError:
        level = -1
    if level not in PIPELINES:
        raise argparse.ArgumentTypeError(f"expected an optimization level among {levels}. "
                                         f"Received: {text!r}")
    return level


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer. Received: {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1). Received: {text!r}")
    return value


def _version() -> str:
    from kiln import __version__

    try:
        from kiln.compiler.artifact import FORMAT_VERSION
    except ImportError:  # a build without the artifact module still says its version
        return f"{PROG} {__version__}"
    return f"{PROG} {__version__} (artifact format {FORMAT_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, each subcommand bound to its function."""
    from kiln.tools import cmd_compile, cmd_profile, cmd_run, cmd_show

    parser = _Parser(prog=PROG, description="kiln: a deep-learning compiler with a Keras face. "
                     "Compile a model to a .kiln artifact, run and train it, read its IR.",
                     epilog="Run 'kiln COMMAND --help' for a command's options; docs/cli.md has "
                     "an example session.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    from kiln.runtimes import AVAILABLE

    backend_help = f"backend: {', '.join(AVAILABLE)}"

    p = commands.add_parser(
        "compile", help="compile a model (.py script, .onnx model or .kiln artifact) to a "
        ".kiln artifact",
        description="Compile SOURCE to an artifact. SOURCE is a .py script defining `model` "
        "or `build_model()` (run as your own code; an `if __name__ == '__main__':` block does "
        "not run), an .onnx model (imported for inference: a predict entry point, no "
        "train_step), or a .kiln artifact to compile again, e.g. for another backend.")
    p.add_argument("source", metavar="SOURCE",
                   help="a .py model script, an .onnx model or a .kiln artifact")
    p.add_argument("-o", "--output", metavar="OUT.kiln", required=True,
                   help="the artifact to write (replaced atomically)")
    p.add_argument("--backend", type=_backend, metavar="B",
                   help=f"{backend_help}; default: the model's own, else $KILN_BACKEND")
    p.add_argument("-O", dest="level", type=_level, metavar="LEVEL",
                   help="pass pipeline: 0 only what codegen needs, 1 cleanups, 2 also fusion "
                   "(default: 2, or the artifact's own when recompiling)")
    p.add_argument("--dump-ir", metavar="DIR",
                   help="write the IR of each entry point before and after passes to "
                   "DIR/ENTRY/NN-after-PASS.kir")
    p.add_argument("--dump-ir-after", metavar="PASS|all", action="append",
                   help="dump only after these passes (repeat or separate with commas; "
                   "needs --dump-ir)")
    p.add_argument("--stats", action="store_true",
                   help="print the full table of pass times and node counts per entry point")
    p.set_defaults(handler=cmd_compile.compile_command)

    p = commands.add_parser(
        "run", help="run an artifact's predict entry point on .npy inputs",
        description="Feed .npy arrays to the artifact's predict entry point. Shapes and "
        "dtypes are checked against its signature before anything runs.")
    p.add_argument("artifact", metavar="ARTIFACT", help="a .kiln artifact")
    p.add_argument("--input", "-i", metavar="[NAME=]FILE.npy", action="append", required=True,
                   help="an input array; NAME may be left out when predict has one input")
    p.add_argument("--output", "-o", metavar="OUT.npz",
                   help="write the outputs here, keyed by output name (default: print a "
                   "summary)")
    p.add_argument("--backend", type=_backend, metavar="B",
                   help=f"{backend_help}; default: the artifact's")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="K",
                   help="samples per call (default: 32)")
    p.set_defaults(handler=cmd_run.run_command)

    p = commands.add_parser(
        "train", help="train an artifact on an .npz data set and write the trained artifact",
        description="Continue training the artifact's model (weights and optimizer state) on "
        "the arrays of an .npz file, with a progress bar, then write the trained artifact.")
    p.add_argument("artifact", metavar="ARTIFACT", help="a .kiln artifact")
    p.add_argument("--data", required=True, metavar="FILE.npz", help="the training arrays")
    p.add_argument("--x", action="append", metavar="[NAME=]KEY",
                   help="the key of the inputs in FILE.npz (default: x); for several inputs "
                   "repeat NAME=KEY per input name (default: keys named after the inputs)")
    p.add_argument("--y", action="append", metavar="[NAME=]KEY",
                   help="the key of the targets (default: y); for several outputs NAME=KEY per "
                   "output name (default: keys named after the outputs)")
    p.add_argument("--epochs", type=_positive_int, default=1, metavar="E",
                   help="passes over the data (default: 1)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="K",
                   help="samples per training step (default: 32)")
    p.add_argument("--validation-split", type=_fraction, default=0.0, metavar="F",
                   help="hold out the last fraction F of the samples for validation")
    p.add_argument("--backend", type=_backend, metavar="B",
                   help=f"{backend_help}; default: the artifact's")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 silent, 1 progress bar (default), 2 one line per epoch")
    p.add_argument("-o", "--output", metavar="OUT.kiln",
                   help="where to write the trained artifact (default: replace ARTIFACT, "
                   "atomically)")
    p.set_defaults(handler=cmd_run.train_command)

    p = commands.add_parser(
        "profile", help="time an entry point of an artifact node by node on a backend",
        description="Run an entry point of the artifact repeatedly on a backend and print "
        "the median time of each node of the graph that ran (numba and onnxruntime: the "
        "optimized graph; reference: the graph as written), slowest first, then the sum per "
        "op. Inputs come from --input files, else are made up at --batch-size (floats "
        "normal, integers zeros). A training step trains a copy of the state; the artifact "
        "is not written.")
    p.add_argument("artifact", metavar="ARTIFACT", help="a .kiln artifact")
    p.add_argument("--entry", default="predict", metavar="E",
                   help="predict (default), train_step or test_step")
    p.add_argument("--input", "-i", metavar="[NAME=]FILE.npy", action="append",
                   help="an input array (repeat per input; default: made-up inputs)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="K",
                   help="samples of the made-up inputs (default: 32)")
    p.add_argument("--backend", type=_backend, metavar="B",
                   help=f"{backend_help}; default: the artifact's")
    p.add_argument("--repeats", type=_positive_int, default=10, metavar="N",
                   help="timed calls, whose median each row gives (default: 10)")
    p.add_argument("--warmup", type=_count, default=2, metavar="W",
                   help="calls before timing starts (default: 2)")
    p.add_argument("--top", type=_count, default=20, metavar="K",
                   help="rows shown, slowest first (default: 20; 0: all)")
    p.add_argument("--format", default="text", choices=("text", "json"),
                   help="default: text")
    p.set_defaults(handler=cmd_profile.profile_command)

    p = commands.add_parser(
        "ir", help="print an entry point's IR as text, Graphviz dot or JSON",
        description="Print the IR of an entry point: as written (input), after the whole "
        "pipeline (optimized), or after one pass (after:PASS, or after:PASS:K for its K-th run "
        "in the pipeline), as IR text, Graphviz dot or JSON.")
    p.add_argument("artifact", metavar="ARTIFACT", help="a .kiln artifact")
    p.add_argument("--entry", default="predict", metavar="E",
                   help="predict (default), train_step or test_step")
    p.add_argument("--stage", default="optimized", metavar="input|optimized|after:PASS",
                   help="default: optimized")
    p.add_argument("--format", default="text", choices=("text", "dot", "json"),
                   help="default: text")
    p.set_defaults(handler=cmd_show.ir_command)

    p = commands.add_parser(
        "info", help="describe an artifact: entry points, backend, sizes, hashes",
        description="Describe an artifact: its entry points with their signatures, backend, "
        "compile options, versions, parameter count, state size, and each member's size and "
        "SHA-256.")
    p.add_argument("artifact", metavar="ARTIFACT", help="a .kiln artifact")
    p.set_defaults(handler=cmd_show.info_command)

    p = commands.add_parser(
        "cache", help="show or empty the cache of generated Numba kernels",
        description="The numba backend keeps generated kernels and their machine code in a "
        "cache folder ($KILN_CACHE_DIR/numba, default ~/.cache/kiln/numba).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    a = actions.add_parser("info", help="the cache's folder, modules and size")
    a.set_defaults(handler=cmd_show.cache_info_command)
    a = actions.add_parser("clear", help="delete every cached kernel module")
    a.set_defaults(handler=cmd_show.cache_clear_command)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # `kiln ir ... | head`: the reader left, which is no error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - let the exit flush go nowhere
        return 0
    except KilnError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # a path the user gave: unreadable, unwritable, missing
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROG}: error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
