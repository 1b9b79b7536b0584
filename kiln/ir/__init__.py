"""kiln's static-graph IR: types, graphs, the op registry, text format, verifier, autodiff."""

from kiln.ir import ops  # noqa: F401  (registers every op)
from kiln.ir.autodiff import backprop, grad, remove_dead_nodes
from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import KilnError, KilnTypeError, KilnValueError, ParseError, VerifyError
from kiln.ir.graph import ArrayAttr, Graph, Node, Value
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.registry import OPS, OpDef, get_op
from kiln.ir.types import TensorType, boolean, f32, f64, i32, i64
from kiln.ir.verifier import verify

__all__ = [
    "ArrayAttr", "Graph", "GraphBuilder", "KilnError", "KilnTypeError", "KilnValueError",
    "Node", "OPS", "OpDef", "ParseError", "TensorType", "Value", "VerifyError", "backprop",
    "boolean", "f32", "f64", "get_op", "grad", "i32", "i64", "parse", "print_graph",
    "remove_dead_nodes", "verify",
]
