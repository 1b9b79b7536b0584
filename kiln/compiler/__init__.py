"""Passes, the pass manager and its IR dumps, Graphviz rendering; codegen and the artifact
format come with the backends."""

from kiln.compiler.dot import to_dot
from kiln.compiler.pass_manager import PassManager, PassStats, compile_graph, pipeline_for
from kiln.compiler.passes import PASSES

__all__ = ["PASSES", "PassManager", "PassStats", "compile_graph", "pipeline_for", "to_dot"]
