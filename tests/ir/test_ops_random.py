"""uniform, normal and bernoulli: the bit stream against a scalar transcription of the spec in
kiln/ir/ops/random.py, golden values for other backends, determinism, moments, symbolic
shapes and type errors."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir import GraphBuilder, KilnTypeError, KilnValueError, f32, grad, i32, i64
from kiln.ir.ops.random import random_bits
from kiln.runtimes.reference import run_graph

MASK = 2**64 - 1


# -- the spec, one element at a time in Python ints (an independent transcription) ----------
def spec_bits(key: int, stream: int, c: int) -> int:
    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    gold = 0x9E3779B97F4A7C15
    base = mix((mix(key & MASK) + stream * gold) & MASK)
    return mix((base + (c + 1) * gold) & MASK)


def to_f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def spec_uniform(key: int, stream: int, i: int, low: float, high: float, dtype: str) -> float:
    bits = spec_bits(key, stream, i)
    if dtype == "float64":
        return low + (high - low) * ((bits >> 11) * 2.0**-53)
    lo, hi = to_f32(low), to_f32(high)
    return to_f32(lo + to_f32(to_f32(hi - lo) * to_f32((bits >> 40) * 2.0**-24)))


def spec_normal(key: int, stream: int, i: int, mean: float, stddev: float) -> float:
    u1 = ((spec_bits(key, stream, 2 * i) >> 11) + 1) * 2.0**-53
    u2 = (spec_bits(key, stream, 2 * i + 1) >> 11) * 2.0**-53
    return mean + stddev * (math.sqrt(-2 * math.log(u1)) * math.cos(6.283185307179586 * u2))


def draw(op: str, key: int, **attrs: object) -> np.ndarray:
    b = GraphBuilder(op)
    b.output(b.op(op, b.input("key", i64[()]), **attrs), "y")
    return run_graph(b.build(), {"key": np.array(key, np.int64)})[0]["y"]


# -- the bit stream --------------------------------------------------------------------------
def test_key_0_stream_0_is_splitmix64_seeded_with_0() -> None:
    # base = mix(mix(0)) = 0, so the stream is SplitMix64's published sequence for seed 0.
    bits = random_bits(0, 0, np.arange(4, dtype=np.uint64))
    assert [int(v) for v in bits] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                      0x06C45D188009454F, 0xF88BB8A8724C81EC]


@settings(max_examples=40, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**63 - 1),
       st.integers(0, 2**40))
def test_vectorized_bits_match_the_spec(key: int, stream: int, start: int) -> None:
    counters = np.arange(start, start + 3, dtype=np.uint64)
    got = [int(v) for v in random_bits(key, stream, counters)]
    assert got == [spec_bits(key, stream, c) for c in range(start, start + 3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key,stream,low,high", [(0, 0, 0.0, 1.0), (-5, 2, -3.0, 0.7),
                                                 (2**40 + 1, 9, 1e-3, 1e3)])
def test_uniform_matches_the_spec_bit_for_bit(dtype: str, key: int, stream: int, low: float,
                                              high: float) -> None:
    out = draw("uniform", key, shape=(2, 5), low=low, high=high, dtype=dtype, stream=stream)
    expected = [spec_uniform(key, stream, i, low, high, dtype) for i in range(10)]
    np.testing.assert_array_equal(out.reshape(-1), np.array(expected, dtype))


@pytest.mark.parametrize("key,stream,mean,stddev", [(0, 0, 0.0, 1.0), (-5, 2, 3.0, 0.25)])
def test_normal_matches_the_spec(key: int, stream: int, mean: float, stddev: float) -> None:
    expected = np.array([spec_normal(key, stream, i, mean, stddev) for i in range(12)])
    out64 = draw("normal", key, shape=(3, 4), mean=mean, stddev=stddev, dtype="float64",
                 stream=stream)
    np.testing.assert_allclose(out64.reshape(-1), expected, rtol=1e-14, atol=1e-15)
    # The float32 draw is the float64 one rounded once.
    out32 = draw("normal", key, shape=(3, 4), mean=mean, stddev=stddev, stream=stream)
    np.testing.assert_array_equal(out32, out64.astype(np.float32))


def test_bernoulli_reads_the_float64_uniform_and_its_integer_form() -> None:
    p = 0.3
    mask = draw("bernoulli", 11, shape=(1000,), p=p, stream=4)
    u = draw("uniform", 11, shape=(1000,), dtype="float64", stream=4)
    np.testing.assert_array_equal(mask, u < p)
    top = random_bits(11, 4, np.arange(1000, dtype=np.uint64)) >> np.uint64(11)
    np.testing.assert_array_equal(mask, top < np.uint64(math.ceil(p * 2**53)))


# -- golden values: other backends check against these -----------------------------------
GOLDEN = {
    "uniform32": [0.8833107948303223, 0.4315279722213745, 0.02643376588821411,
                  0.9708819389343262],
    "uniform64": [0.8833108082136426, 0.43152799704850997, 0.026433771592597743,
                  0.9708819781538285],
    "normal32": [-0.45275774598121643, 2.6506059169769287, -0.9886041283607483,
                 0.2524627149105072],
    "normal64": [-0.452757740217458, 2.650605812079669, -0.9886041246243269,
                 0.252462724150614],
    "bernoulli": [False, True, True, False, True, True, True, False],
    "bits_key-7_stream3": [0x9FF9358F93884CD4, 0x5B771BB57804D689, 0x0E65217DEC5375FE,
                           0x7CD3B6478FD738BD],
}


def test_golden_values_key_0() -> None:
    np.testing.assert_array_equal(draw("uniform", 0, shape=(4,)),
                                  np.array(GOLDEN["uniform32"], np.float32))
    np.testing.assert_array_equal(draw("uniform", 0, shape=(4,), dtype="float64"),
                                  GOLDEN["uniform64"])
    # log/cos may differ by an ulp between math libraries; allow that much.
    np.testing.assert_allclose(draw("normal", 0, shape=(4,)), GOLDEN["normal32"], rtol=1e-6)
    np.testing.assert_allclose(draw("normal", 0, shape=(4,), dtype="float64"),
                               GOLDEN["normal64"], rtol=1e-14)
    np.testing.assert_array_equal(draw("bernoulli", 0, shape=(8,)), GOLDEN["bernoulli"])
    bits = random_bits(-7, 3, np.arange(4, dtype=np.uint64))
    assert [int(v) for v in bits] == GOLDEN["bits_key-7_stream3"]


# -- determinism and independence ----------------------------------------------------------
@pytest.mark.parametrize("op", ["uniform", "normal", "bernoulli"])
def test_same_key_same_bits_other_key_or_stream_other_bits(op: str) -> None:
    a = draw(op, 123, shape=(64,))
    np.testing.assert_array_equal(a, draw(op, 123, shape=(64,)))
    assert not np.array_equal(a, draw(op, 124, shape=(64,)))
    assert not np.array_equal(a, draw(op, 123, shape=(64,), stream=1))


def test_independent_of_the_global_rng() -> None:
    np.random.seed(0)
    a = draw("normal", 5, shape=(8,))
    np.random.seed(1)
    np.random.standard_normal(10)
    np.testing.assert_array_equal(a, draw("normal", 5, shape=(8,)))


# -- moments -------------------------------------------------------------------------------
N_DRAWS = 100_000


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_moments_and_range(dtype: str) -> None:
    low, high = -2.0, 3.0
    x = draw("uniform", 1, shape=(N_DRAWS,), low=low, high=high, dtype=dtype).astype(np.float64)
    assert x.min() >= low and x.max() < high
    assert abs(x.mean() - 0.5) < 5 * 5 / math.sqrt(12 * N_DRAWS)
    assert abs(x.var() - 25 / 12) < 0.03
    unit = draw("uniform", 2, shape=(N_DRAWS,), dtype=dtype)
    assert unit.min() >= 0 and unit.max() < 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_moments(dtype: str) -> None:
    x = draw("normal", 3, shape=(N_DRAWS,), mean=1.5, stddev=2.0, dtype=dtype)
    x = x.astype(np.float64)
    assert np.isfinite(x).all()
    assert abs(x.mean() - 1.5) < 5 * 2.0 / math.sqrt(N_DRAWS)
    assert abs(x.std() - 2.0) < 0.03
    z = (x - 1.5) / 2.0
    assert abs(np.mean(z**3)) < 0.05 and abs(np.mean(z**4) - 3.0) < 0.1


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_bernoulli_rate(p: float) -> None:
    mask = draw("bernoulli", 4, shape=(N_DRAWS,), p=p)
    assert mask.dtype == np.bool_
    assert abs(mask.mean() - p) <= 5 * math.sqrt(p * (1 - p) / N_DRAWS)


# -- shapes --------------------------------------------------------------------------------
def test_symbolic_shape_resolves_and_rows_are_a_prefix() -> None:
    b = GraphBuilder("dropout")
    x = b.input("x", f32["N", 3])
    key = b.input("key", i64[()])
    keep = b.bernoulli(key, shape=("N", 3), p=0.8)
    noise = b.normal(key, shape=("N", 3), stream=1)
    assert keep.type.shape == ("N", 3) and keep.type.dtype == "bool"
    y = b.add(b.where(keep, b.div(x, 0.8), b.constant(0.0)), noise)
    b.output(y, "y")
    b.output(noise, "noise")
    graph = b.build()
    k = np.array(9, np.int64)
    small = run_graph(graph, {"x": np.ones((2, 3), np.float32), "key": k})[0]
    large = run_graph(graph, {"x": np.ones((5, 3), np.float32), "key": k})[0]
    assert small["y"].shape == (2, 3) and large["y"].shape == (5, 3)
    # Row-major counters: the first rows of a larger draw are the smaller draw.
    np.testing.assert_array_equal(large["y"][:2], small["y"])
    np.testing.assert_array_equal(large["noise"][:2], small["noise"])


def test_gradient_flows_around_a_random_mask() -> None:
    b = GraphBuilder("g")
    x, key = b.input("x", f32[4, 5]), b.input("key", i64[()])
    keep = b.bernoulli(key, shape=(4, 5), p=0.5)
    b.output(b.sum(b.where(keep, x, b.constant(0.0))), "loss")
    args = {"x": np.ones((4, 5), np.float32), "key": np.array(3, np.int64)}
    g = run_graph(grad(b.build(), "loss", ["x"]), args)[0]["grad.x"]
    np.testing.assert_array_equal(g, draw("bernoulli", 3, shape=(4, 5)).astype(np.float32))


def test_scalar_and_empty_shapes() -> None:
    assert draw("uniform", 1, shape=()).shape == ()
    assert draw("normal", 1, shape=(0, 3)).shape == (0, 3)


def test_type_errors() -> None:
    b = GraphBuilder()
    key = b.input("key", i64[()])
    with pytest.raises(KilnTypeError, match=r"i64\[\] scalar key. Received: key: i32\[\]"):
        b.uniform(b.input("k32", i32[()]), shape=(2,))
    with pytest.raises(KilnTypeError, match="i64"):
        b.normal(b.input("kvec", i64[2]), shape=(2,))
    with pytest.raises(KilnTypeError, match="float32 or float64"):
        b.uniform(key, shape=(2,), dtype="int32")
    with pytest.raises(KilnTypeError, match="low <= high"):
        b.uniform(key, shape=(2,), low=1.0, high=0.0)
    with pytest.raises(KilnTypeError, match="stddev >= 0"):
        b.normal(key, shape=(2,), stddev=-1.0)
    with pytest.raises(KilnTypeError, match=r"p in \[0, 1\]"):
        b.bernoulli(key, shape=(2,), p=1.5)
    with pytest.raises(KilnTypeError, match="stream"):
        b.bernoulli(key, shape=(2,), stream=-1)
    with pytest.raises(KilnValueError, match="required"):
        b.uniform(key)


def test_unbound_symbol_is_a_clear_error() -> None:
    b = GraphBuilder()
    b.output(b.uniform(b.input("key", i64[()]), shape=("M", 2)), "y")
    with pytest.raises(KilnValueError, match="symbol M"):
        run_graph(b.build(), {"key": np.array(0, np.int64)})
