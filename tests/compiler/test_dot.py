"""to_dot: well-formed Graphviz text (balanced braces, every edge endpoint declared), labels
with ops and value names, scan bodies as clusters."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.compiler.dot import to_dot
from kiln.compiler.pass_manager import compile_graph
from kiln.ir import Graph
from tests.compiler.differential import MODELS, Case, random_graphs, train_step_case

QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
DECL = re.compile(r'^\s*("(?:[^"\\]|\\.)*") \[label=')
EDGE = re.compile(r'^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*") \[label=')


def check_well_formed(graph: Graph, text: str) -> None:
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    depth = 0
    for char in QUOTED.sub('""', text):  # braces inside labels do not count
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    lines = text.splitlines()
    declared = [m.group(1) for line in lines if (m := DECL.match(line))]
    assert len(declared) == len(set(declared)), "a node id is declared twice"
    edges = [(m.group(1), m.group(2)) for line in lines if (m := EDGE.match(line))]
    for a, b in edges:
        assert a in declared and b in declared, (a, b)
    uses = sum(len(n.inputs) for n in graph.nodes) + len(graph.outputs) + len(graph.updates)
    assert len(edges) >= uses


@pytest.mark.parametrize("name", MODELS)
def test_train_steps_render(name: str) -> None:
    graph = train_step_case(name).graph
    text = to_dot(graph)
    check_well_formed(graph, text)
    first = graph.nodes[0]
    assert f'"n0" [label="{first.op}' in text and f"%{first.outputs[0].name}" in text
    assert ("subgraph \"cluster_" in text) == any(n.body is not None for n in graph.nodes)
    assert to_dot(graph) == text


def test_scan_bodies_are_clusters_and_fused_graphs_render() -> None:
    graph = train_step_case("lstm").graph
    text = to_dot(graph)
    assert text.count('subgraph "cluster_') == 2  # the forward scan and its reverse scan
    assert '"n5.n0" [label="matmul' in text  # a body node, scoped by its scan's id
    optimized, _ = compile_graph(graph, level=2)
    text = to_dot(optimized)
    check_well_formed(optimized, text)
    if optimized.attrs:
        assert "labelloc=t;" in text and f"{optimized.attrs[0][0]}=" in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_random_graphs_render(case: Case) -> None:
    check_well_formed(case.graph, to_dot(case.graph))


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_graphviz_accepts_the_text() -> None:
    text = to_dot(train_step_case("lstm").graph)
    subprocess.run(["dot", "-Tsvg"], input=text, text=True, check=True, capture_output=True)
