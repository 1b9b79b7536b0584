"""Samples of scan: a cumulative sum, an RNN step, reverse, several carries and ys, an int
carry, a carry-free map, and zero steps. Bodies are built here and exported for the tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kiln.ir import Graph, GraphBuilder, TensorType
from tests.ir.samples import Sample, rng

r = rng(7)


def body(name: str, types: list[TensorType], step: Callable) -> Graph:
    """A body graph with inputs a0, a1, ... of `types`; `step(b, *inputs)` returns its outputs."""
    b = GraphBuilder(name)
    inputs = [b.input(f"a{i}", t) for i, t in enumerate(types)]
    for k, value in enumerate(step(b, *inputs)):
        b.output(value, f"r{k}")
    return b.build()


def f64(*shape: object) -> TensorType:
    return TensorType(shape, "float64")


def cumsum_step(b: GraphBuilder, c, x):  # noqa: ANN001, ANN201
    total = b.add(c, x)
    return total, total


def rnn_step(b: GraphBuilder, h, x, w, u, bias):  # noqa: ANN001, ANN201
    new = b.tanh(b.add(b.add(b.matmul(x, w), b.matmul(h, u)), bias))
    return new, new


def decay_step(b: GraphBuilder, c, x):  # noqa: ANN001, ANN201
    # y uses the carry entering the step, so reverse order shows in the result.
    return b.tanh(b.add(b.mul(c, 0.8), x)), b.mul(c, x)


def multi_step(b: GraphBuilder, a, s, x, z, k):  # noqa: ANN001, ANN201
    new_a = b.add(b.mul(a, x), b.mul(k, z))
    new_s = b.add(s, b.sum(b.mul(new_a, a)))
    return new_a, new_s, b.mul(new_a, a), b.mul(new_s, z)


def counter_step(b: GraphBuilder, count, h, x):  # noqa: ANN001, ANN201
    weight = b.cast(count, dtype="float64")
    return b.add(count, 1), b.add(h, b.mul(x, weight)), b.tanh(h)


def map_step(b: GraphBuilder, x, k):  # noqa: ANN001, ANN201
    return (b.mul(b.tanh(x), k),)


CUMSUM = body("cumsum", [f64(3), f64(3)], cumsum_step)
RNN = body("rnn", [f64(2, 4), f64(2, 3), f64(3, 4), f64(4, 4), f64(4)], rnn_step)
DECAY = body("decay", [f64(3), f64(3)], decay_step)
MULTI = body("multi", [f64(3), f64(), f64(3), f64(), f64(3)], multi_step)
COUNTER = body("counter", [TensorType((), "int64"), f64(3), f64(3)], counter_step)
MAP = body("map", [f64(3), f64(3)], map_step)


def scan(inputs: list[np.ndarray], body: Graph, num_carry: int, num_seq: int, name: str,
         reverse: bool = False) -> Sample:
    return Sample("scan", inputs, {"num_carry": num_carry, "num_seq": num_seq,
                                   "reverse": reverse}, body=body, name=name)


SAMPLES = [
    scan([r.standard_normal(3), r.standard_normal((5, 3))], CUMSUM, 1, 1, "cumsum"),
    scan([r.standard_normal((2, 4)), r.standard_normal((5, 2, 3)),
          r.standard_normal((3, 4)) * 0.5, r.standard_normal((4, 4)) * 0.5,
          r.standard_normal(4)], RNN, 1, 1, "rnn"),
    scan([r.standard_normal(3), r.standard_normal((4, 3))], DECAY, 1, 1, "reverse",
         reverse=True),
    scan([r.standard_normal(3), r.standard_normal(()), r.standard_normal((4, 3)),
          r.standard_normal(4), r.standard_normal(3)], MULTI, 2, 2, "multi"),
    scan([np.array(0, np.int64), r.standard_normal(3), r.standard_normal((4, 3))], COUNTER,
         2, 1, "int_carry"),
    scan([r.standard_normal((4, 3)), r.standard_normal(3)], MAP, 0, 1, "map"),
    scan([r.standard_normal(3), np.zeros((0, 3))], CUMSUM, 1, 1, "empty"),
]
