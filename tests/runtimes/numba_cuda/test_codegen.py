"""The CUDA code generator's output, read as text: one kernel per fused region with each IR
line in a comment, array constants as arguments (never literals), axes collapsed where every
operand agrees, and launch configurations sized to the work."""

from __future__ import annotations

import numpy as np

from kiln.compiler.codegen.cuda import elementwise_kernel, reduction_kernel
from kiln.ir import GraphBuilder, TensorType


def test_elementwise_kernel_comments_ir_and_takes_constants_as_arguments() -> None:
    table = np.arange(1000, dtype=np.float32) * 0.25
    b = GraphBuilder("lookup")
    x = b.input("x", TensorType(("N", 1000), "float32"))
    bias = b.input("bias", TensorType((1000,), "float32"))
    with b.scope("scale"):
        b.output(b.relu(b.add(b.mul(x, b.constant(table)), bias)), "y")
    k = elementwise_kernel(b.build(), "test")
    assert "# %scale.relu = relu(%scale.add) : f32[N,1000]" in k.source
    assert "249.75" not in k.source and len(k.constants) == 1
    np.testing.assert_array_equal(k.constants[0], table)
    assert k.signature == "void(float32[::1], float32[::1], float32[::1], float32[::1], " \
                          "int64, int64, int64)"  # y, x, bias, table, n, two extents
    assert k.groups == ((0,), (1,))
    assert k.scalars({"N": 3}) == (3000, 3, 1000)
    assert k.grid({"N": 3}, max_blocks=4096) == (12, 256)


def test_a_parameter_update_is_one_flat_loop() -> None:
    b = GraphBuilder("update")
    w = b.input("w", TensorType((3, 4, 5), "float32"))
    g = b.input("g", TensorType((3, 4, 5), "float32"))
    b.output(b.sub(w, b.mul(g, 0.1)), "w")
    k = elementwise_kernel(b.build(), "test")
    assert k.groups == ((0, 1, 2),)
    assert "np.float32(0.1)" in k.source and "rem" not in k.source


def test_reduction_kernel_block_size_fits_the_reduced_extent() -> None:
    b = GraphBuilder("rows")
    x = b.input("x", TensorType(("N", 10), "float32"))
    b.output(b.mul(b.max(b.exp(x), axes=(1,), keepdims=True), 2.0), "m")
    k = reduction_kernel(b.build(), "test", max_threads=256)
    assert k.threads == 32 and "cuda.shared.array(32, np.float32)" in k.source
    assert k.scalars({"N": 7}) == (7, 10, 7, 10)  # outputs, reduced extent, then the shape
    b = GraphBuilder("columns")
    x = b.input("x", TensorType(("N", 10), "float32"))
    b.output(b.sum(x, axes=(0,)), "s")
    k = reduction_kernel(b.build(), "test", max_threads=256)
    assert k.threads == 256  # a symbolic extent gets the full block
    assert k.grid({"N": 5}) == (10, 256)
