"""Samples of `fused`: an elementwise kernel with two results and a scalar constant inside, a
reduction kernel (sum(square(x - y)) with an epilogue), and a gemm kernel (matmul, bias,
relu), and conv kernels (conv2d, max_pool2d, with and without bias and relu). Bodies are
built here; fused has no VJP, so no sample is gradient-checked."""

from __future__ import annotations

from kiln.ir import Graph, GraphBuilder, TensorType
from tests.ir.samples import Sample, rng

r = rng(11)


def f64(*shape: object) -> TensorType:
    return TensorType(shape, "float64")


def _elementwise() -> Graph:
    b = GraphBuilder("layer.tanh")
    x, y = b.input("x", f64(3, 4)), b.input("y", f64(4))
    with b.scope("layer"):
        s = b.add(b.mul(x, 0.5), y)
        b.output(s, "layer.add")
        b.output(b.tanh(s), "layer.tanh")
    return b.build()


def _reduction() -> Graph:
    b = GraphBuilder("loss.sqrt")
    x, y = b.input("x", f64(3, 4)), b.input("y", f64(3, 4))
    with b.scope("loss"):
        total = b.sum(b.square(b.sub(x, y)), axes=(1,))
        b.output(b.sqrt(total), "loss.sqrt")
    return b.build()


def _gemm() -> Graph:
    b = GraphBuilder("dense.relu")
    x, w, bias = b.input("x", f64(3, 5)), b.input("w", f64(5, 2)), b.input("b", f64(2))
    with b.scope("dense"):
        b.output(b.relu(b.add(b.matmul(x, w), bias)), "dense.relu")
    return b.build()


def _conv(epilogue: bool, strides: tuple[int, int], padding: str, pool: dict) -> Graph:
    b = GraphBuilder("pool.max_pool2d")
    x, w = b.input("x", f64(2, 7, 6, 2)), b.input("w", f64(3, 2, 2, 3))
    with b.scope("conv"):
        y = b.conv2d(x, w, strides=strides, padding=padding)
    with b.scope("pool"):
        y = b.max_pool2d(y, **pool)
        if epilogue:
            y = b.relu(b.add(y, b.input("b", f64(3))))
    b.output(y, "pool.max_pool2d")
    return b.build()


ELEMENTWISE, REDUCTION, GEMM = _elementwise(), _reduction(), _gemm()
CONV_RELU = _conv(True, (1, 1), "valid", {"pool_size": (2, 2)})
CONV_SAME = _conv(False, (2, 1), "same", {"pool_size": (3, 2), "strides": (1, 2),
                                          "padding": "same"})

SAMPLES = [
    Sample("fused", [r.standard_normal((3, 4)), r.standard_normal(4)], {"kind": "elementwise"},
           body=ELEMENTWISE, grad=False, name="elementwise"),
    Sample("fused", [r.standard_normal((3, 4)), r.standard_normal((3, 4))],
           {"kind": "reduction"}, body=REDUCTION, grad=False, name="reduction"),
    Sample("fused", [r.standard_normal((3, 5)), r.standard_normal((5, 2)),
                     r.standard_normal(2)], {"kind": "gemm"}, body=GEMM, grad=False,
           name="gemm"),
    Sample("fused", [r.standard_normal((2, 7, 6, 2)), r.standard_normal((3, 2, 2, 3)),
                     r.standard_normal(3)], {"kind": "conv"}, body=CONV_RELU, grad=False,
           name="conv"),
    Sample("fused", [r.standard_normal((2, 7, 6, 2)), r.standard_normal((3, 2, 2, 3))],
           {"kind": "conv"}, body=CONV_SAME, grad=False, name="conv_same"),
]
