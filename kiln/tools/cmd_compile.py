"""`kiln compile`: a model script, an ONNX model or an artifact, compiled for a backend at a
optional IR dumps after any pass) and written as a .kiln artifact, then summarized.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiln.compiler.artifact import SUFFIX, Artifact, read_artifact
from kiln.compiler.pass_manager import DEFAULT_LEVEL, CompileOptions, compile_graph
from kiln.compiler.passes import PASSES
from kiln.tools.cmd_show import format_bytes, level_of, parameter_count, signature_text
from kiln.tools.errors import CommandError
from kiln.tools.source import model_from_script


def compile_command(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if not source.exists():
        raise CommandError(f"SOURCE: no such file: {args.source}")
    if source.is_dir():
        raise CommandError(f"SOURCE: expected a .py model script, an .onnx model or a "
                           f"{SUFFIX} artifact. Received: {args.source}, a directory")
    check_output_path(args.output, "-o")
    dump_after = _dump_after(args)
    kind = source.suffix.lower()
    if kind == ".onnx":
        from kiln.frontends.onnx import import_onnx

        level = DEFAULT_LEVEL if args.level is None else args.level
        model = import_onnx(args.source)
    elif kind == ".py":
        level = DEFAULT_LEVEL if args.level is None else args.level
        model = model_from_script(args.source)
    elif kind == SUFFIX:
        from kiln.models import load_model

        previous = read_artifact(args.source)  # a damaged file is refused before any work
        level = level_of(previous) if args.level is None else args.level
        model = load_model(args.source, backend=args.backend)
    else:
        raise CommandError(f"SOURCE: expected a .py model script, an .onnx model or a "
                           f"{SUFFIX} artifact. Received: {args.source}")
    model.compile_options = CompileOptions(level, args.dump_ir, dump_after)
    model.save(args.output, backend=args.backend)
    artifact = read_artifact(args.output)  # what was written reads back, or this says why
    print(summary(artifact, args, stats=args.stats))
    return 0


def check_output_path(path: str, option: str) -> None:
    """Refuse an artifact path save() would refuse, before any work is done."""
    target = Path(path)
    if target.suffix != SUFFIX:
        raise CommandError(f"{option}: expected an artifact path ending in {SUFFIX}. "
                           f"Received: {path}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise CommandError(f"{option}: no such folder: {folder}")
    if target.is_dir():
        raise CommandError(f"{option}: expected a file path. Received: {path}, a directory")


def _dump_after(args: argparse.Namespace) -> str | tuple[str, ...] | None:
    if not args.dump_ir_after:
        return None
    if args.dump_ir is None:
        raise CommandError("--dump-ir-after: expected --dump-ir DIR too, the folder the dumps "
                           "go to")
    names = [n.strip() for item in args.dump_ir_after for n in item.split(",") if n.strip()]
    if "all" in names:
        return "all"
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise CommandError(f"--dump-ir-after: expected pass names among "
                           f"{', '.join(sorted(PASSES))} or 'all'. Received: "
                           f"{', '.join(map(repr, unknown))}")
    return tuple(dict.fromkeys(names))


def summary(artifact: Artifact, args: argparse.Namespace, stats: bool) -> str:
    """What `kiln compile` prints: entry points, backend, parameters, the pass statistics
    (one line per entry, or full tables with --stats), dumps, and the file written."""
    params, param_bytes = parameter_count(artifact)
    level = level_of(artifact)
    lines = [f"compiled {args.source} for {artifact.backend} at -O{level}",
             f"  parameters  {params:,} ({format_bytes(param_bytes)}); state "
             f"{len(artifact.state)} arrays"]
    for entry in artifact.entries.values():
        lines.append(f"  {signature_text(entry)}")
    # The stored input IR through the same pipeline again: the backend's compile does not
    # report its figures, and the passes are quick beside code generation.
    lines.append("  passes")
    for name in artifact.entries:
        _, run = compile_graph(artifact.graph(name, "input"), level)
        if stats:
            lines.append(f"    {name}:")
            lines += ["      " + row for row in run.format().splitlines()]
            continue
        first, last = run.passes[0], run.passes[-1]
        peak = run.peak_bytes
        lines.append(f"    {name}: {len(run.passes)} passes, {first.nodes_before} -> "
                     f"{last.nodes_after} nodes, {last.kernels_after} kernels"
                     + (f", planned peak {format_bytes(peak)}" if peak is not None else "")
                     + f", {run.seconds * 1e3:.1f} ms")
    if args.dump_ir is not None:
        dumps = sorted(Path(args.dump_ir).rglob("*.kir"))
        lines.append(f"  IR dumps    {len(dumps)} files under {args.dump_ir}")
    size = Path(artifact.path).stat().st_size
    lines.append(f"wrote {artifact.path} ({format_bytes(size)})")
    return "\n".join(lines)
