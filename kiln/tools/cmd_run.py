"""`kiln run` and `kiln train`: an artifact fed with arrays from .npy / .npz files. `run`
executes the stored predict IR directly on a backend; `train` rebuilds the model from the
artifact (weights and optimizer state), fits it, and writes the trained artifact atomically.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kiln.compiler.artifact import Artifact, EntryPoint, read_artifact
from kiln.compiler.pass_manager import CompileOptions
from kiln.ir.errors import KilnError
from kiln.tools.cmd_compile import check_output_path
from kiln.tools.cmd_show import level_of, npz_summary
from kiln.tools.errors import CommandError
from kiln.tools.feeds import (
    check_batch,
    convert,
    load_npy,
    load_npz,
    match_names,
    parse_assignments,
)


# -- kiln run --------------------------------------------------------------------------------
def run_command(args: argparse.Namespace) -> int:
    artifact = read_artifact(args.artifact)
    entry = artifact.entries["predict"]
    feed, size = load_inputs(args.input, entry, f"predict of {args.artifact}")
    outputs = run_predict(artifact, entry, feed, size, args.backend, args.batch_size)
    if args.output:
        write_npz(args.output, outputs)
        shapes = ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in outputs.items())
        print(f"wrote {args.output}: {shapes}")
    else:
        print(npz_summary(outputs))
    return 0


def load_inputs(items: list[str], entry: EntryPoint, where: str,
                ) -> tuple[dict[str, np.ndarray], int]:
    """The arrays `--input [NAME=]FILE.npy` options name, one per input of `entry`, checked
    and converted to its signature, with their common sample count."""
    bare, named = parse_assignments(items, "--input")
    files = match_names(bare, named, [s.name for s in entry.inputs], "--input", "input",
                        where)
    feed, labels = {}, {}
    for spec in entry.inputs:
        path = files[spec.name]
        labels[spec.name] = path
        feed[spec.name] = convert(load_npy(path, f"--input {spec.name}"), spec.shape,
                                  spec.dtype, path, f"input {spec.name!r} of {where}")
    if not batch_first(entry):  # no batch axis in front (an imported model): one call
        return feed, 1
    return feed, check_batch(feed, labels, where)


def batch_first(entry: EntryPoint) -> bool:
    """Every input's first axis is the batch, so the inputs may be fed in slices of it."""
    return all(spec.shape and spec.shape[0] is None for spec in entry.inputs)


def run_predict(artifact: Artifact, entry: EntryPoint, feed: dict[str, np.ndarray],
                size: int, backend: str | None, batch_size: int) -> dict[str, np.ndarray]:
    """The predict entry point over `feed` in batches of `batch_size` (in one call when the
    inputs' first axis is not the batch), on `backend` (default: the artifact's), compiled
    from the stored input IR at the artifact's level."""
    from kiln.runtimes import create_executable

    graph = artifact.graph("predict", "input")
    # Fresh arrays: an executable may keep state resident and write to it.
    state = {name: np.array(artifact.state[name]) for name in entry.state}
    executable = create_executable(backend or artifact.backend, {"predict": graph}, state,
                                   CompileOptions(level_of(artifact)))
    if not batch_first(entry):  # an imported time-major model, say: one call, whole
        result = executable.run("predict", feed)
        return {spec.name: np.array(result[spec.name], copy=True) for spec in entry.outputs}
    parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in entry.outputs}
    for start in range(0, size, batch_size):
        batch = {name: array[start:start + batch_size] for name, array in feed.items()}
        result = executable.run("predict", batch)
        for name in parts:
            parts[name].append(np.array(result[name], copy=True))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """`arrays` as an .npz file, written to a temporary file and renamed over `path`."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise CommandError(f"--output: no such folder: {folder}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # a file object: savez adds no ".npz" to the name
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- kiln train ------------------------------------------------------------------------------
def train_command(args: argparse.Namespace) -> int:
    artifact = read_artifact(args.artifact)
    if "train_step" not in artifact.entries and artifact.model_config.get(
            "class_name") == "OnnxModel":
        raise CommandError(f"{args.artifact}: an imported ONNX model, for inference only (an "
                           f".onnx file holds no loss or optimizer, so the artifact has no "
                           f"train_step). Run it with `kiln run`")
    if "train_step" not in artifact.entries:
        raise CommandError(f"{args.artifact}: expected an artifact compiled for training (with "
                           f"a train_step entry point). Received: entry points "
                           f"{', '.join(artifact.entries)}; call model.compile(optimizer, "
                           f"loss) in the model script before `kiln compile`")
    output = args.output or args.artifact
    check_output_path(output, "-o")
    data = load_npz(args.data, "--data")
    predict = artifact.entries["predict"]
    x_keys = _keys(args.x, "--x", "x", [s.name for s in predict.inputs], data, args.data,
                   "input", partial=False, artifact=args.artifact)
    y_keys = _keys(args.y, "--y", "y", [s.name for s in predict.outputs], data, args.data,
                   "output", partial=True, artifact=args.artifact)
    xs = {spec.name: convert(data[x_keys[spec.name]], spec.shape, spec.dtype,
                             f"{args.data}[{x_keys[spec.name]!r}]",
                             f"input {spec.name!r} of {args.artifact}")
          for spec in predict.inputs}
    ys = {name: data[key] for name, key in y_keys.items()}
    # One count across inputs and targets; keys tagged so an input and an output may share
    # a name.
    arrays = {f"x:{k}": v for k, v in xs.items()} | {f"y:{k}": v for k, v in ys.items()}
    labels = ({f"x:{k}": f"{args.data}[{key!r}]" for k, key in x_keys.items()}
              | {f"y:{k}": f"{args.data}[{key!r}]" for k, key in y_keys.items()})
    check_batch(arrays, labels, args.data)

    from kiln.models import load_model

    model = load_model(args.artifact, backend=args.backend)
    x: Any = next(iter(xs.values())) if len(xs) == 1 else xs
    y: Any = next(iter(ys.values())) if len(predict.outputs) == 1 else ys
    try:
        history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                            validation_split=args.validation_split, verbose=args.verbose)
    except KilnError as err:
        # The frontend names the arrays x and y; say which file they came from.
        raise CommandError(f"{args.data}: {err}") from None
    model.save(output, backend=args.backend)
    logs = {k: v[-1] for k, v in history.history.items() if v}
    shown = ", ".join(f"{k} {_number(v)}" for k, v in logs.items())
    print(f"trained {args.epochs} epoch(s) on {len(next(iter(xs.values())))} samples"
          + (f": {shown}" if shown else ""))
    print(f"wrote {output}")
    return 0


def _number(value: Any) -> str:
    """A log value: a number, or a metric's values at several thresholds or classes."""
    if np.ndim(value):
        return "[" + " ".join(f"{v:.4g}" for v in np.ravel(value)) + "]"
    return f"{value:.4g}"


def _keys(items: list[str] | None, option: str, default: str, names: list[str],
          data: dict[str, np.ndarray], data_path: str, what: str, partial: bool,
          artifact: str) -> dict[str, str]:
    """Which key of the .npz feeds each input (or output) name. `partial`: outputs without a
    loss need no target, so not every output must be given one."""
    available = ", ".join(map(repr, data)) or "no arrays"
    if items:
        bare, named = parse_assignments(items, option)
        if partial and bare is None:
            unknown = [n for n in named if n not in names]
            if unknown:
                raise CommandError(f"{option}: expected {what} names of model {artifact} among "
                                   f"{', '.join(map(repr, names))}. Received: "
                                   f"{', '.join(map(repr, unknown))}")
            keys = dict(named)
        else:
            keys = match_names(bare, named, names, option, what, f"model {artifact}")
    elif len(names) == 1:
        keys = {names[0]: default}
    else:  # several: keys named after the inputs / outputs themselves
        keys = {n: n for n in names if n in data or not partial}
        if not keys:
            raise CommandError(f"{data_path}: expected arrays named after the {what}s "
                               f"{', '.join(map(repr, names))} (or {option} NAME=KEY). "
                               f"Received: {available}")
    for name, key in keys.items():
        if key not in data:
            raise CommandError(f"{data_path}: no array {key!r} for {what} {name!r} "
                               f"({option}). Received: an archive holding {available}")
    return keys
