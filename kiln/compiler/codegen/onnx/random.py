"""ONNX lowerings of uniform, normal and bernoulli, bit for bit the stream of
kiln/ir/ops/random.py: SplitMix64 in uint64 Mul/Add/BitShift/BitwiseXor, which onnxruntime
implements for uint64 and which wrap mod 2**64 like NumPy's uint64 arrays.

uniform and bernoulli are exact: the integer stream is exact, (bits >> 40) or (bits >> 11)
converts to float exactly, and the remaining float ops are the reference's, one rounding
each (low + (high - low) * u with (high - low) rounded in the output dtype at compile time,
as the reference rounds it). bernoulli is the integer test (bits >> 11) < ceil(p * 2**53).
normal follows the reference's float64 formula; onnxruntime's log and cos may differ from
NumPy's by an ulp, so normal draws match within a tolerance.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from kiln.compiler.codegen.onnx.emitter import ONNX_DTYPES, Emitter, lowering
from kiln.ir.graph import Node
from kiln.ir.ops.random import GOLDEN, TWO_PI
from kiln.ir.types import canonical_dtype, numpy_dtype

UINT64 = TensorProto.UINT64
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _u64(em: Emitter, value: int) -> str:
    return em.const(np.array(value % 2**64, np.uint64), "const.uint64")


def _mix(em: Emitter, z: str) -> str:
    """SplitMix64's finalizer, elementwise on uint64."""
    for shift, factor in ((30, _M1), (27, _M2)):
        z = em.add("BitwiseXor", [z, em.add("BitShift", [z, _u64(em, shift)], direction="RIGHT")])
        z = em.add("Mul", [z, _u64(em, factor)])
    return em.add("BitwiseXor", [z, em.add("BitShift", [z, _u64(em, 31)], direction="RIGHT")])


def random_bits(em: Emitter, key: str, stream: int, count: str) -> str:
    """uint64[count]: bits(c) for c = 0 .. count-1 (the spec in kiln/ir/ops/random.py)."""
    k = em.add("Cast", [key], to=UINT64)  # two's complement bits, as the reference reads them
    base = _mix(em, em.add("Add", [_mix(em, k), _u64(em, stream * int(GOLDEN))]))
    counters = em.add("Range", [em.scalar(0, "int64"), count, em.scalar(1, "int64")])
    counters = em.add("Cast", [counters], to=UINT64)
    # base + (c + 1) * G = c * G + (base + G), mod 2**64.
    offset = em.add("Add", [base, _u64(em, int(GOLDEN))])
    return _mix(em, em.add("Add", [em.add("Mul", [counters, _u64(em, int(GOLDEN))]), offset]))


def _shifted(em: Emitter, bits: str, shift: int) -> str:
    return em.add("BitShift", [bits, _u64(em, shift)], direction="RIGHT")


def _unit(em: Emitter, bits: str, dtype: str, plus_one: bool = False) -> str:
    """The reference's u in [0, 1) (or (0, 1] with plus_one), exactly."""
    shift, scale = (40, 2.0**-24) if dtype == "float32" else (11, 2.0**-53)
    k = _shifted(em, bits, shift)
    if plus_one:
        k = em.add("Add", [k, _u64(em, 1)])
    return em.add("Mul", [em.add("Cast", [k], to=ONNX_DTYPES[dtype]), em.scalar(scale, dtype)])


@lowering("uniform")
def _uniform(em: Emitter, node: Node, ins: list[str]) -> str:
    t = node.output.type
    dtype = canonical_dtype(node.attr["dtype"])
    bits = random_bits(em, ins[0], node.attr["stream"], em.count(t.shape))
    u = _unit(em, bits, dtype)
    np_dtype = numpy_dtype(dtype)
    low, high = np_dtype.type(node.attr["low"]), np_dtype.type(node.attr["high"])
    out = em.add("Add", [em.scalar(low, dtype),
                         em.add("Mul", [em.scalar(high - low, dtype), u])])
    return em.reshape(out, t)


@lowering("normal")
def _normal(em: Emitter, node: Node, ins: list[str]) -> str:
    t = node.output.type
    count = em.count(t.shape)
    pairs = em.add("Mul", [count, em.scalar(2, "int64")])
    bits = em.add("Reshape", [random_bits(em, ins[0], node.attr["stream"], pairs),
                              em.ints([-1, 2])])
    even, odd = em.add("Split", [bits], 2, axis=1, num_outputs=2)
    u1 = _unit(em, even, "float64", plus_one=True)  # (0, 1]: log(u1) is finite
    u2 = _unit(em, odd, "float64")
    radius = em.add("Sqrt", [em.add("Mul", [em.scalar(-2.0, "float64"), em.add("Log", [u1])])])
    angle = em.add("Cos", [em.add("Mul", [em.scalar(TWO_PI, "float64"), u2])])
    z = em.add("Mul", [radius, angle])
    out = em.add("Add", [em.scalar(float(node.attr["mean"]), "float64"),
                         em.add("Mul", [em.scalar(float(node.attr["stddev"]), "float64"), z])])
    dtype = canonical_dtype(node.attr["dtype"])
    if dtype != "float64":
        out = em.add("Cast", [out], to=ONNX_DTYPES[dtype])
    return em.reshape(out, t)


@lowering("bernoulli")
def _bernoulli(em: Emitter, node: Node, ins: list[str]) -> str:
    t = node.output.type
    bits = random_bits(em, ins[0], node.attr["stream"], em.count(t.shape))
    threshold = math.ceil(float(node.attr["p"]) * 2.0**53)  # exact: a power-of-two scale
    hit = em.add("Less", [_shifted(em, bits, 11), _u64(em, threshold)])
    return em.reshape(hit, t)
