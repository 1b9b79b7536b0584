"""Graphs from samples, and the finite-difference gradient check."""

from __future__ import annotations

import numpy as np

from kiln.ir import Graph, GraphBuilder, TensorType, grad
from kiln.ir.types import canonical_dtype
from kiln.runtimes.reference import run_graph
from tests.ir.samples import Sample


def sample_graph(sample: Sample, symbolic_batch: bool = False) -> Graph:
    """A graph applying the sample's op to inputs x0, x1, ...; outputs y0, y1, ...

    With `symbolic_batch`, the leading dimension of every operand of rank >= 1 whose size
    equals the first operand's becomes the symbol N.
    """
    b = GraphBuilder(f"sample_{sample.op}")
    lead = sample.inputs[0].shape[0] if sample.inputs and sample.inputs[0].ndim else None
    operands = []
    for i, array in enumerate(sample.inputs):
        shape: list = list(array.shape)
        if symbolic_batch and shape and shape[0] == lead:
            shape[0] = "N"
        operands.append(b.input(f"x{i}", TensorType(tuple(shape), canonical_dtype(array.dtype))))
    kwargs = dict(sample.attrs)
    if sample.body is not None:
        kwargs["body"] = sample.body
    result = b.op(sample.op, *operands, **kwargs)
    results = result if isinstance(result, tuple) else (result,)
    for k, value in enumerate(results):
        b.output(value, f"y{k}")
    return b.build()


def run_sample(sample: Sample, graph: Graph | None = None) -> list[np.ndarray]:
    graph = graph or sample_graph(sample)
    outputs, _ = run_graph(graph, {f"x{i}": a for i, a in enumerate(sample.inputs)})
    return [outputs[f"y{k}"] for k in range(len(outputs))]


def check_gradient(sample: Sample, eps: float = 1e-6, rtol: float = 1e-5,
                   atol: float = 1e-6) -> None:
    """d(sum_k <y_k, w_k>)/d x_i by kiln.ir.grad against central differences, in float64."""
    forward = sample_graph(sample)
    gen = np.random.default_rng(1234)
    b = GraphBuilder("check")
    xs = [b.input(v.name, v.type) for v in forward.inputs]
    outs, _ = b.call(forward, xs)
    weights = {}
    loss = None
    for name, value in outs.items():
        if not value.type.is_float:
            continue
        w = gen.standard_normal(value.type.resolve({})).astype(np.float64)
        weights[name] = w
        term = b.sum(b.mul(value, b.constant(w, value.type.dtype) if w.ndim else
                           b.constant(float(w), value.type.dtype)))
        loss = term if loss is None else b.add(loss, term)
    assert loss is not None, f"{sample.id}: no floating-point output to differentiate"
    b.output(loss, "loss")
    graph = b.build()
    wrt = [i for i, a in enumerate(sample.inputs)
           if a.dtype.kind == "f" and (sample.wrt is None or i in sample.wrt)]
    assert wrt, f"{sample.id}: no floating-point operand to differentiate"
    with_grad = grad(graph, "loss", [f"x{i}" for i in wrt])
    inputs = {f"x{i}": a for i, a in enumerate(sample.inputs)}
    analytic, _ = run_graph(with_grad, inputs)

    def loss_at(feed: dict) -> float:
        return float(run_graph(graph, feed)[0]["loss"])

    for i in wrt:
        x = sample.inputs[i]
        numeric = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            plus, minus = x.copy(), x.copy()
            plus[index] += eps
            minus[index] -= eps
            numeric[index] = (loss_at({**inputs, f"x{i}": plus})
                              - loss_at({**inputs, f"x{i}": minus})) / (2 * eps)
        np.testing.assert_allclose(analytic[f"grad.x{i}"], numeric, rtol=rtol, atol=atol,
                                   err_msg=f"{sample.id}: gradient of operand x{i}")
