"""The pass manager: pipelines per level, verification naming the pass at fault, numbered IR
dumps that parse back and are byte-identical across runs, stats, and the optimized train
steps computing what the originals compute."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.pass_manager import PassManager, compile_graph, pipeline_for
from kiln.compiler.passes import PASSES, Pass, note, register
from kiln.ir import Graph, KilnValueError, VerifyError, parse
from kiln.ir.graph import Value
from tests.compiler.differential import (
    MODELS,
    Case,
    assert_same_results,
    random_graphs,
    train_step_case,
)

CLEANUPS = ["fold_constants", "simplify", "cse", "dce"]


@pytest.fixture
def scratch_pass() -> Iterator[None]:
    """Lets a test register passes named `test_*`; removes them afterwards."""
    yield
    for name in [n for n in PASSES if n.startswith("test_")]:
        del PASSES[name]


def test_pipelines_per_level() -> None:
    o0, o1, o2 = pipeline_for(0), pipeline_for(1), pipeline_for(2)
    assert o0[0] == "infer_types" and set(o0) <= {"infer_types", "plan_buffers"}
    assert o1[: len(CLEANUPS) + 1] == ["infer_types", *CLEANUPS]
    assert set(o1) <= set(o2)
    for fusion in ("fuse_elementwise", "fuse_gemm_epilogue"):
        assert (fusion in o2) == (fusion in PASSES) and fusion not in o1
    assert pipeline_for() == o2
    for level in (0, 1, 2):
        assert all(name in PASSES for name in pipeline_for(level))
    if "plan_buffers" in PASSES:
        assert all(p[-1] == "plan_buffers" for p in (o0, o1, o2))
    with pytest.raises(KilnValueError, match=r"optimization level among \[0, 1, 2\]"):
        pipeline_for(3)


def test_unknown_pass_names_list_the_known_ones() -> None:
    with pytest.raises(KilnValueError, match="cse, dce, .*Received: 'cse2'"):
        PassManager(["cse2"])
    with pytest.raises(KilnValueError, match="dump_after"):
        PassManager(["cse"], dump_after={"nope"})


def test_the_pass_that_breaks_an_invariant_is_named(scratch_pass: None) -> None:
    @register("test_stale_types")
    def stale(graph: Graph) -> Graph:
        """Retype the first input and leave every use stale."""
        x = graph.inputs[0]
        wrong = Value(x.name, x.type.with_dtype("float64"))
        return dataclasses.replace(graph, inputs=(wrong, *graph.inputs[1:]))

    graph = train_step_case("mlp").graph
    with pytest.raises(VerifyError, match="pass 'test_stale_types' broke an IR invariant"):
        PassManager(["cse", "test_stale_types", "dce"]).run(graph)
    assert PassManager(["test_stale_types"], verify=False).run(graph) != graph
    with pytest.raises(VerifyError, match="input graph breaks an IR invariant"):
        PassManager(["dce"]).run(stale(graph))


def test_an_error_inside_a_pass_says_which_pass(scratch_pass: None) -> None:
    def explode(graph: Graph) -> Graph:
        raise KilnValueError("no")

    register("test_explode", explode)
    with pytest.raises(KilnValueError) as info:
        PassManager(["dce", "test_explode"]).run(train_step_case("mlp").graph)
    assert "in pass 'test_explode'" in "".join(info.value.__notes__)


def test_dumps_are_numbered_and_parse_back(tmp_path: Path) -> None:
    graph = train_step_case("lstm").graph
    manager = PassManager(["infer_types", *CLEANUPS], dump_dir=tmp_path)
    result = manager.run(graph)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00-input.kir", "01-after-infer_types.kir", "02-after-fold_constants.kir",
                     "03-after-simplify.kir", "04-after-cse.kir", "05-after-dce.kir"]
    assert manager.stats.dumps == sorted(tmp_path.iterdir())
    assert parse((tmp_path / "00-input.kir").read_text()) == graph
    assert parse((tmp_path / "05-after-dce.kir").read_text()) == result
    for path in tmp_path.iterdir():
        parse(path.read_text())


def test_dumps_before_and_after_chosen_passes(tmp_path: Path) -> None:
    graph = train_step_case("mlp").graph
    PassManager(CLEANUPS, dump_dir=tmp_path, dump_before={"cse"}, dump_after="simplify").run(graph)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00-input.kir", "01-after-simplify.kir", "02-before-cse.kir"]
    assert (tmp_path / "01-after-simplify.kir").read_text() == \
        (tmp_path / "02-before-cse.kir").read_text()


def test_the_whole_pipeline_dumps_byte_identical_ir_twice(tmp_path: Path) -> None:
    for name in MODELS:
        graph = train_step_case(name).graph
        runs = []
        for run in ("a", "b"):
            folder = tmp_path / name / run
            compile_graph(graph, level=2, dump_dir=folder, dump_before="all", dump_after="all")
            runs.append({p.name: p.read_bytes() for p in folder.iterdir()})
        assert runs[0] == runs[1]
        assert len(runs[0]) == 1 + 2 * len(pipeline_for(2))


def test_stats_record_time_and_node_counts(scratch_pass: None) -> None:
    register("test_noted", lambda g: (note("peak_bytes", 3 * 1024 * 1024), g)[1], "notes")
    graph = train_step_case("lstm").graph
    manager = PassManager(["infer_types", *CLEANUPS, "test_noted"])
    result = manager.run(graph)
    stats = manager.stats
    assert [s.name for s in stats.passes] == manager.pipeline
    assert stats.passes[0].nodes_before == len(graph.nodes)
    assert stats.passes[-1].nodes_after == len(result.nodes)
    for prev, cur in zip(stats.passes, stats.passes[1:]):
        assert prev.nodes_after == cur.nodes_before
    assert stats["cse"].nodes_after < stats["cse"].nodes_before
    assert all(s.seconds >= 0 for s in stats.passes)
    assert stats.peak_bytes == 3 * 1024 * 1024
    table = stats.format()
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["pass", "ms"] and "nodes before" in lines[0]
    assert "peak memory" in lines[0] and "3.0 MiB" in lines[-2]
    row = dict(zip(["name", "ms", "before", "after"], lines[4].split()))
    assert row["name"] == "cse"
    assert (int(row["before"]), int(row["after"])) == (stats["cse"].nodes_before,
                                                       stats["cse"].nodes_after)
    assert lines[-1].split()[0] == "total" and str(stats) == table


def test_options_reach_their_pass() -> None:
    graph = train_step_case("lstm").graph
    plain, _ = compile_graph(graph, level=1)
    fast = {"simplify": {"fast_math": True}}
    stable, _ = compile_graph(graph, level=1, options=fast)
    logs = [sum(n.op == "log" for n in g.nodes) for g in (graph, plain, stable)]
    assert logs == [2, 2, 0]  # Keras's clipped log stays unless fast_math asks otherwise
    with pytest.raises(KilnValueError):
        PassManager(["dce"], options={"nope": {}})


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("name", MODELS)
def test_optimized_train_steps_compute_the_same_step(name: str, level: int) -> None:
    """Outputs and new state match the unoptimized graph to rtol 1e-5, atol 1e-6 (float32)."""
    case = train_step_case(name)
    optimized, stats = compile_graph(case.graph, level=level)
    assert_same_results(case.graph, optimized, case)
    if level >= 1:
        assert len(optimized.nodes) < len(case.graph.nodes), stats.format()
    again, _ = compile_graph(case.graph, level=level)
    assert str(again) == str(optimized)


def test_every_pass_is_documented_and_callable() -> None:
    for p in PASSES.values():
        assert isinstance(p, Pass) and p.description, p.name
        module = __import__(p.run.__module__, fromlist=["_"])
        assert module.__doc__ and len(module.__doc__) > 100, p.name
    dce = PASSES["dce"]
    graph = train_step_case("mlp").graph
    assert dce(graph) == graph


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_pipelines_preserve_results_on_random_graphs(case: Case) -> None:
    for level in (1, 2):
        optimized, _ = compile_graph(case.graph, level=level)
        assert_same_results(case.graph, optimized, case)


def test_graph_attributes_survive_passes_that_change_nothing() -> None:
    for name in MODELS:
        graph, _ = compile_graph(train_step_case(name).graph, level=1)
        graph = graph.with_attrs({**graph.attr, "test.mark": 1})
        for p in ["infer_types", *CLEANUPS]:
            assert PASSES[p](graph) is graph, (name, p)
        changed = PASSES["cse"](train_step_case(name).graph.with_attrs({"test.mark": 1}))
        assert changed.attrs == ()


def test_stats_show_kernels_and_planned_peak_against_no_reuse() -> None:
    graph = train_step_case("mlp").graph
    _, stats = compile_graph(graph, level=2)
    text = stats.format()
    print(text)
    assert "kernels" in text.splitlines()[0]
    fused = next(p for p in stats.passes if p.name == "fuse_elementwise")
    assert fused.kernels_after < stats.passes[0].kernels_after / 2
    plan = next(p for p in stats.passes if p.name == "plan_buffers")
    assert plan.notes["peak_bytes"] < plan.notes["no_reuse_bytes"]
    assert "planned peak memory" in text and "without (N=128)" in text
