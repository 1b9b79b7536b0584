"""`kiln profile`: where an artifact's entry point spends its time, node by node, on a backend.

The inputs come from .npy files (`--input`, as `kiln run` takes them), or are made up at
`--batch-size`: float inputs drawn from a standard normal (seed 0), integer inputs zeros (an
index valid for any embedding and any sparse target). The state is the artifact's; a profiled
training step trains a copy, and the artifact is never written.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from kiln.compiler.artifact import EntryPoint, read_artifact
from kiln.compiler.pass_manager import CompileOptions
from kiln.runtimes.profiling import BACKENDS
from kiln.tools.cmd_run import load_inputs
from kiln.tools.cmd_show import level_of
from kiln.tools.errors import CommandError


def profile_command(args: argparse.Namespace) -> int:
    from kiln.runtimes import create_executable

    artifact = read_artifact(args.artifact)
    if args.entry not in artifact.entries:
        raise CommandError(f"--entry: {args.artifact} has no entry point {args.entry!r}; "
                           f"expected one of {', '.join(artifact.entries)}")
    entry = artifact.entries[args.entry]
    where = f"{args.entry} of {args.artifact}"
    if args.input:
        feed, _ = load_inputs(args.input, entry, where)
    else:
        feed = synthetic_inputs(entry, args.batch_size, where)
    backend = args.backend or artifact.backend
    if backend not in BACKENDS:
        raise CommandError(f"--backend: the {backend} backend cannot profile yet; expected "
                           f"one of {', '.join(BACKENDS)}")
    state = {name: np.array(artifact.state[name]) for name in entry.state}
    executable = create_executable(backend, {args.entry: artifact.graph(args.entry, "input")},
                                   state, CompileOptions(level_of(artifact)))
    result = executable.profile(args.entry, feed, repeats=args.repeats, warmup=args.warmup)
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(result.table(top=args.top or None))
    return 0


def synthetic_inputs(entry: EntryPoint, batch: int, where: str) -> dict[str, np.ndarray]:
    """Made-up arrays of `entry`'s signature with `batch` samples (see the module's text)."""
    rng = np.random.default_rng(0)
    feed = {}
    for spec in entry.inputs:
        if any(d is None for d in spec.shape[1:]):
            raise CommandError(f"input {spec.name!r} of {where} has a free axis besides the "
                               f"batch (shape {tuple(spec.shape)}); give it with --input "
                               f"{spec.name}=FILE.npy")
        shape = (batch, *spec.shape[1:]) if spec.shape and spec.shape[0] is None else spec.shape
        dtype = np.dtype(spec.dtype)
        feed[spec.name] = (rng.standard_normal(shape).astype(dtype) if dtype.kind == "f"
                           else np.zeros(shape, dtype))
    return feed
