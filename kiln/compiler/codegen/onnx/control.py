"""ONNX lowerings of the ops with a body: `scan` as ONNX Scan and `fused` inlined.

scan(carry..., sequence..., constant...) becomes Scan(carry..., sequence...): the body graph
takes the carries and one slice of each sequence, and reads the constants from the enclosing
graph by name (ONNX's outer-scope references). reverse=True sets every scan input and output
direction to 1, so the sequences are read from the end and each y lands at its own time
index, as kiln's scan promises. A scan of static length 0 is its carries (onnxruntime's Scan
refuses empty sequences, so one of run-time length 0 fails there). A fused node's body is
emitted in place, op by op: onnxruntime does its own fusion on the plain graph.
"""

from __future__ import annotations

from onnx import helper

from kiln.compiler.codegen.onnx.emitter import Emitter, lowering
from kiln.ir.graph import Node


@lowering("fused")
def _fused(em: Emitter, node: Node, ins: list[str]) -> list[str]:
    body = node.body
    assert body is not None
    env = {v.name: name for v, name in zip(body.inputs, ins, strict=True)}
    em.emit_nodes(body.nodes, env)
    return [env[v.name] for v in body.output_values]


@lowering("scan")
def _scan(em: Emitter, node: Node, ins: list[str]) -> list[str]:
    body = node.body
    assert body is not None
    num_carry, num_seq = node.attr["num_carry"], node.attr["num_seq"]
    scanned = num_carry + num_seq
    if node.inputs[num_carry].type.shape[0] == 0:
        # onnxruntime's Scan refuses empty sequences: no steps leave the carries as they are.
        return [*(em.add("Identity", [c]) for c in ins[:num_carry]),
                *(em.zeros(y.type) for y in node.outputs[num_carry:])]
    env: dict[str, str] = {}
    with em.subgraph() as scope:
        for value in body.inputs[:scanned]:
            env[value.name] = em.fresh(f"{body.name}/{value.name}")
            em.declare_input(env[value.name], value.type)
        for value, outer in zip(body.inputs[scanned:], ins[scanned:], strict=True):
            env[value.name] = outer
        em.emit_nodes(body.nodes, env)
        em.declare_outputs([(em.fresh(f"{body.name}/{out_name}"), env[value.name], value.type)
                            for out_name, value in body.outputs])
    graph = helper.make_graph(scope.nodes, body.name, scope.inputs, scope.outputs)
    num_ys = len(body.outputs) - num_carry
    reverse = bool(node.attr["reverse"])
    return em.add("Scan", ins[:scanned], len(node.outputs), body=graph,
                  num_scan_inputs=num_seq,
                  scan_input_directions=[1] * num_seq if reverse else None,
                  scan_output_directions=[1] * num_ys if reverse and num_ys else None)
