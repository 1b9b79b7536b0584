"""Launchers of `fused` and `scan`. A fused elementwise or reduction region runs its generated
kernel (kiln.compiler.codegen.cuda); a fused gemm goes to the GEMM launcher ("fused:gemm",
ops/linalg.py); a fused conv runs its convolution and pooling through their launchers and
its epilogue as one generated elementwise kernel (conv_parts). A scan is a host loop over
the steps launching the body's nodes, with the carries kept on the device in two alternating
sets of buffers and each step's ys written by the body nodes computing them straight into
their rows of the stacked results (the loop runs once per batch size: a launch tape replays
it, tape.py).
"""

from __future__ import annotations

from typing import Any

from numba import cuda

from kiln.compiler.codegen.cuda import fused_kernel
from kiln.compiler.codegen.numba.source import ir_line
from kiln.compiler.passes.fuse_elementwise import fuse_elementwise
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph, Node
from kiln.ir.types import numpy_dtype
from kiln.runtimes.numba_cuda.context import Launcher, RunContext
from kiln.runtimes.numba_cuda.interpreter import bind_shapes, launchers, run_nodes
from kiln.runtimes.numba_cuda.launch import MAX_THREADS, copy, launch_generated, row


def _memo(ctx: RunContext, key: tuple, node: Node, make: Any) -> Any:
    """ctx.memo[key] for this very node (an id can be reused once a node is freed)."""
    held = ctx.memo.get(key)
    if held is None or held[0] is not node:
        held = ctx.memo[key] = (node, make())
    return held[1]


def launch_fused(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    kind = node.attr["kind"]
    if kind == "gemm":
        gemm = launchers().get("fused:gemm")
        if gemm is None:
            raise KilnValueError(f"backend 'numba-cuda' has no launcher for fused gemm "
                                 f"kernels; expected one for {ir_line(node)}")
        gemm(ctx, node, inputs, outputs)
        return
    if kind == "conv":
        _launch_conv(ctx, node, inputs, outputs)
        return
    assert node.body is not None
    body = node.body
    kernel = _memo(ctx, ("fused", id(node)), node, lambda: fused_kernel(
        body, kind, f"generated CUDA kernel of fused {kind} %{node.outputs[0].name}",
        MAX_THREADS))
    launch_generated(ctx, node, kernel, inputs, outputs)


def conv_parts(body: Graph) -> Graph:
    """The body of a fused conv as the GPU runs it: conv2d and max_pool2d (each through its
    launcher), then the epilogue fused into one elementwise kernel."""
    return fuse_elementwise(body)


def _launch_conv(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    """The parts of a fused conv in order, the values between them in device buffers kept
    for these sizes. The same three launches as unfused, and the convolution's full output
    still written: on the GPU the fusion saves nothing yet (a kernel that pools in shared
    memory would); its buffer lives here instead of in the arena."""
    body = node.body
    assert body is not None
    parts = _memo(ctx, ("conv", id(node)), node, lambda: conv_parts(body))
    results = {v.name: a for v, a in zip(body.output_values, outputs, strict=True)}

    def make_buffers() -> dict[str, Any]:
        return {v.name: cuda.device_array(v.type.resolve(ctx.dims), numpy_dtype(v.type.dtype))
                for n in parts.nodes for v in n.outputs if v.name not in results}

    between = _memo(ctx, ("conv", id(node), tuple(sorted(ctx.dims.items()))), node,
                    make_buffers)
    env = {v.name: a for v, a in zip(body.inputs, inputs, strict=True)}
    run_nodes(ctx, parts, env, lambda v: results.get(v.name, between.get(v.name)))


def launch_scan(ctx: RunContext, node: Node, inputs: list[Any], outputs: list[Any]) -> None:
    body = node.body
    assert body is not None
    num_carry, num_seq = node.attr["num_carry"], node.attr["num_seq"]
    carries, seqs = inputs[:num_carry], inputs[num_carry:num_carry + num_seq]
    consts = inputs[num_carry + num_seq:]
    length = seqs[0].shape[0]
    shapes = [tuple(a.shape) for a in carries] + [tuple(s.shape[1:]) for s in seqs] + \
        [tuple(a.shape) for a in consts]
    dims = bind_shapes(body.inputs, shapes)
    step_ctx = RunContext(ctx.stream, dims, memo=ctx.memo, pool=ctx.pool,
                          error_flag=ctx.error_flag, error_sites=ctx.error_sites,
                          tape=ctx.tape)
    direct = _computed_carries(body, num_carry)
    placed = _computed_ys(body, num_carry, direct)
    buffers = _memo(ctx, ("scan", id(node), tuple(sorted(dims.items()))), node,
                    lambda: _body_buffers(node, dims, direct, placed))
    final, ys = outputs[:num_carry], outputs[num_carry:]
    for out, init in zip(final, carries, strict=True):
        copy(ctx, out, init)
    names = [v.name for v in body.inputs]
    carry_names, seq_names = names[:num_carry], names[num_carry:num_carry + num_seq]
    const_names = names[num_carry + num_seq:]
    results = body.output_values
    # The carries live in two sets of buffers, in turn: a step reads set `now` and writes the
    # new carries into `after`, so a body node computing a new carry writes it there itself
    # (no copy per step), and a carry passed through or swapped is copied across without a
    # snapshot. The outputs are the first set; an odd number of steps ends with a copy back.
    now, after = list(final), [buffers[("spare", j)] for j in range(num_carry)]
    steps = range(length - 1, -1, -1) if node.attr["reverse"] else range(length)
    for t in steps:
        env: dict[str, Any] = dict(zip(carry_names, now, strict=True))
        env.update(zip(seq_names, (row(s, t) for s in seqs), strict=True))
        env.update(zip(const_names, consts, strict=True))
        def buffer_of(v: Any, after: list = after, t: int = t) -> Any:
            if v.name in direct:
                return after[direct[v.name]]
            if v.name in placed:
                return row(ys[placed[v.name]], t)
            return buffers[v.name]

        run_nodes(step_ctx, body, env, buffer_of)
        for i, (y, value) in enumerate(zip(ys, results[num_carry:], strict=True)):
            if placed.get(value.name) != i:
                copy(ctx, row(y, t), env[value.name])
        for j, value in enumerate(results[:num_carry]):
            if direct.get(value.name) != j:
                copy(ctx, after[j], env[value.name])
        now, after = after, now
    if num_carry and now[0] is not final[0]:
        for out, source in zip(final, now, strict=True):
            copy(ctx, out, source)


def _computed_carries(body: Graph, num_carry: int) -> dict[str, int]:
    """New carries a body node computes, by value name -> carry index: those can be written
    straight into the carry's buffer (a value returned as two carries is copied for the
    second, a body input passed through is copied)."""
    computed = {o.name for n in body.nodes for o in n.outputs}
    direct: dict[str, int] = {}
    for j, value in enumerate(body.output_values[:num_carry]):
        if value.name in computed and value.name not in direct:
            direct[value.name] = j
    return direct


def _computed_ys(body: Graph, num_carry: int, direct: dict[str, int]) -> dict[str, int]:
    """Ys a body node computes, by value name -> y index, but the new carries in `direct`:
    those are written straight into their rows of the stacked ys (a value returned as two
    ys, or as a carry and a y, is copied for the others). On a GPU each saves a copy per
    step: the LSTM's forward step stacks five activations."""
    computed = {o.name for n in body.nodes for o in n.outputs}
    placed: dict[str, int] = {}
    for i, value in enumerate(body.output_values[num_carry:]):
        if value.name in computed and value.name not in direct and value.name not in placed:
            placed[value.name] = i
    return placed


def _body_buffers(node: Node, dims: dict[str, int], direct: dict[str, int],
                  placed: dict[str, int]) -> dict[str, Any]:
    """One device array per value a step computes (but the new carries in `direct`, written
    into the carry buffers, and the ys in `placed`, written into the stacked ys), and a
    second buffer per carry (the carries alternate between it and the scan's output), reused
    by every step and every call with these sizes."""
    body = node.body
    assert body is not None
    buffers = {}
    for n in body.nodes:
        for v in n.outputs:
            if v.name in direct or v.name in placed:
                continue
            buffers[v.name] = cuda.device_array(v.type.resolve(dims), numpy_dtype(v.type.dtype))
    for j, v in enumerate(body.output_values[:node.attr["num_carry"]]):
        buffers[("spare", j)] = cuda.device_array(v.type.resolve(dims),
                                                  numpy_dtype(v.type.dtype))
    return buffers


LAUNCHERS: dict[str, Launcher] = {"fused": launch_fused, "scan": launch_scan}
