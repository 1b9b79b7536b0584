"""The pass manager: runs a pipeline of registered passes over a graph, verifying the IR
between passes, timing each one, and dumping the IR text before and after any of them.

    graph, stats = compile_graph(train_step, level=2, dump_dir="ir/")
    print(stats.format())

Dumps go to one file per stage, numbered in the order they were written: `00-input.kir`,
`01-after-infer_types.kir`, `02-after-fold_constants.kir`, ... (`NN-before-PASS.kir` for
dumps before a pass). Every file parses back with `kiln.ir.parse`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiln.compiler.passes import PASSES, collecting_notes, get_pass
from kiln.compiler.passes.fuse_elementwise import count_kernels
from kiln.ir.errors import KilnValueError, VerifyError
from kiln.ir.graph import Graph
from kiln.ir.printer import print_graph
from kiln.ir.verifier import verify as verify_graph

# Pass names in pipeline order per optimization level; names not registered are skipped.
PIPELINES: dict[int, tuple[str, ...]] = {
    0: ("infer_types", "plan_buffers"),
    1: ("infer_types", "fold_constants", "simplify", "cse", "dce", "plan_buffers"),
    2: ("infer_types", "fold_constants", "simplify", "cse", "dce",
        "fuse_conv_pool", "fuse_gemm_epilogue", "fuse_elementwise", "dce", "plan_buffers"),
}
DEFAULT_LEVEL = 2

DumpSelection = Iterable[str] | Literal["all"] | None


@dataclass(frozen=True)
class CompileOptions:
    """How a backend compiles its entry points: the -O level of the pass pipeline, and where
    (if anywhere) the pass manager dumps IR. Dumps of entry point E go to `dump_dir/E/`.

    `dump_after` is a pass name, a list of them, or "all"; with `dump_dir` alone every stage
    is dumped.
    """

    level: int = DEFAULT_LEVEL
    dump_dir: str | None = None
    dump_after: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.level not in PIPELINES:
            raise KilnValueError(f"optimization level: expected one of "
                                 f"{', '.join(map(str, sorted(PIPELINES)))}. "
                                 f"Received: level={self.level!r}")
        if self.dump_after not in (None, "all"):
            names = ((self.dump_after,) if isinstance(self.dump_after, str)
                     else tuple(self.dump_after))
            for name in names:
                if name not in PASSES:
                    raise KilnValueError(f"dump_after: expected a pass among "
                                         f"{', '.join(sorted(PASSES))} or 'all'. "
                                         f"Received: {name!r}")

    def compile(self, entry: str, graph: Graph) -> tuple[Graph, PassStats]:
        """`graph` (entry point `entry`) through this pipeline, dumping where asked."""
        dump_dir = str(Path(self.dump_dir) / entry) if self.dump_dir is not None else None
        return compile_graph(graph, self.level, dump_dir=dump_dir, dump_after=self.dump_after)

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level}


def pipeline_for(level: int = DEFAULT_LEVEL) -> list[str]:
    """The passes of -O`level`: 0 only what codegen needs, 1 the cleanups, 2 also fusion."""
    if level not in PIPELINES:
        raise KilnValueError(
            f"Expected an optimization level among {sorted(PIPELINES)}. Received: level={level!r}"
        )
    return [name for name in PIPELINES[level] if name in PASSES]


@dataclass
class PassStat:
    """One pass's run: wall time, top-level node counts, and what the pass noted (e.g.
    plan_buffers' "peak_bytes")."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    notes: dict[str, Any] = field(default_factory=dict)
    kernels_after: int = 0  # loops a backend launches (count_kernels)


@dataclass
class PassStats:
    """The record of one pipeline run, in pass order."""

    passes: list[PassStat] = field(default_factory=list)
    dumps: list[Path] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    @property
    def peak_bytes(self) -> int | None:
        """The planned peak memory, when plan_buffers has recorded it."""
        noted = [p.notes["peak_bytes"] for p in self.passes if "peak_bytes" in p.notes]
        return noted[-1] if noted else None

    def __getitem__(self, name: str) -> PassStat:
        """The (last) run of the pass `name`."""
        for stat in reversed(self.passes):
            if stat.name == name:
                return stat
        raise KeyError(name)

    def format(self) -> str:
        """A table: one row per pass with its time and node counts, and a total."""
        peak = any("peak_bytes" in p.notes for p in self.passes)
        width = max([len("pass"), len("total"), *(len(p.name) for p in self.passes)])
        head = (f"{'pass':<{width}}  {'ms':>9}  {'nodes before':>12}  {'nodes after':>11}  "
                f"{'kernels':>7}")
        lines = [head + ("  " + f"{'peak memory':>12}" if peak else "")]
        for p in self.passes:
            row = (f"{p.name:<{width}}  {p.seconds * 1e3:9.2f}  {p.nodes_before:12d}  "
                   f"{p.nodes_after:11d}  {p.kernels_after:7d}")
            if peak:
                row += "  " + (f"{_bytes(p.notes['peak_bytes']):>12}"
                               if "peak_bytes" in p.notes else " " * 12)
            lines.append(row)
        if self.passes:
            lines.append(f"{'total':<{width}}  {self.seconds * 1e3:9.2f}  "
                         f"{self.passes[0].nodes_before:12d}  {self.passes[-1].nodes_after:11d}  "
                         f"{self.passes[-1].kernels_after:7d}")
        for p in self.passes:
            if "peak_bytes" in p.notes and "no_reuse_bytes" in p.notes:
                lines.append(f"planned peak memory {_bytes(p.notes['peak_bytes'])} with buffer "
                             f"reuse, {_bytes(p.notes['no_reuse_bytes'])} without "
                             f"({p.notes.get('assumed', 'symbols at their planned sizes')})")
        return "\n".join(lines)

    __str__ = format


def _bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    index = 0
    while n >= 1024 and index < len(units) - 1:
        n /= 1024
        index += 1
    return f"{int(n)} B" if index == 0 else f"{n:.1f} {units[index]}"


class PassManager:
    """Runs `pipeline` (pass names, in order) over graphs.

    Args:
        pipeline: registered pass names; an unknown name is a KilnValueError listing the known
            ones.
        verify: run the IR verifier on the input and after every pass; a broken invariant is a
            VerifyError naming the pass that broke it.
        dump_dir: folder for IR dumps (created when missing). Given alone, it dumps the input
            and the IR after every pass.
        dump_after, dump_before: pass names (or "all") whose output / input IR is dumped.
        options: keyword arguments per pass name, e.g. {"simplify": {"disable": [...]}}.
    """

    def __init__(self, pipeline: Sequence[str], verify: bool = True,
                 dump_dir: str | Path | None = None, dump_after: DumpSelection = None,
                 dump_before: DumpSelection = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None):
        self.passes = [get_pass(name) for name in pipeline]
        self.verify = verify
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        if self.dump_dir is not None and dump_after is None and dump_before is None:
            dump_after = "all"
        self.dump_after = self._selection(dump_after, "dump_after")
        self.dump_before = self._selection(dump_before, "dump_before")
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        for name in self.options:
            get_pass(name)
        self.stats = PassStats()

    def _selection(self, selection: DumpSelection, what: str) -> set[str] | Literal["all"]:
        if selection is None:
            return set()
        if selection == "all":
            return "all"
        names = {selection} if isinstance(selection, str) else set(selection)
        for name in sorted(names):
            if name not in PASSES:
                raise KilnValueError(f"{what}: expected a pass among {', '.join(sorted(PASSES))} "
                                     f"or 'all'. Received: {name!r}")
        return names

    def run(self, graph: Graph) -> Graph:
        """The graph after every pass of the pipeline; `self.stats` records the run."""
        self.stats = PassStats()
        if self.verify:
            try:
                verify_graph(graph)
            except VerifyError as err:
                raise VerifyError(f"the input graph breaks an IR invariant, before any pass "
                                  f"ran: {err}") from None
        self._dump(graph, "input")
        for p in self.passes:
            if self._selected(self.dump_before, p.name):
                self._dump(graph, f"before-{p.name}")
            before = len(graph.nodes)
            start = time.perf_counter()
            with collecting_notes() as notes:
                try:
                    result = p.run(graph, **self.options.get(p.name, {}))
                except Exception as err:
                    err.add_note(f"in pass {p.name!r} of the pipeline {self.pipeline}")
                    raise
            seconds = time.perf_counter() - start
            if not isinstance(result, Graph):
                raise TypeError(f"pass {p.name!r} returned {type(result).__name__}, not a Graph")
            if self.verify:
                try:
                    verify_graph(result)
                except VerifyError as err:
                    raise VerifyError(f"pass {p.name!r} broke an IR invariant: {err}") from None
            self.stats.passes.append(PassStat(p.name, seconds, before, len(result.nodes),
                                              dict(notes), count_kernels(result)))
            graph = result
            if self._selected(self.dump_after, p.name):
                self._dump(graph, f"after-{p.name}")
        return graph

    @property
    def pipeline(self) -> list[str]:
        return [p.name for p in self.passes]

    @staticmethod
    def _selected(selection: set[str] | Literal["all"], name: str) -> bool:
        return selection == "all" or name in selection

    def _dump(self, graph: Graph, stage: str) -> None:
        if self.dump_dir is None:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"{len(self.stats.dumps):02d}-{stage}.kir"
        path.write_text(print_graph(graph) + "\n")
        self.stats.dumps.append(path)


def compile_graph(graph: Graph, level: int = DEFAULT_LEVEL, *, verify: bool = True,
                  dump_dir: str | Path | None = None, dump_after: DumpSelection = None,
                  dump_before: DumpSelection = None,
                  options: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> tuple[Graph, PassStats]:
    """Optimize `graph` with the pipeline of -O`level`; returns the graph and the run's stats."""
    manager = PassManager(pipeline_for(level), verify=verify, dump_dir=dump_dir,
                          dump_after=dump_after, dump_before=dump_before, options=options)
    result = manager.run(graph)
    return result, manager.stats
