"""`kiln ir`, `kiln info` and `kiln cache`: reading an artifact (its IR at any stage, its
signature, sizes and hashes) and the numba kernel cache. Nothing here runs a model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from kiln.compiler.artifact import Artifact, EntryPoint, TensorSpec, read_artifact
from kiln.compiler.pass_manager import DEFAULT_LEVEL, PassManager, pipeline_for
from kiln.ir.graph import Graph
from kiln.ir.printer import print_graph
from kiln.tools.errors import CommandError
from kiln.tools.feeds import format_shape


# -- shared descriptions ---------------------------------------------------------------------
def spec_text(spec: TensorSpec) -> str:
    return f"{spec.name} {format_shape(spec.shape)} {spec.dtype}"


def signature_text(entry: EntryPoint) -> str:
    """`predict(x (None, 4) float32) -> (dense_1 (None, 3) float32)`."""
    ins = ", ".join(spec_text(s) for s in entry.inputs)
    outs = ", ".join(spec_text(s) for s in entry.outputs)
    return f"{entry.name}({ins}) -> ({outs})"


def level_of(artifact: Artifact) -> int:
    """The pass level the artifact was compiled at."""
    level = artifact.compile_options.get("level", DEFAULT_LEVEL)
    return level if isinstance(level, int) and not isinstance(level, bool) else DEFAULT_LEVEL


def parameter_count(artifact: Artifact) -> tuple[int, int]:
    """(values, bytes) of the model's own arrays: the state predict reads (weights and
    statistics), not the optimizer's slots or the random key."""
    arrays = [artifact.state[name] for name in artifact.entries["predict"].state
              if name in artifact.state]
    return int(sum(a.size for a in arrays)), int(sum(a.nbytes for a in arrays))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- kiln ir ---------------------------------------------------------------------------------
def ir_command(args: argparse.Namespace) -> int:
    artifact = read_artifact(args.artifact)
    if args.entry not in artifact.entries:
        raise CommandError(f"{args.artifact}: --entry: expected an entry point among "
                           f"{', '.join(artifact.entries)}. Received: {args.entry!r}")
    stage = args.stage
    if stage in ("input", "optimized"):
        graph = artifact.graph(args.entry, stage)
        text = artifact.ir_text(args.entry, stage).rstrip("\n")
    elif stage.startswith("after:"):
        graph = graph_after(artifact, args.entry, stage[len("after:"):])
        text = print_graph(graph)
    else:
        raise CommandError(f"--stage: expected input, optimized or after:PASS. "
                           f"Received: {stage!r}")
    if args.format == "dot":
        from kiln.compiler.dot import to_dot

        text = to_dot(graph).rstrip("\n")
    elif args.format == "json":
        from kiln.tools.graph_json import graph_to_json

        text = graph_to_json(graph, entry=args.entry, stage=stage)
    print(text)
    return 0


def graph_after(artifact: Artifact, entry: str, selector: str) -> Graph:
    """The entry's stored input IR run through its pipeline up to `selector`: a pass name
    (its first run) or `name:K` (its K-th run, for passes the pipeline runs twice)."""
    level = level_of(artifact)
    pipeline = pipeline_for(level)
    name, _, nth = selector.partition(":")
    runs = [i for i, p in enumerate(pipeline) if p == name]
    listed = ", ".join(f"{p}:{pipeline[:i + 1].count(p)}" if pipeline.count(p) > 1 else p
                       for i, p in enumerate(pipeline))
    if not runs:
        raise CommandError(f"--stage after:{selector}: expected a pass of the -O{level} "
                           f"pipeline of {artifact.path}: {listed}. Received: {name!r}")
    if nth:
        if not nth.isdigit() or not 1 <= int(nth) <= len(runs):
            raise CommandError(f"--stage after:{selector}: the -O{level} pipeline runs "
                               f"{name!r} {len(runs)} time(s): expected K in 1..{len(runs)}. "
                               f"Received: {nth!r}")
        index = runs[int(nth) - 1]
    else:
        index = runs[0]
    return PassManager(pipeline[:index + 1]).run(artifact.graph(entry, "input"))


# -- kiln info -------------------------------------------------------------------------------
def info_command(args: argparse.Namespace) -> int:
    artifact = read_artifact(args.artifact)
    print(describe(artifact))
    return 0


def describe(artifact: Artifact) -> str:
    """The text `kiln info` prints."""
    manifest = artifact.manifest
    params, param_bytes = parameter_count(artifact)
    state_bytes = sum(a.nbytes for a in artifact.state.values())
    others = len(artifact.state) - len(artifact.entries["predict"].state)
    model = artifact.model_config
    model_name = model.get("config", {}).get("name") if isinstance(model.get("config"),
                                                                     dict) else None
    lines = [
        f"{artifact.path}: kiln artifact, {format_bytes(os.path.getsize(artifact.path))}",
        f"  format        {manifest.get('format')} version {manifest.get('format_version')}, "
        f"written by kiln {artifact.kiln_version}"
        + (f" on {manifest['created']}" if "created" in manifest else ""),
    ]
    if model.get("class_name") == "OnnxModel":
        config = model.get("config", {})
        lines.append(f"  model         OnnxModel imported from {config.get('source')!r}"
                     f" (opset {config.get('opset')}"
                     + (f", written by {config['producer']}" if config.get("producer") else "")
                     + "), inference only")
    elif model.get("class_name"):
        lines.append(f"  model         {model['class_name']}"
                     + (f" {model_name!r}" if model_name else ""))
    lines += [
        f"  backend       {artifact.backend}",
        "  compile       " + ", ".join(f"{k}={v}" for k, v in artifact.compile_options.items()),
        f"  parameters    {params:,} ({format_bytes(param_bytes)})",
        f"  state         {len(artifact.state)} arrays, {format_bytes(state_bytes)}"
        + (f" ({others} beyond the model's own: optimizer slots, step, random key)"
           if others else ""),
        "entry points",
    ]
    for entry in artifact.entries.values():
        extras = [f"{len(entry.state)} state"]
        if entry.name in artifact.onnx:
            extras.append("onnx")
        if entry.name in artifact.kernel_source:
            extras.append("kernel source")
        lines.append(f"  {signature_text(entry)}  [{', '.join(extras)}]")
    lines.append("members")
    rows = artifact.members()
    width = max(len(name) for name, _, _ in rows)
    for name, size, digest in rows:
        lines.append(f"  {name:<{width}}  {size:>10,d} B  sha256:{digest}")
    return "\n".join(lines)


# -- kiln cache ------------------------------------------------------------------------------
def _cache_contents(folder: Path) -> tuple[int, int, int]:
    """(generated modules, files, bytes) under the cache folder."""
    if not folder.exists():
        return 0, 0, 0
    files = [p for p in folder.rglob("*") if p.is_file()]
    modules = sum(1 for p in folder.glob("kiln_*.py"))
    return modules, len(files), sum(p.stat().st_size for p in files)


def cache_info_command(args: argparse.Namespace) -> int:
    from kiln.runtimes.numba.cache import cache_dir

    folder = cache_dir()
    modules, files, size = _cache_contents(folder)
    state = "" if folder.exists() else " (does not exist yet)"
    print(f"cache folder  {folder}{state}")
    print(f"modules       {modules} generated kernel modules")
    print(f"files         {files} ({format_bytes(size)}, compiled code included)")
    return 0


def cache_clear_command(args: argparse.Namespace) -> int:
    from kiln.runtimes.numba.cache import cache_dir, clear

    folder = cache_dir()
    _, files, size = _cache_contents(folder)
    modules = clear()
    if files == 0:
        print(f"{folder}: the cache is already empty")
    else:
        print(f"removed {modules} generated kernel modules ({files} files, "
              f"{format_bytes(size)}) from {folder}")
    return 0


def npz_summary(arrays: dict[str, np.ndarray]) -> str:
    """Each array's shape, dtype and first values, for printing."""
    lines = []
    for name, array in arrays.items():
        lines.append(f"{name}: shape {array.shape}, {array.dtype}")
        with np.printoptions(precision=5, threshold=24, edgeitems=3, linewidth=96):
            head = np.array2string(array[:3] if array.ndim else array)
        note = f" (first 3 of {array.shape[0]})" if array.ndim and array.shape[0] > 3 else ""
        lines.append("  " + head.replace("\n", "\n  ") + note)
    return "\n".join(lines)
